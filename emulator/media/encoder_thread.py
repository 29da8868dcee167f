"""Run an encoder on its own thread so composing, mixing and the two encoders overlap (or,
for the many live recordings of the emulator, on the caller's thread: see `CompositeRecorder`).

PyAV releases the GIL inside avcodec_send_frame()/avcodec_receive_packet(), so libx264,
the AAC encoder and the Python compositor really run in parallel. Packets come back in
submission order; the caller routes them on its own thread (the muxers are not shared).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import av


class EncoderThread:
    """Ordered, bounded, batched asynchronous `codec.encode()`.

    Frames are queued with `add` and handed to the thread `batch` at a time: every hand-over
    costs two thread switches (and a GIL hand-off each way), which on a busy machine cost
    more than the encoding of a small frame. At most `max_in_flight` jobs are outstanding:
    a hand-over first waits for the oldest job when the limit is reached. So at most
    `frames_held` frames given to `add` are not encoded yet at any time, which is what lets
    the compositor reuse a ring of `frames_held` frame buffers without copying them.
    """

    def __init__(
        self, codec: av.CodecContext, max_in_flight: int, name: str, batch: int = 1
    ) -> None:
        """`max_in_flight` 0: no thread at all, `add` encodes on the caller's thread."""
        self._codec = codec
        self._max_in_flight = max_in_flight
        self._batch = max(1, batch) if max_in_flight else 1
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) if max_in_flight else None
        )
        self._jobs: deque[Future[list[av.Packet]]] = deque()
        self._pending: list[av.Frame | None] = []
        self._done: list[av.Packet] = []

    @property
    def frames_held(self) -> int:
        """The most frames given to `add` that may still wait to be encoded, plus one."""
        return (self._max_in_flight + 1) * self._batch if self._executor else 1

    def add(self, frames: Sequence[av.Frame | None]) -> None:
        """Queue `frames` (None flushes the encoder); hand them over once a batch is full."""
        self._pending.extend(frames)
        if len(self._pending) >= self._batch:
            self.flush()

    def flush(self) -> None:
        """Hand every queued frame to the encoder thread now."""
        if not self._pending:
            return
        if self._executor is None:
            frames, self._pending = self._pending, []
            self._done.extend(self._encode(frames))
            return
        while len(self._jobs) >= self._max_in_flight:
            self._done.extend(self._jobs.popleft().result())
        frames, self._pending = self._pending, []
        self._jobs.append(self._executor.submit(self._encode, frames))

    def ready(self) -> list[av.Packet]:
        """Packets of the finished jobs at the head of the queue, in order (never blocks)."""
        while self._jobs and self._jobs[0].done():
            self._done.extend(self._jobs.popleft().result())
        packets, self._done = self._done, []
        return packets

    def drain(self) -> list[av.Packet]:
        """Encode everything queued, wait for it; return all the packets not yet returned."""
        self.flush()
        while self._jobs:
            self._done.extend(self._jobs.popleft().result())
        packets, self._done = self._done, []
        return packets

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _encode(self, frames: list[av.Frame | None]) -> list[av.Packet]:
        packets: list[av.Packet] = []
        for frame in frames:
            packets.extend(self._codec.encode(frame))
        return packets

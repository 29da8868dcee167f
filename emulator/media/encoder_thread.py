"""Run an encoder on its own thread so composing, mixing and the two encoders overlap (or,
for the many live recordings of the emulator, on the caller's thread: see `CompositeRecorder`).

PyAV releases the GIL inside avcodec_send_frame()/avcodec_receive_packet(), so libx264,
the AAC encoder and the Python compositor really run in parallel. Packets come back in
submission order; the caller routes them on its own thread (the muxers are not shared).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from queue import Queue
from threading import Event, Semaphore, Thread

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


class _Chunk:
    """One GOP-aligned span of frames, encoded by a fresh encoder on a pool thread."""

    def __init__(self, codec: av.CodecContext) -> None:
        self.codec = codec
        self.batches: Queue[list[av.Frame] | None] = Queue()
        self.packets: Queue[av.Packet] = Queue()
        self.done = Event()
        self.error: BaseException | None = None
        self.ended = False


class ChunkedEncoder:
    """GOP-parallel encoding for offline renders: chunk k (frames between two IDRs) gets an
    encoder of its own, opened by `open_codec(k)`, and up to `lanes` chunks encode at once.

    Under CBR with zerolatency one x264 encoder is serial (its own threads did not help,
    see benchmarks/README.md "Render"), but independent GOPs are: every chunk starts with
    an IDR and in-band SPS/PPS, so their packets concatenate into one valid stream. The
    frames wait in the compositor's ring (`frames_held` of them), which must hold about a
    chunk for the lanes to overlap. Same interface as `EncoderThread`, plus `next_chunk`;
    packets come back in frame order.
    """

    def __init__(
        self,
        open_codec: Callable[[int], av.CodecContext],
        lanes: int,
        frames_held: int,
        batch: int,
    ) -> None:
        self._open_codec = open_codec
        # Daemon threads, one per chunk, `lanes` of them encoding at once: a render that
        # fails half-way leaves a chunk waiting for frames, which must not keep the
        # interpreter from exiting (a pool's threads are joined at exit).
        self._lanes = Semaphore(lanes)
        self._held = max(frames_held, 2 * batch)
        self._batch = batch
        self._slots = Semaphore(self._held - 1)  # frames given but not encoded yet
        self._chunks: deque[_Chunk] = deque()
        self._pending: list[av.Frame] = []
        self._opened = 0

    @property
    def frames_held(self) -> int:
        return self._held

    def next_chunk(self) -> None:
        """The next frames start a new chunk (an IDR): finish handing over the current one."""
        self._end_chunk()
        chunk = _Chunk(self._open_codec(self._opened))
        self._opened += 1
        Thread(
            target=self._run, args=(chunk,), name=f"x264-gop-{self._opened}", daemon=True
        ).start()
        self._chunks.append(chunk)

    def add(self, frames: Sequence[av.Frame | None]) -> None:
        """Queue frames of the current chunk; None ends the stream (flushes the last chunk)."""
        for frame in frames:
            if frame is None:
                self._end_chunk()
                continue
            self._slots.acquire()  # the ring buffer behind `frame` is free to reuse after
            self._pending.append(frame)
        if len(self._pending) >= self._batch:
            self.flush()

    def _end_chunk(self) -> None:
        self.flush()
        if self._chunks and not self._chunks[-1].ended:
            self._chunks[-1].ended = True
            self._chunks[-1].batches.put(None)

    def flush(self) -> None:
        if self._pending:
            frames, self._pending = self._pending, []
            self._chunks[-1].batches.put(frames)

    def ready(self) -> list[av.Packet]:
        """Packets encoded so far, in order: the oldest chunk's, and the next ones' once the
        oldest is complete (never blocks)."""
        packets: list[av.Packet] = []
        while self._chunks:
            head = self._chunks[0]
            done = head.done.is_set()
            while not head.packets.empty():
                packets.append(head.packets.get_nowait())
            if not done:
                break
            if head.error is not None:
                raise head.error
            self._chunks.popleft()
        return packets

    def drain(self) -> list[av.Packet]:
        """End the stream if not ended, wait for every chunk; return the packets not yet
        returned. (Offline renders route as they go and drain only at the end.)"""
        self.add([None])
        for chunk in self._chunks:
            chunk.done.wait()
        return self.ready()

    def close(self) -> None:
        """Nothing to release: every chunk's thread ends with its chunk."""

    def _run(self, chunk: _Chunk) -> None:
        with self._lanes:
            try:
                self._encode(chunk)
            except BaseException as error:  # handed to the caller by `ready`
                chunk.error = error
                self._slots.release(self._held)  # never leave `add` waiting for a dead lane
            finally:
                chunk.done.set()

    def _encode(self, chunk: _Chunk) -> None:
        while (frames := chunk.batches.get()) is not None:
            for frame in frames:
                for packet in chunk.codec.encode(frame):
                    chunk.packets.put(packet)
                self._slots.release()
        for packet in chunk.codec.encode(None):
            chunk.packets.put(packet)

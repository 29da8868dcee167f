"""CompositeRecorder: the media clock of one composite recording.

Per video frame: compose the canvas, encode it once (an IDR at every slice boundary), route
the packets to the TS slice and the MP4. Audio is mixed and encoded in 1024-sample AAC
frames, interleaved with the video frames so the muxers never buffer much.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from emulator.media.access import MediaDirs
from emulator.media.audio_sources import SAMPLE_RATE, Samples
from emulator.media.compositor import Compositor
from emulator.media.encoder_thread import ChunkedEncoder, EncoderThread
from emulator.media.encoding import (
    AAC_FRAME_SAMPLES,
    audio_format,
    open_audio_encoder,
    open_video_encoder,
)
from emulator.media.images import ImageStore
from emulator.media.layout import MAX_REGIONS
from emulator.media.mixer import Mixer
from emulator.media.models import LayoutSpec, MediaConfig, OutputFile, UserSnapshot
from emulator.media.outputs import (
    AUDIO,
    VIDEO,
    Chunk,
    HlsWriter,
    Mp4Writer,
    Naming,
    StreamParams,
    Timeline,
)

log = logging.getLogger(__name__)

_EPSILON = 1e-9
# Encoder jobs outstanding per encoder thread, and frames per job (see EncoderThread).
# Handing frames over in batches saves thread switches. Measured on the benchmark's 60 s
# 360x640 render (2 cores): CPU 1.59 s with 1 frame per job and 2 jobs in flight, 1.47 s
# with 8 frames and 3 jobs; with a CPU burner beside it (median of 5, alternating with
# FFmpeg) 1.34x and 0.99x FFmpeg's time. The batch shrinks for large canvases so the ring
# of frames waiting for x264 stays within _RING_BYTES (360x640: 32 frames, 11 MB;
# 1280x720: 16 frames, 22 MB; 1920x1080: 8 frames, 25 MB).
_IN_FLIGHT = 3
_MAX_VIDEO_BATCH = 8
_RING_BYTES = 24 * 1024 * 1024
_AUDIO_BATCH = 16
_MIX_FRAMES = 4  # AAC frames mixed per pass (4096 samples: the tone tables' longest block)
_SAMPLE_BASE = Fraction(1, SAMPLE_RATE)


# GOP-parallel renders (`gop_lanes`): the frames composed ahead wait in the compositor's
# ring; the lanes overlap only if it holds about a chunk (a slice) more than the lane being
# fed. Up to two slices of frames within this budget (360x640 at 15 s, 15 fps: 450 frames,
# 156 MB; larger canvases get fewer frames and less overlap).
_GOP_RING_BYTES = 160 * 1024 * 1024


def _video_batch(width: int, height: int) -> int:
    """Frames per x264 job: as many as fit the ring budget, between 1 and 8."""
    frame_bytes = width * height * 3 // 2
    return max(1, min(_MAX_VIDEO_BATCH, _RING_BYTES // (frame_bytes * (_IN_FLIGHT + 1))))


class CompositeRecorder:
    """Composites simulated users into HLS (and MP4) files as media time advances.

    Not thread-safe except for `set_layout`, which may be called from any thread; all other
    methods (and `on_file`) run on the thread driving the clock.
    """

    def __init__(
        self,
        config: MediaConfig,
        *,
        sid: str,
        cname: str,
        out_dir: Path,
        start_epoch_ms: int,
        on_file: Callable[[OutputFile], None] | None = None,
        name_prefix: str = "",
        media: MediaDirs | None = None,
        video_threads: int | None = None,
        encoder_threads: bool = True,
        gop_lanes: int = 1,
    ) -> None:
        """`name_prefix` goes before every file name: "bak<n>_" when this recorder continues
        a task after its n-th HA failover (docs/service/files.md#failover). `media`: where local
        background images may be read (None: anywhere, for offline renders of the operator's own
        scenario). `video_threads`: x264's threads (see `open_video_encoder`).
        `encoder_threads`: encode on threads of their own, overlapping the compositor (an
        offline render); False encodes on the thread that advances the recorder (live
        recordings, each advanced by its own thread a few frames at a time: no hand-overs).
        `gop_lanes` >= 2 (offline renders only): each slice is encoded by an encoder of its
        own, that many slices at once (`ChunkedEncoder`); packets are routed as they come,
        so `advance_to` does not wait for the encoders."""
        if config.has_video and (config.width % 2 or config.height % 2):
            raise ValueError("yuv420p needs an even canvas width and height")
        self._config = config
        self._on_file = on_file
        out_dir.mkdir(parents=True, exist_ok=True)
        self._slice_frames = max(1, round(config.slice_seconds * config.fps))
        self._timeline = Timeline(self._slice_length())
        fmt = audio_format(config.audio_profile)
        self._channels = fmt.channels
        self._images = ImageStore(media)
        self._frame_base = Fraction(1, config.fps)
        self._frames = 0
        self._samples = 0
        self._gop_parallel = gop_lanes >= 2 and config.has_video
        self._video = self._video_encoder(config, video_threads, encoder_threads, gop_lanes)
        self._held_audio: deque[av.Packet] = deque()  # GOP-parallel: waiting for the video
        # GOP-parallel: the media time the routed video reached, in audio samples
        self._video_routed = 0
        self._audio = (
            EncoderThread(
                open_audio_encoder(fmt), _IN_FLIGHT if encoder_threads else 0, "aac", _AUDIO_BATCH
            )
            if config.has_audio
            else None
        )
        self._compositor = (
            Compositor(
                config.width, config.height, config.layout, self._images, self._video.frames_held
            )
            if self._video is not None
            else None
        )
        self._mixer = Mixer(fmt.channels) if config.has_audio else None
        naming = Naming(out_dir, sid, cname, start_epoch_ms, config.track_type, name_prefix)
        params = StreamParams(
            config.has_video,
            config.has_audio,
            config.width,
            config.height,
            config.fps,
            fmt.layout,
            fmt.bit_rate,
        )
        self._hls = HlsWriter(naming, params, self._timeline, self._emit)
        self._mp4 = (
            Mp4Writer(
                naming,
                params,
                self._timeline,
                (config.mp4_max_seconds, config.mp4_max_bytes),
                self._emit,
            )
            if "mp4" in config.av_file_types
            else None
        )
        self._progress = {
            kind: 0 for kind, on in ((VIDEO, config.has_video), (AUDIO, config.has_audio)) if on
        }
        self._lock = threading.Lock()
        self._pending_layout: LayoutSpec | None = None
        self._layout = config.layout
        self._clock = Fraction(0)  # the latest t advanced to
        self._published = False
        self._finished = False

    # -- public interface -------------------------------------------------------------

    def advance_to(self, t: float, users: Sequence[UserSnapshot]) -> None:
        """Render every video frame with timestamp <= t (frame i at i/fps s) and the audio
        up to t, with `users` (join order) as the channel state for that span."""
        if self._finished:
            raise RuntimeError("recording already finished")
        # only the first 17 users are recorded (docs/service/api-contract.md#recordingconfig)
        users = list(users)[:MAX_REGIONS]
        self._apply_pending_layout()
        self._note_published(users)
        if self._compositor is not None:
            self._compositor.update(users, float(self._frames * self._frame_base))
        if self._mixer is not None:
            self._mixer.update(users)
        if self._video is not None:
            last_frame = math.floor(t * self._config.fps + _EPSILON)
            while self._frames <= last_frame:
                frame_time = self._frames * self._frame_base
                self._render_frame()
                self._render_audio_until(frame_time)
                self._route_ready()
        self._clock = max(self._clock, Fraction(t))
        self._render_audio_until(self._clock)
        self._route_ready(wait=not self._gop_parallel)

    def set_layout(self, layout: LayoutSpec) -> None:
        """updateLayout: replace the whole layout from the next frame on (any thread)."""
        with self._lock:
            self._pending_layout = layout

    def finish(self) -> list[OutputFile]:
        """Flush the encoders, close the last slice and MP4, end the playlist (idempotent)."""
        if self._finished:
            return self.files
        self._finished = True
        end = self._media_end()
        self._render_audio_until(end, final=True)
        for worker, kind in ((self._video, VIDEO), (self._audio, AUDIO)):
            if worker is not None:
                worker.add([None])  # flush the encoder
                for packet in worker.drain():
                    self._route(packet, kind)
                worker.close()
        self._route_held_audio(final=True)
        self._hls.finish(end)
        if self._mp4 is not None:
            self._mp4.finish(end)
        self._close_sources()
        return self.files

    def wait_for_images(self, timeout: float | None = None) -> None:
        """Block until pending image downloads finish (offline rendering determinism)."""
        self._apply_pending_layout()
        self._images.wait(timeout)
        if self._compositor is not None:
            self._compositor.set_layout(self._layout)

    @property
    def first_slice_done(self) -> bool:
        """True once the first TS slice is complete (the M3U8 exists from then on)."""
        return bool(self._hls.completed)

    @property
    def files(self) -> list[OutputFile]:
        """Completed files so far: the playlist (latest version) first, then slices, MP4s."""
        files = [self._hls.playlist] if self._hls.playlist is not None else []
        files += self._hls.completed
        if self._mp4 is not None:
            files += self._mp4.completed
        return files

    @property
    def published_anything(self) -> bool:
        """Whether any user ever published a stream this recording records."""
        return self._published

    @property
    def media_seconds(self) -> float:
        """Media time rendered so far."""
        return float(self._media_end())

    # -- internals --------------------------------------------------------------------

    def _video_encoder(
        self, config: MediaConfig, threads: int | None, own_thread: bool, lanes: int
    ) -> EncoderThread | ChunkedEncoder | None:
        if not config.has_video:
            return None
        batch = _video_batch(config.width, config.height)
        if self._gop_parallel:
            frame_bytes = config.width * config.height * 3 // 2
            held = min(self._slice_frames + 2 * batch, _GOP_RING_BYTES // frame_bytes)
            # One x264 thread per chunk: the lanes are the parallelism.
            return ChunkedEncoder(
                lambda chunk: open_video_encoder(
                    config, self._slice_frames, 1, continuing=chunk > 0
                ),
                lanes,
                held,
                batch,
            )
        return EncoderThread(
            open_video_encoder(config, self._slice_frames, threads),
            _IN_FLIGHT if own_thread else 0,
            "x264",
            batch,
        )

    def _slice_length(self) -> Fraction:
        """Slices are whole video frames long; audio-only slices are slice_seconds (ms)."""
        if self._config.has_video:
            return Fraction(self._slice_frames, self._config.fps)
        return Fraction(round(self._config.slice_seconds * 1000), 1000)

    def _apply_pending_layout(self) -> None:
        with self._lock:
            layout, self._pending_layout = self._pending_layout, None
        if layout is not None:
            self._layout = layout
            if self._compositor is not None:
                self._compositor.set_layout(layout)

    def _note_published(self, users: Sequence[UserSnapshot]) -> None:
        if self._published:
            return
        self._published = any(
            (user.video is not None and self._config.has_video)
            or (user.audio is not None and self._config.has_audio)
            for user in users
        )

    def _render_frame(self) -> None:
        assert self._compositor is not None and self._video is not None
        frame_time = float(self._frames * self._frame_base)
        canvas = self._compositor.compose(frame_time)
        frame = canvas.to_video_frame(self._frames, self._frame_base)
        if self._frames % self._slice_frames == 0:
            # A slice starts here: force an IDR so the slice (and an MP4) can start on it.
            frame.pict_type = av.video.frame.PictureType.I
            if isinstance(self._video, ChunkedEncoder):
                self._video.next_chunk()
        self._frames += 1
        self._video.add([frame])

    def _render_audio_until(self, t: Fraction, *, final: bool = False) -> None:
        """Encode whole AAC frames up to media time `t`; with `final`, also the remainder."""
        if self._mixer is None or self._audio is None:
            return
        target = math.floor(t * SAMPLE_RATE + Fraction(1, 10**6))
        frames: list[av.AudioFrame] = []
        while self._samples < target:
            count = target - self._samples
            if not final:
                count -= count % AAC_FRAME_SAMPLES  # whole frames only until the end
                if count == 0:
                    break
            # Several AAC frames per mixing pass: the per-pass numpy overhead dominates.
            count = min(count, _MIX_FRAMES * AAC_FRAME_SAMPLES)
            frames += self._audio_frames(self._mixer.mix(self._samples, count), self._samples)
            self._samples += count
        self._audio.add(frames)

    def _audio_frames(self, block: Samples, first_sample: int) -> list[av.AudioFrame]:
        """Cut a mixed block into AAC-sized frames stamped with their sample positions."""
        layout = "stereo" if self._channels == 2 else "mono"
        frames = []
        for offset in range(0, block.shape[1], AAC_FRAME_SAMPLES):
            part = np.ascontiguousarray(block[:, offset : offset + AAC_FRAME_SAMPLES])
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
            frame.sample_rate = SAMPLE_RATE
            frame.pts = first_sample + offset
            frame.time_base = _SAMPLE_BASE
            frames.append(frame)
        return frames

    def _route_ready(self, *, wait: bool = False) -> None:
        """Route the packets the encoder threads have finished (with `wait`: all queued)."""
        for worker, kind in ((self._video, VIDEO), (self._audio, AUDIO)):
            if worker is not None:
                for packet in worker.drain() if wait else worker.ready():
                    self._route(packet, kind)

    def _route_held_audio(self, *, final: bool = False) -> None:
        """GOP-parallel: audio goes to the muxers no further ahead of the video than a
        frame, so the files stay interleaved as a live recording's are."""
        held = self._held_audio
        # Integers: this runs for every packet. Audio packets are stamped in samples.
        while held and (final or (held[0].pts or 0) < self._video_routed):
            self._mux(held.popleft(), AUDIO)

    def _route(self, packet: av.Packet, kind: str) -> None:
        if not self._gop_parallel:
            self._mux(packet, kind)
            return
        if kind == AUDIO:
            self._held_audio.append(packet)
        else:
            assert packet.pts is not None
            end = (packet.pts + (packet.duration or 1)) * SAMPLE_RATE // self._config.fps
            self._video_routed = max(self._video_routed, end)
            self._mux(packet, kind)
        self._route_held_audio()

    def _mux(self, packet: av.Packet, kind: str) -> None:
        time_base = packet.time_base
        assert time_base is not None and packet.pts is not None
        duration = packet.duration or (1 if kind == VIDEO else AAC_FRAME_SAMPLES)
        dts = packet.dts if packet.dts is not None else packet.pts
        index = self._timeline.slice_of(packet.pts, time_base)
        chunk = Chunk(packet, kind, packet.pts, dts, duration, time_base, index)
        self._hls.write(chunk)
        if self._mp4 is not None:
            self._mp4.write(chunk)
        if index > self._progress[kind]:
            self._progress[kind] = index
            self._close_passed_slices()

    def _close_passed_slices(self) -> None:
        low = min(self._progress.values())
        self._hls.close_before(low)
        if self._mp4 is not None:
            self._mp4.close_before(low)

    def _media_end(self) -> Fraction:
        if self._config.has_video:
            return self._frames * self._frame_base
        return max(Fraction(self._samples, SAMPLE_RATE), self._clock)

    def _emit(self, output: OutputFile) -> None:
        if self._on_file is not None:
            self._on_file(output)

    def _close_sources(self) -> None:
        if self._compositor is not None:
            self._compositor.close()
        if self._mixer is not None:
            self._mixer.close()
        self._images.close()

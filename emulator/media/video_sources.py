"""What a simulated user's camera shows: a colour pattern or a looping media file.

A renderer draws its content for source time `t` (seconds since the user started publishing
this source) straight into a region of the canvas. Drawing an earlier or equal `t` again
shows the same picture, which is how a stopped user's last frame is held.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

import av

from emulator.media.access import open_media
from emulator.media.canvas import Canvas, Picture, Rect
from emulator.media.colors import hex_to_yuv
from emulator.media.models import VideoSource
from emulator.media.pictures import scale_to_region

log = logging.getLogger(__name__)

# The colour pattern's moving marker: a square of 15% of the region's short side (at most
# 2.25% of the area) sliding along the top of the region, so the centre stays the solid
# colour and the video still moves.
_MARKER_SIDE = 0.15
_MARKER_TOP = 0.05
_MARKER_PERIOD_S = 4.0


class VideoRenderer(Protocol):
    def draw(self, canvas: Canvas, rect: Rect, render_mode: int, alpha: float, t: float) -> None:
        """Draw the picture for source time `t` into `rect`."""

    def close(self) -> None:
        """Release decoders and files."""


def make_renderer(source: VideoSource) -> VideoRenderer:
    """The renderer for a source: a colour pattern if `color` is set, else a file."""
    if source.color is not None:
        return ColorPattern(source.color)
    if source.file is not None:
        return FileVideo(source.file)
    return ColorPattern("#000000")


class ColorPattern:
    """A solid colour with a small moving marker of contrasting brightness."""

    def __init__(self, color: str) -> None:
        self._yuv = hex_to_yuv(color)
        luma = 16 if self._yuv[0] >= 128 else 235
        self._marker_yuv = (luma, 128, 128)

    def draw(self, canvas: Canvas, rect: Rect, render_mode: int, alpha: float, t: float) -> None:
        canvas.fill(rect, self._yuv, alpha)
        marker = self._marker_rect(rect, t)
        if marker is not None:
            canvas.fill(marker, self._marker_yuv, alpha, moving=True)

    def close(self) -> None:
        pass

    @staticmethod
    def _marker_rect(rect: Rect, t: float) -> Rect | None:
        side = 2 * int(min(rect.width, rect.height) * _MARKER_SIDE / 2)
        if side < 2:
            return None
        travel = rect.width - side
        phase = (t % _MARKER_PERIOD_S) / _MARKER_PERIOD_S
        offset = travel * (1 - abs(2 * phase - 1))  # back and forth
        x = rect.x + 2 * int(offset / 2)
        y = rect.y + 2 * int(rect.height * _MARKER_TOP / 2)
        return Rect(x, y, side, side)


class FileVideo:
    """A media file's video, looping, decoded on demand and scaled only when it changes.

    Any codec PyAV reads, in a container of `access.ALLOWED_DEMUXERS`. A file with a single
    picture (a still image) shows that picture without re-reading the file; a file without a
    readable video stream (or refused) shows nothing (the region then behaves as if the user
    sent no video yet).
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._frames: Iterator[tuple[float, av.VideoFrame]] | None = None
        self._current: av.VideoFrame | None = None
        self._upcoming: tuple[float, av.VideoFrame] | None = None
        # The frame the cached picture was scaled from, held so its identity stays unique.
        self._scaled_from: av.VideoFrame | None = None
        self._scaled_key: tuple[int, int, int] | None = None
        self._scaled: Picture | None = None
        self._exhausted = False  # nothing more to decode: keep showing the current frame

    def draw(self, canvas: Canvas, rect: Rect, render_mode: int, alpha: float, t: float) -> None:
        frame = self._frame_at(t)
        if frame is None:
            return
        # A still picture (or a file's last frame) is the same picture every frame.
        canvas.blit(self._scale(frame, rect, render_mode), rect, alpha, moving=not self._exhausted)

    def close(self) -> None:
        self._frames = None
        self._upcoming = None

    def _frame_at(self, t: float) -> av.VideoFrame | None:
        """The frame showing at source time `t` (decoding forward, never backward)."""
        if self._exhausted:
            return self._current
        if self._frames is None:
            self._frames = self._looping_frames()
            self._upcoming = next(self._frames, None)
        while self._upcoming is not None and (self._current is None or self._upcoming[0] <= t):
            self._current = self._upcoming[1]
            self._upcoming = next(self._frames, None)
        return self._current

    def _scale(self, frame: av.VideoFrame, rect: Rect, render_mode: int) -> Picture:
        key = (rect.width, rect.height, render_mode)
        if self._scaled is None or frame is not self._scaled_from or key != self._scaled_key:
            self._scaled = scale_to_region(frame, rect.width, rect.height, render_mode)
            self._scaled_from = frame
            self._scaled_key = key
        return self._scaled

    def _looping_frames(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """(source time, frame) forever, replaying the file from the start at its end."""
        offset = 0.0
        while True:
            last_end = 0.0
            count = 0
            try:
                for time, duration, frame in self._decode_once():
                    count += 1
                    last_end = max(last_end, time + duration)
                    yield offset + time, frame
            except (av.FFmpegError, OSError, IndexError) as exc:  # IndexError: no video
                log.warning("video source %s unreadable: %s", self._path, exc)
            if count <= 1:  # unreadable, or a still picture: nothing to loop
                self._exhausted = True
                return
            offset += last_end

    def _decode_once(self) -> Iterator[tuple[float, float, av.VideoFrame]]:
        with open_media(self._path) as container:  # allowed demuxers only
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate or 25
            default_duration = 1.0 / float(rate)
            start: float | None = None
            for frame in container.decode(stream):
                time = float(frame.time) if frame.time is not None else 0.0
                start = time if start is None else start
                yield time - start, default_duration, frame

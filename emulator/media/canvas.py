"""The composite canvas: one YUV 4:2:0 buffer drawn into with numpy, never converted to RGB.

Drawing primitives take pixel rectangles with even corners (see `layout.py`), so a
rectangle (x, y, w, h) on the luma plane is exactly (x/2, y/2, w/2, h/2) on each chroma plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt

from emulator.media.colors import YUV

Plane = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle with even x, y, width and height."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Picture:
    """Ready-to-blit YUV 4:2:0 planes (even width and height) and where they sit in a region.

    `dx`, `dy` (even) offset the picture inside its region: non-zero for fit mode, whose
    picture is smaller than the region (the rest of the region is left as it was).
    """

    y: Plane
    u: Plane
    v: Plane
    dx: int = 0
    dy: int = 0


class YuvBuffer:
    """A contiguous yuv420p buffer laid out the way `VideoFrame.from_ndarray` expects."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        luma = width * height
        chroma = luma // 4
        self.flat: Plane = np.zeros(luma + 2 * chroma, dtype=np.uint8)
        self.y: Plane = self.flat[:luma].reshape(height, width)
        self.u: Plane = self.flat[luma : luma + chroma].reshape(height // 2, width // 2)
        self.v: Plane = self.flat[luma + chroma :].reshape(height // 2, width // 2)

    def planes(self) -> tuple[Plane, Plane, Plane]:
        return self.y, self.u, self.v


class Canvas:
    """The frame being composed, plus the static background it is reset to every frame.

    Frames are composed into a ring of `buffers` buffers, so a frame handed to an encoder
    thread stays intact while the next ones are drawn (see `EncoderThread`).
    """

    def __init__(self, width: int, height: int, buffers: int = 1) -> None:
        self.width = width
        self.height = height
        self._ring = [YuvBuffer(width, height) for _ in range(max(1, buffers))]
        self._current = 0
        self._frame = self._ring[0]
        self._background = YuvBuffer(width, height)

    def set_background(self, color: YUV, image: Picture | None = None) -> None:
        """Precompute the background: a solid colour, optionally covered by an image."""
        for plane, value in zip(self._background.planes(), color, strict=True):
            plane.fill(value)
        if image is not None:
            _blit_planes(self._background.planes(), image, Rect(0, 0, self.width, self.height), 1.0)

    def reset(self) -> None:
        """Start a new frame, in the next ring buffer, from the background (one memcpy)."""
        self._current = (self._current + 1) % len(self._ring)
        self._frame = self._ring[self._current]
        np.copyto(self._frame.flat, self._background.flat)

    def restore_background(self, rect: Rect) -> None:
        """Show the canvas background inside `rect` (for empty regions drawn over others)."""
        for dst, src, (ys, xs) in zip(
            self._frame.planes(), self._background.planes(), _slices(rect), strict=True
        ):
            dst[ys, xs] = src[ys, xs]

    def fill(self, rect: Rect, color: YUV, alpha: float = 1.0) -> None:
        """Fill `rect` with a solid colour, alpha-blended over what is there."""
        for plane, value, (ys, xs) in zip(self._frame.planes(), color, _slices(rect), strict=True):
            if alpha >= 1.0:
                plane[ys, xs] = value
            elif alpha > 0.0:
                _blend_into(plane[ys, xs], np.uint8(value), alpha)

    def blit(self, picture: Picture, region: Rect, alpha: float = 1.0) -> None:
        """Copy `picture` into `region` at its offset, alpha-blended over what is there."""
        _blit_planes(self._frame.planes(), picture, region, alpha)

    def to_video_frame(self, pts: int, time_base: Fraction) -> av.VideoFrame:
        """A VideoFrame sharing the current ring buffer (no copy).

        It stays valid until the ring comes round to this buffer again (`buffers - 1` more
        resets): encode it before then. x264 copies every input picture into its own
        lookahead buffers during avcodec_send_frame(), so nothing refers to it afterwards.
        """
        frame = av.VideoFrame.from_numpy_buffer(
            self._frame.flat.reshape(self.height * 3 // 2, self.width), format="yuv420p"
        )
        frame.pts = pts
        frame.time_base = time_base
        return frame

    def luma(self) -> Plane:
        """The current frame's luma plane (read-only use: tests, diagnostics)."""
        return self._frame.y


def _slices(rect: Rect) -> list[tuple[slice, slice]]:
    luma = (slice(rect.y, rect.y + rect.height), slice(rect.x, rect.x + rect.width))
    half = Rect(rect.x // 2, rect.y // 2, rect.width // 2, rect.height // 2)
    chroma = (slice(half.y, half.y + half.height), slice(half.x, half.x + half.width))
    return [luma, chroma, chroma]


def _blit_planes(
    planes: tuple[Plane, Plane, Plane], picture: Picture, region: Rect, alpha: float
) -> None:
    target = Rect(
        region.x + picture.dx, region.y + picture.dy, picture.y.shape[1], picture.y.shape[0]
    )
    for dst, src, (ys, xs) in zip(
        planes, (picture.y, picture.u, picture.v), _slices(target), strict=True
    ):
        window = dst[ys, xs]
        if window.shape != src.shape:  # clipped at the canvas edge
            src = src[: window.shape[0], : window.shape[1]]
        if alpha >= 1.0:
            window[...] = src
        elif alpha > 0.0:
            _blend_into(window, src, alpha)


def _blend_into(dst: Plane, src: Plane | np.uint8, alpha: float) -> None:
    """dst = alpha * src + (1 - alpha) * dst, in 8-bit fixed point."""
    weight = round(alpha * 256)
    mixed = dst.astype(np.uint16) * (256 - weight)
    mixed += np.asarray(src, dtype=np.uint16) * weight
    mixed >>= 8
    dst[...] = mixed

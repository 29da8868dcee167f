"""The composite canvas: one YUV 4:2:0 buffer drawn into with numpy, never converted to RGB.

Drawing primitives take pixel rectangles with even corners (see `layout.py`), so a
rectangle (x, y, w, h) on the luma plane is exactly (x/2, y/2, w/2, h/2) on each chroma plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

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


@dataclass(frozen=True)
class _Op:
    """One drawing operation of a frame, recorded by `Canvas` and painted by `finish`.

    `key` says what it paints (equal keys paint equal pixels over equal pixels); `moving` ops
    change from frame to frame; `opaque` ops overwrite every pixel of `rect` (clipped to the
    canvas), whatever was there.
    """

    kind: str  # "fill", "blit" or "restore"
    rect: Rect
    key: tuple[object, ...]
    moving: bool
    opaque: bool
    args: tuple[Any, ...]


class _Slot:
    """A ring buffer and what `finish` last painted in it over the static layer."""

    def __init__(self, width: int, height: int) -> None:
        self.buffer = YuvBuffer(width, height)
        self.version = -1  # the static layer it was painted over (-1: none)
        self.dirty: list[Rect] = []  # where it differs from that layer


class Canvas:
    """The frame being composed, in a ring of `buffers` buffers (a frame handed to an encoder
    thread stays intact while the next ones are drawn, see `EncoderThread`).

    Composing is retained-mode: between `reset` and `finish` the drawing calls only record
    operations. Most of a frame is the same as the previous one's (a background, solid or
    still regions), so `finish` keeps a static layer: the background with every operation
    that is not `moving` and is not drawn over a moving one (drawing order is kept). A ring
    buffer that already holds the current static layer only gets back the rectangles its last
    frame painted over it (unless an opaque operation covers them now), then the frame's other
    operations; only when the static layer changes is a buffer copied whole. The pixels are
    exactly those of drawing every operation, in order, over the background.
    """

    def __init__(self, width: int, height: int, buffers: int = 1) -> None:
        self.width = width
        self.height = height
        self._ring = [_Slot(width, height) for _ in range(max(1, buffers))]
        self._current = 0
        self._frame = self._ring[0].buffer
        self._background = YuvBuffer(width, height)
        self._background_version = 0
        self._static = YuvBuffer(width, height)
        self._static_key: tuple[object, ...] | None = None
        self._static_version = 0
        self._static_refs: list[tuple[Any, ...]] = []  # keeps the pictures whose ids are keys
        self._ops: list[_Op] = []

    def set_background(self, color: YUV, image: Picture | None = None) -> None:
        """Precompute the background: a solid colour, optionally covered by an image."""
        for plane, value in zip(self._background.planes(), color, strict=True):
            plane.fill(value)
        if image is not None:
            _blit_planes(self._background.planes(), image, Rect(0, 0, self.width, self.height), 1.0)
        self._background_version += 1

    def reset(self) -> None:
        """Start a new frame (in the next ring buffer) on the background."""
        self._current = (self._current + 1) % len(self._ring)
        self._frame = self._ring[self._current].buffer
        self._ops = []

    def restore_background(self, rect: Rect) -> None:
        """Show the canvas background inside `rect` (for empty regions drawn over others)."""
        rect = self._clip(rect)
        self._ops.append(_Op("restore", rect, ("restore", rect), False, True, ()))

    def fill(self, rect: Rect, color: YUV, alpha: float = 1.0, *, moving: bool = False) -> None:
        """Fill `rect` with a solid colour, alpha-blended over what is there."""
        if alpha <= 0.0:
            return
        rect = self._clip(rect)
        key = ("fill", rect, color, alpha)
        self._ops.append(_Op("fill", rect, key, moving, alpha >= 1.0, (color, alpha)))

    def blit(
        self, picture: Picture, region: Rect, alpha: float = 1.0, *, moving: bool = False
    ) -> None:
        """Copy `picture` into `region` at its offset, alpha-blended over what is there.

        A picture must not be modified once blitted: a static one is known by its identity.
        """
        if alpha <= 0.0:
            return
        target = self._clip(
            Rect(
                region.x + picture.dx, region.y + picture.dy, picture.y.shape[1], picture.y.shape[0]
            )
        )
        key = ("blit", region, id(picture), alpha)
        self._ops.append(_Op("blit", target, key, moving, alpha >= 1.0, (picture, region, alpha)))

    def finish(self) -> None:
        """Paint the recorded operations into the current ring buffer."""
        static, frame_ops = self._split()
        key = (self._background_version, *(op.key for op in static))
        if key != self._static_key:
            self._build_static(static, key)
        slot = self._ring[self._current]
        if slot.version == self._static_version:
            for rect in slot.dirty:
                if not any(op.opaque and _contains(op.rect, rect) for op in frame_ops):
                    _copy_rect(self._frame, self._static, rect)
        else:
            np.copyto(self._frame.flat, self._static.flat)
        for op in frame_ops:
            self._paint(self._frame, op)
        slot.version = self._static_version
        slot.dirty = [op.rect for op in frame_ops]

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

    def _split(self) -> tuple[list[_Op], list[_Op]]:
        """(the static layer's operations, the frame's own), each in drawing order. A static
        operation drawn after one of the frame's that it overlaps stays in the frame's, so
        whatever overlaps is still drawn in order."""
        static: list[_Op] = []
        frame_ops: list[_Op] = []
        for op in self._ops:
            if op.moving or any(_overlaps(op.rect, other.rect) for other in frame_ops):
                frame_ops.append(op)
            else:
                static.append(op)
        return static, frame_ops

    def _build_static(self, ops: list[_Op], key: tuple[object, ...]) -> None:
        np.copyto(self._static.flat, self._background.flat)
        for op in ops:
            self._paint(self._static, op)
        self._static_key = key
        self._static_refs = [op.args for op in ops]
        self._static_version += 1

    def _paint(self, target: YuvBuffer, op: _Op) -> None:
        if op.kind == "fill":
            color, alpha = op.args
            for plane, value, (ys, xs) in zip(
                target.planes(), color, _slices(op.rect), strict=True
            ):
                if alpha >= 1.0:
                    plane[ys, xs] = value
                else:
                    _blend_into(plane[ys, xs], np.uint8(value), alpha)
        elif op.kind == "blit":
            picture, region, alpha = op.args
            _blit_planes(target.planes(), picture, region, alpha)
        else:
            _copy_rect(target, self._background, op.rect)

    def _clip(self, rect: Rect) -> Rect:
        x0, y0 = min(max(rect.x, 0), self.width), min(max(rect.y, 0), self.height)
        x1 = min(max(rect.x + rect.width, x0), self.width)
        y1 = min(max(rect.y + rect.height, y0), self.height)
        return Rect(x0, y0, x1 - x0, y1 - y0)


def _overlaps(a: Rect, b: Rect) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


def _contains(outer: Rect, inner: Rect) -> bool:
    return (
        outer.x <= inner.x
        and outer.y <= inner.y
        and inner.x + inner.width <= outer.x + outer.width
        and inner.y + inner.height <= outer.y + outer.height
    )


def _copy_rect(dst: YuvBuffer, src: YuvBuffer, rect: Rect) -> None:
    for to, source, (ys, xs) in zip(dst.planes(), src.planes(), _slices(rect), strict=True):
        to[ys, xs] = source[ys, xs]


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

"""Scale decoded frames (video files, images) into region-sized YUV pictures with swscale.

Crop mode (0) scales the source to cover the region and cuts the overflow equally on both
sides; fit mode (1) scales it to fit inside the region, centred, leaving the rest uncovered.
"""

from __future__ import annotations

import math

import av
import numpy as np

from emulator.media.canvas import Picture, Plane
from emulator.media.layout import RENDER_FIT


def scale_to_region(frame: av.VideoFrame, width: int, height: int, render_mode: int) -> Picture:
    """Scale `frame` for a `width` x `height` region (even sizes) in crop or fit mode."""
    if render_mode == RENDER_FIT:
        return _fit(frame, width, height)
    return _crop(frame, width, height)


def _crop(frame: av.VideoFrame, width: int, height: int) -> Picture:
    scale = max(width / frame.width, height / frame.height)
    scaled_w = max(width, _even_up(frame.width * scale))
    scaled_h = max(height, _even_up(frame.height * scale))
    y, u, v = _planes(frame.reformat(width=scaled_w, height=scaled_h, format="yuv420p"))
    x0 = _even_down((scaled_w - width) / 2)
    y0 = _even_down((scaled_h - height) / 2)
    return Picture(
        y=y[y0 : y0 + height, x0 : x0 + width],
        u=u[y0 // 2 : (y0 + height) // 2, x0 // 2 : (x0 + width) // 2],
        v=v[y0 // 2 : (y0 + height) // 2, x0 // 2 : (x0 + width) // 2],
    )


def _fit(frame: av.VideoFrame, width: int, height: int) -> Picture:
    scale = min(width / frame.width, height / frame.height)
    scaled_w = max(2, min(width, _even_down(frame.width * scale)))
    scaled_h = max(2, min(height, _even_down(frame.height * scale)))
    y, u, v = _planes(frame.reformat(width=scaled_w, height=scaled_h, format="yuv420p"))
    return Picture(
        y=y,
        u=u,
        v=v,
        dx=_even_down((width - scaled_w) / 2),
        dy=_even_down((height - scaled_h) / 2),
    )


def _planes(frame: av.VideoFrame) -> tuple[Plane, Plane, Plane]:
    """Copy a yuv420p frame's planes out (dropping line padding)."""
    width, height = frame.width, frame.height
    planes = []
    for plane, (w, h) in zip(
        frame.planes,
        ((width, height), (width // 2, height // 2), (width // 2, height // 2)),
        strict=True,
    ):
        raw = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        planes.append(np.ascontiguousarray(raw[:h, :w]))
    return planes[0], planes[1], planes[2]


def _even_up(value: float) -> int:
    return 2 * math.ceil(value / 2 - 1e-9)


def _even_down(value: float) -> int:
    return 2 * math.floor(value / 2 + 1e-9)

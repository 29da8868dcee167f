"""Colour conversion for drawing straight into YUV 4:2:0 planes.

BT.601 limited range: what libx264 signals by default and what decoders (and PyAV's
`to_ndarray(format="rgb24")`) assume for SD content, so a colour drawn here decodes back to
itself within a few levels.
"""

from __future__ import annotations

YUV = tuple[int, int, int]


def parse_hex_color(color: str) -> tuple[int, int, int]:
    """ "#RRGGBB" (the leading "#" is optional) to an (r, g, b) tuple; raises ValueError."""
    text = color.strip().lstrip("#")
    if len(text) != 6:
        raise ValueError(f"not a #RRGGBB colour: {color!r}")
    value = int(text, 16)
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF


def rgb_to_yuv(rgb: tuple[int, int, int]) -> YUV:
    """Convert 8-bit RGB to 8-bit BT.601 limited-range Y'CbCr."""
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return _clamp(y), _clamp(u), _clamp(v)


def hex_to_yuv(color: str) -> YUV:
    """ "#RRGGBB" straight to BT.601 limited-range Y'CbCr."""
    return rgb_to_yuv(parse_hex_color(color))


def _clamp(value: float) -> int:
    return max(0, min(255, round(value)))

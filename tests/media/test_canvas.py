"""The canvas composes in retained mode (a static layer, and per ring buffer only what moved):
the pixels must be those of drawing every region in order, frame after frame."""

from __future__ import annotations

from emulator.media import LayoutRegionSpec, LayoutSpec, UserSnapshot, VideoSource
from emulator.media.colors import hex_to_yuv
from emulator.media.compositor import Compositor
from emulator.media.images import ImageStore

W, H = 320, 240
RED, BLUE = "#FF0000", "#0000FF"


def blend(over: int, under: int) -> int:
    """Alpha 0.5 in the canvas's 8-bit fixed point."""
    return (under * 128 + over * 128) >> 8


def test_a_static_region_over_a_moving_marker_stays_on_top_in_every_ring_buffer() -> None:
    # User 1 fills the canvas (its marker slides along the top); user 2, half transparent,
    # covers the top-left quarter, where user 1's marker is at t = 0 and not at t = 1.
    layout = LayoutSpec(
        mixed_video_layout=3,
        regions=(
            LayoutRegionSpec(0.0, 0.0, 1.0, 1.0),
            LayoutRegionSpec(0.0, 0.0, 0.5, 0.5, alpha=0.5),
        ),
    )
    compositor = Compositor(W, H, layout, ImageStore(None), buffers=3)
    users = [
        UserSnapshot("1", VideoSource(color=RED), None),
        UserSnapshot("2", VideoSource(color=BLUE), None),
    ]
    compositor.update(users, 0.0)
    red, blue = hex_to_yuv(RED)[0], hex_to_yuv(BLUE)[0]
    marker = 235  # a light marker on a dark colour
    side = 2 * int(min(W, H) * 0.15 / 2)
    spot = (2 * int(H * 0.05 / 2) + side // 2, side // 2)  # the marker's centre at t = 0
    for t in [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]:
        luma = compositor.compose(t).luma()
        expected_spot = blend(blue, marker) if t == 0.0 else blend(blue, red)
        assert luma[spot] == expected_spot, t
        assert luma[H // 4, W // 4] == blend(blue, red), t  # user 2 over user 1
        assert luma[H // 2 + 10, W // 2 + 10] == red, t  # user 1 alone
        # at t = 1 the marker is half-way (x 142-177), partly right of user 2
        assert luma[spot[0], W // 2 + 10] == (marker if t == 1.0 else red), t


def test_a_layout_change_repaints_the_whole_frame() -> None:
    one = LayoutSpec(mixed_video_layout=3, regions=(LayoutRegionSpec(0.0, 0.0, 0.5, 1.0),))
    other = LayoutSpec(mixed_video_layout=3, regions=(LayoutRegionSpec(0.5, 0.0, 0.5, 1.0),))
    compositor = Compositor(W, H, one, ImageStore(None), buffers=2)
    compositor.update([UserSnapshot("1", VideoSource(color=RED), None)], 0.0)
    red, black = hex_to_yuv(RED)[0], hex_to_yuv("#000000")[0]
    for step in range(6):
        compositor.set_layout(other if step % 2 else one)
        luma = compositor.compose(step / 15).luma()
        left, right = (black, red) if step % 2 else (red, black)
        assert (luma[H - 10, 10], luma[H - 10, W - 10]) == (left, right), step

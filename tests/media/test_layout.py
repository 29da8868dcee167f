"""Layout geometry (docs/service/api-contract.md#transcodingconfig) in pixels on a 360x640
canvas."""

from __future__ import annotations

from emulator.media import LayoutRegionSpec, LayoutSpec, regions_for
from emulator.media.layout import RENDER_CROP, RENDER_FIT, Region

W, H = 360, 640


def rects(layout: LayoutSpec, count: int) -> list[tuple[str, int, int, int, int]]:
    uids = [str(i + 1) for i in range(count)]
    return [(r.uid, r.x, r.y, r.width, r.height) for r in regions_for(layout, uids, W, H)]


FLOATING = LayoutSpec(mixed_video_layout=0)
BEST_FIT = LayoutSpec(mixed_video_layout=1)


def test_floating_one_user_fills_canvas() -> None:
    assert rects(FLOATING, 1) == [("1", 0, 0, 360, 640)]


def test_floating_two_users_first_tile_bottom_left() -> None:
    assert rects(FLOATING, 2) == [("1", 0, 0, 360, 640), ("2", 4, 482, 84, 150)]


def test_floating_five_users_fill_bottom_row() -> None:
    assert rects(FLOATING, 5)[1:] == [
        ("2", 4, 482, 84, 150),
        ("3", 94, 482, 84, 150),
        ("4", 182, 482, 84, 150),
        ("5", 272, 482, 84, 150),
    ]


def test_floating_sixth_user_starts_second_row_up() -> None:
    assert rects(FLOATING, 6)[5] == ("6", 4, 324, 84, 150)


def test_floating_seventeen_users_top_right_tile() -> None:
    result = rects(FLOATING, 17)
    assert len(result) == 17
    assert result[16] == ("17", 272, 8, 84, 150)


def test_floating_tiles_are_transparent_when_empty() -> None:
    regions = regions_for(FLOATING, ["1", "2"], W, H)
    assert regions[0].show_background_when_empty
    assert not regions[1].show_background_when_empty


def test_at_most_seventeen_regions() -> None:
    for layout in (FLOATING, BEST_FIT, LayoutSpec(mixed_video_layout=2, max_resolution_uid="1")):
        assert len(rects(layout, 20)) == 17


def test_best_fit_one_user_full() -> None:
    assert rects(BEST_FIT, 1) == [("1", 0, 0, 360, 640)]


def test_best_fit_two_users_side_by_side() -> None:
    assert rects(BEST_FIT, 2) == [("1", 0, 0, 180, 640), ("2", 180, 0, 180, 640)]


def test_best_fit_four_users_two_by_two() -> None:
    assert rects(BEST_FIT, 4) == [
        ("1", 0, 0, 180, 320),
        ("2", 180, 0, 180, 320),
        ("3", 0, 320, 180, 320),
        ("4", 180, 320, 180, 320),
    ]


def test_best_fit_three_users_leave_a_cell_empty() -> None:
    assert rects(BEST_FIT, 3) == rects(BEST_FIT, 4)[:3]


def test_best_fit_five_users_three_by_three() -> None:
    assert rects(BEST_FIT, 5) == [
        ("1", 0, 0, 120, 214),
        ("2", 120, 0, 120, 214),
        ("3", 240, 0, 120, 214),
        ("4", 0, 214, 120, 212),
        ("5", 120, 214, 120, 212),
    ]


def test_best_fit_sixteen_users_four_by_four() -> None:
    result = rects(BEST_FIT, 16)
    assert result[0] == ("1", 0, 0, 90, 160)
    assert result[15] == ("16", 270, 480, 90, 160)


def test_best_fit_seventeen_users_bands_and_centred_last_cell() -> None:
    result = rects(BEST_FIT, 17)
    assert result[0] == ("1", 36, 0, 72, 128)
    assert result[3] == ("4", 252, 0, 72, 128)
    assert result[15] == ("16", 252, 384, 72, 128)
    assert result[16] == ("17", 144, 512, 72, 128)


def test_vertical_max_user_large_left_region_fit() -> None:
    layout = LayoutSpec(mixed_video_layout=2, max_resolution_uid="1")
    regions = regions_for(layout, ["1"], W, H)
    assert regions == [Region("1", 0, 0, 288, 640, render_mode=RENDER_FIT)]


def test_vertical_others_tiled_on_the_right() -> None:
    layout = LayoutSpec(mixed_video_layout=2, max_resolution_uid="2")
    assert rects(layout, 5) == [
        ("2", 0, 0, 288, 640),
        ("1", 288, 0, 72, 160),
        ("3", 288, 160, 72, 160),
        ("4", 288, 320, 72, 160),
        ("5", 288, 480, 72, 160),
    ]


def test_vertical_two_users() -> None:
    layout = LayoutSpec(mixed_video_layout=2, max_resolution_uid="1")
    assert rects(layout, 2) == [("1", 0, 0, 288, 640), ("2", 288, 0, 72, 160)]


def test_vertical_without_max_user_leaves_large_region_empty() -> None:
    layout = LayoutSpec(mixed_video_layout=2, max_resolution_uid="99")
    result = rects(layout, 2)
    assert result == [("1", 288, 0, 72, 160), ("2", 288, 160, 72, 160)]


def test_vertical_seventeen_users_two_columns_of_eight() -> None:
    layout = LayoutSpec(mixed_video_layout=2, max_resolution_uid="1")
    result = rects(layout, 17)
    assert result[0] == ("1", 0, 0, 288, 640)
    small = result[1:]
    assert len(small) == 16
    assert {r[1] for r in small[:8]} == {288}
    assert {r[1] for r in small[8:]} == {324}
    assert small[0] == ("2", 288, 0, 36, 80)
    assert small[15] == ("17", 324, 560, 36, 80)


def test_vertical_small_windows_never_overlap_large_region() -> None:
    for count in range(1, 18):
        layout = LayoutSpec(mixed_video_layout=2, max_resolution_uid="1")
        regions = regions_for(layout, [str(i + 1) for i in range(count)], W, H)
        big = regions[0]
        for region in regions[1:]:
            assert region.x >= big.x + big.width
            assert region.x + region.width <= W and region.y + region.height <= H


def test_custom_regions_to_pixels_with_alpha_and_mode() -> None:
    layout = LayoutSpec(
        mixed_video_layout=3,
        regions=(
            LayoutRegionSpec(x=0.0, y=0.0, width=1.0, height=0.5, alpha=0.5, render_mode=1),
            LayoutRegionSpec(x=0.5, y=0.5, width=0.5, height=0.5),
        ),
    )
    assert regions_for(layout, ["1", "2"], W, H) == [
        Region("1", 0, 0, 360, 320, alpha=0.5, render_mode=RENDER_FIT),
        Region("2", 180, 320, 180, 320, render_mode=RENDER_CROP),
    ]


def test_custom_uid_bound_entries_and_join_order_fill() -> None:
    layout = LayoutSpec(
        mixed_video_layout=3,
        regions=(
            LayoutRegionSpec(x=0.0, y=0.0, width=0.5, height=0.5),
            LayoutRegionSpec(x=0.5, y=0.0, width=0.5, height=0.5, uid="3"),
            LayoutRegionSpec(x=0.0, y=0.5, width=0.5, height=0.5),
            LayoutRegionSpec(x=0.5, y=0.5, width=0.5, height=0.5, uid="9"),  # absent user
        ),
    )
    result = [(r.uid, r.x, r.y) for r in regions_for(layout, ["1", "2", "3", "4"], W, H)]
    assert result == [("1", 0, 0), ("3", 180, 0), ("2", 0, 320)]


def test_regions_shift_when_a_user_leaves() -> None:
    before = rects(BEST_FIT, 3)
    after = [(r.uid, r.x, r.y, r.width, r.height) for r in regions_for(BEST_FIT, ["1", "3"], W, H)]
    assert after[1][0] == "3"
    assert after[1][1:] == (180, 0, 180, 640)
    assert before[2][0] == "3"


def test_pixel_rects_are_even_and_inside_canvas() -> None:
    for layout in (FLOATING, BEST_FIT, LayoutSpec(mixed_video_layout=2, max_resolution_uid="1")):
        for count in range(1, 18):
            for region in regions_for(layout, [str(i) for i in range(count)], 362, 202):
                assert region.x % 2 == region.y % 2 == region.width % 2 == region.height % 2 == 0
                assert region.x + region.width <= 362 and region.y + region.height <= 202

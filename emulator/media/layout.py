"""Canvas geometry of the composite layouts, as pure functions
(docs/service/api-contract.md#transcodingconfig, docs/service/behaviour.md#canvas).

Every layout is first computed in fractions of the canvas, then converted to pixel
rectangles whose corners are rounded to even pixels so that each region maps onto whole
4:2:0 chroma samples. Regions are returned in drawing order (later regions are drawn on top).

Rules common to all layouts (docs/service/api-contract.md#transcodingconfig "Built-in layout
geometry", docs/service/behaviour.md#canvas):
- the canvas holds at most 17 regions, so only the first 17 users in join order appear;
- a user who publishes only audio still occupies a region;
- regions are recomputed from the current join-ordered user list, so when a user leaves,
  later joiners shift into the freed region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from emulator.media.models import LayoutSpec

MAX_REGIONS = 17
RENDER_CROP = 0
RENDER_FIT = 1

FLOATING = 0
BEST_FIT = 1
VERTICAL = 2
CUSTOM = 3

# Floating layout tiles (docs/service/api-contract.md#transcodingconfig): 23.5% x 23.5% of the
# canvas, 1.2% gaps and margins.
_TILE = 0.235
_GAP = 0.012
_TILES_PER_ROW = 4


@dataclass(frozen=True)
class Region:
    """A user's rectangle on the canvas, in pixels.

    `show_background_when_empty` is False for regions that are transparent while the user
    shows no video (the floating layout's small tiles,
    docs/service/api-contract.md#transcodingconfig); otherwise an empty region shows the canvas
    background.
    """

    uid: str
    x: int
    y: int
    width: int
    height: int
    alpha: float = 1.0
    render_mode: int = RENDER_CROP
    show_background_when_empty: bool = True


@dataclass(frozen=True)
class _FracRegion:
    uid: str
    x: float
    y: float
    width: float
    height: float
    alpha: float = 1.0
    render_mode: int = RENDER_CROP
    show_background_when_empty: bool = True


def regions_for(
    layout: LayoutSpec, uids_in_join_order: Sequence[str], width: int, height: int
) -> list[Region]:
    """Pixel regions of `uids_in_join_order` on a `width` x `height` canvas under `layout`.

    Users beyond the first 17 get no region. Users without a region (layout 3 with fewer
    entries than users, layout 2 beyond 16 small windows) are simply not on screen.
    Degenerate rectangles (zero width or height after rounding) are dropped.
    """
    uids = list(uids_in_join_order)[:MAX_REGIONS]
    regions = (_to_pixels(frac, width, height) for frac in _fractions(layout, uids))
    return [region for region in regions if region.width > 0 and region.height > 0]


def _fractions(layout: LayoutSpec, uids: Sequence[str]) -> list[_FracRegion]:
    if layout.mixed_video_layout == BEST_FIT:
        return best_fit_fractions(uids)
    if layout.mixed_video_layout == VERTICAL:
        return vertical_fractions(uids, layout.max_resolution_uid)
    if layout.mixed_video_layout == CUSTOM:
        return custom_fractions(uids, layout)
    return floating_fractions(uids)


def floating_fractions(uids: Sequence[str]) -> list[_FracRegion]:
    """Layout 0, floating (docs/service/api-contract.md#transcodingconfig).

    The first user fills the canvas. The others are tiles of 23.5% x 23.5% of the canvas
    with 1.2% gaps and margins, 4 per row, filling rows from the bottom-left corner upwards,
    up to 4 rows (16 tiles, 17 users in total). Tiles are transparent while their user shows
    no video.
    """
    if not uids:
        return []
    regions = [_FracRegion(uids[0], 0.0, 0.0, 1.0, 1.0)]
    for index, uid in enumerate(uids[1:MAX_REGIONS]):
        row, col = divmod(index, _TILES_PER_ROW)
        x = _GAP + col * (_TILE + _GAP)
        y = 1.0 - (row + 1) * (_TILE + _GAP)
        regions.append(_FracRegion(uid, x, y, _TILE, _TILE, show_background_when_empty=False))
    return regions


def best_fit_fractions(uids: Sequence[str]) -> list[_FracRegion]:
    """Layout 1, best fit / adaptive grid (docs/service/api-contract.md#transcodingconfig; Agora's
    recording SDK sample layouts).

    1 user: the full canvas; 2 users: left and right halves, full height; 3-4 users: a 2x2
    grid; 5-9: 3x3; 10-16: 4x4 (cells filled row by row from the top-left; unused cells show
    the background). 17 users: cells of 20% x 20%, four rows of four between 10% bands on the
    left and right, and the 17th cell in the middle of a fifth, bottom row.
    """
    count = len(uids)
    if count == 0:
        return []
    if count == 2:
        return [_FracRegion(uid, 0.5 * i, 0.0, 0.5, 1.0) for i, uid in enumerate(uids)]
    if count == MAX_REGIONS:
        return _best_fit_17(uids)
    side = next(n for n in (1, 2, 3, 4) if count <= n * n)
    cell = 1.0 / side
    return [
        _FracRegion(uid, (i % side) * cell, (i // side) * cell, cell, cell)
        for i, uid in enumerate(uids)
    ]


def _best_fit_17(uids: Sequence[str]) -> list[_FracRegion]:
    cell = 0.2
    regions = [
        _FracRegion(uid, 0.1 + (i % 4) * cell, (i // 4) * cell, cell, cell)
        for i, uid in enumerate(uids[:16])
    ]
    regions.append(_FracRegion(uids[16], 0.4, 0.8, cell, cell))
    return regions


def vertical_fractions(uids: Sequence[str], max_resolution_uid: str | None) -> list[_FracRegion]:
    """Layout 2, vertical (docs/service/api-contract.md#transcodingconfig; proportions from Agora's
    recording SDK sample).

    The `max_resolution_uid` user gets the large left region, full height, scaled to fit
    (render mode 1, not cropped). The other users are small windows stacked top-down on the
    right, in join order, sized by how many there are:
    up to 4: large region 80% wide, one column of windows 20% x 25%;
    5-6: large 6/7, one column of 1/7 x 1/6; 7-8: large 8/9, one column of 1/9 x 1/8;
    9-16: large 80%, two columns of 10% x 12.5% (the first 8 in the left column).
    If `max_resolution_uid` is unset or absent, no user is in the large region, which then
    shows the background; at most 16 small windows are shown.
    """
    big = max_resolution_uid if max_resolution_uid in uids else None
    small = [uid for uid in uids if uid != big][:16]
    big_width, columns = _vertical_shape(len(small))
    regions: list[_FracRegion] = []
    if big is not None:
        regions.append(_FracRegion(big, 0.0, 0.0, big_width, 1.0, render_mode=RENDER_FIT))
    rows = 8 if columns == 2 else _vertical_rows(len(small))
    cell_w = (1.0 - big_width) / columns
    for index, uid in enumerate(small):
        col, row = divmod(index, rows)
        regions.append(_FracRegion(uid, big_width + col * cell_w, row / rows, cell_w, 1.0 / rows))
    return regions


def _vertical_shape(small_count: int) -> tuple[float, int]:
    """(large region width, number of small-window columns) for a count of small windows."""
    if small_count <= 4:
        return 0.8, 1
    if small_count <= 6:
        return 6 / 7, 1
    if small_count <= 8:
        return 8 / 9, 1
    return 0.8, 2


def _vertical_rows(small_count: int) -> int:
    if small_count <= 4:
        return 4
    return 6 if small_count <= 6 else 8


def custom_fractions(uids: Sequence[str], layout: LayoutSpec) -> list[_FracRegion]:
    """Layout 3, custom `layoutConfig` (docs/service/api-contract.md#transcodingconfig).

    Each entry is a region in canvas fractions with its own alpha and render mode. An entry
    naming a uid shows that user (and nobody else: if the user is absent the entry stays
    empty). Entries without a uid are given, in order, to the remaining users (those no entry
    names) in join order. Users left over have no region. At most 17 entries are used.
    """
    present = set(uids)
    bound = {entry.uid for entry in layout.regions if entry.uid is not None}
    free_users = iter([uid for uid in uids if uid not in bound])
    regions: list[_FracRegion] = []
    for entry in layout.regions[:MAX_REGIONS]:
        uid = entry.uid if entry.uid is not None else next(free_users, None)
        if uid is None or uid not in present:
            continue
        regions.append(
            _FracRegion(
                uid,
                entry.x,
                entry.y,
                entry.width,
                entry.height,
                alpha=min(max(entry.alpha, 0.0), 1.0),
                render_mode=entry.render_mode,
            )
        )
    return regions


def _to_pixels(frac: _FracRegion, width: int, height: int) -> Region:
    x0 = _even(frac.x * width, width)
    y0 = _even(frac.y * height, height)
    x1 = _even((frac.x + frac.width) * width, width)
    y1 = _even((frac.y + frac.height) * height, height)
    return Region(
        uid=frac.uid,
        x=x0,
        y=y0,
        width=max(0, x1 - x0),
        height=max(0, y1 - y0),
        alpha=frac.alpha,
        render_mode=frac.render_mode,
        show_background_when_empty=frac.show_background_when_empty,
    )


def _even(value: float, limit: int) -> int:
    """Round a pixel coordinate to the nearest even integer within [0, limit rounded down]."""
    rounded = 2 * round(value / 2 + 1e-9)
    return max(0, min(rounded, limit - limit % 2))

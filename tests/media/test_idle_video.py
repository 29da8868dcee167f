"""docs/service/behaviour.md#canvas: what a region shows when its user's video stops or the user
leaves.

The last frame is held for 3.5 s; then the region shows the user's backgroundConfig image,
else defaultUserBackgroundImage, else the canvas backgroundImage; with no image configured
the last frame stays. A user who leaves has no region: the canvas background (image, else
colour) shows through, and later joiners shift into freed regions. Every image level is
checked with images read from a local path and downloaded from an http URL.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from emulator.media import (
    BackgroundImageSpec,
    LayoutRegionSpec,
    LayoutSpec,
    MediaConfig,
    Region,
    regions_for,
)
from tests.support.media_sources import Record, write_image, write_split_image
from tests.support.mediadecode import (
    BLUE,
    CYAN,
    GREEN,
    GREY,
    MAGENTA,
    RED,
    WHITE,
    YELLOW,
    DecodedVideo,
    close_to,
    decode_video,
    rect_color,
    region_color,
    user,
)

W, H = 240, 320
BEST_FIT = LayoutSpec(mixed_video_layout=1)


def config(layout: LayoutSpec) -> MediaConfig:
    return MediaConfig(
        width=W,
        height=H,
        bitrate_kbps=300,
        slice_seconds=2.0,
        av_file_types=("hls", "mp4"),
        layout=layout,
    )


def mute_at_one_second(
    record: Record, layout: LayoutSpec, duration: float = 5.5
) -> tuple[DecodedVideo, Region, Region]:
    """User 1 (red) stops video at t=1 but stays; user 2 (green) keeps publishing."""
    steps = [
        (0.0, [user("1", RED, 440), user("2", GREEN, 660)]),
        (1.0, [user("1", None, 440), user("2", GREEN, 660)]),
    ]
    recording = record(config(layout), steps, duration)
    video = decode_video(recording.mp4.path)
    left, right = regions_for(layout, ["1", "2"], W, H)
    return video, left, right


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the test's image directory and counts the requests (proves the URL was used)."""

    served: list[str]

    def do_GET(self) -> None:
        self.served.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """(base URL, list of served paths) of a loopback HTTP server over `tmp_path/img`."""
    directory = tmp_path / "img"
    directory.mkdir()
    served: list[str] = []
    handler = partial(type("Handler", (_CountingHandler,), {"served": served}), directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class Images:
    """Test images by name, as local paths or as URLs of the loopback server."""

    def __init__(self, directory: Path, base_url: str | None, served: list[str]) -> None:
        self.directory = directory
        self.base_url = base_url
        self.served = served
        write_image(directory / "magenta.png", MAGENTA, (64, 64))
        write_image(directory / "cyan.jpg", CYAN, (80, 60))
        write_image(directory / "grey.png", GREY, (100, 100))
        write_split_image(directory / "split.png", BLUE, YELLOW, (200, 50))  # 4:1

    def __getitem__(self, name: str) -> str:
        file = {"magenta": "magenta.png", "cyan": "cyan.jpg", "grey": "grey.png"}.get(name, name)
        if self.base_url is None:
            return str(self.directory / file)
        return f"{self.base_url}/{file}"

    def assert_downloaded(self, *names: str) -> None:
        """With URLs, each named image must really have come over HTTP."""
        if self.base_url is not None:
            for name in names:
                assert self[name].removeprefix(self.base_url) in self.served, name


@pytest.fixture(params=["path", "url"])
def images(
    request: pytest.FixtureRequest, tmp_path: Path, image_server: tuple[str, list[str]]
) -> Images:
    base_url, served = image_server
    return Images(tmp_path / "img", base_url if request.param == "url" else None, served)


def test_last_frame_held_then_default_user_image(record: Record, images: Images) -> None:
    layout = LayoutSpec(mixed_video_layout=1, default_user_background_image=images["magenta"])
    video, left, right = mute_at_one_second(record, layout)
    assert close_to(region_color(video.frame_at(1.5), left), RED)
    assert close_to(region_color(video.frame_at(4.3), left), RED)  # 3.3 s after the stop
    assert close_to(region_color(video.frame_at(4.7), left), MAGENTA)  # 3.7 s after
    assert close_to(region_color(video.frame_at(5.4), left), MAGENTA)
    assert close_to(region_color(video.frame_at(5.4), right), GREEN)
    images.assert_downloaded("magenta")


def test_held_frame_is_frozen(record: Record) -> None:
    video, left, _ = mute_at_one_second(record, BEST_FIT, duration=3.0)
    crop = (slice(left.y, left.y + left.height), slice(left.x, left.x + left.width))
    moving = np.abs(video.frame_at(0.2)[crop].astype(int) - video.frame_at(0.8)[crop]).mean()
    held = np.abs(video.frame_at(1.5)[crop].astype(int) - video.frame_at(2.8)[crop]).mean()
    assert moving > 1.0  # the marker moves while live
    assert held < 0.5


def test_without_images_last_frame_stays(record: Record) -> None:
    video, left, _ = mute_at_one_second(record, BEST_FIT)
    assert close_to(region_color(video.frame_at(5.4), left), RED)


def test_user_background_config_beats_default(record: Record, images: Images) -> None:
    layout = LayoutSpec(
        mixed_video_layout=1,
        default_user_background_image=images["magenta"],
        background_image=images["grey"],
        user_backgrounds=(BackgroundImageSpec(uid="1", image=images["cyan"]),),
    )
    video, left, _ = mute_at_one_second(record, layout)
    assert close_to(region_color(video.frame_at(4.3), left), RED)
    assert close_to(region_color(video.frame_at(5.0), left), CYAN)
    images.assert_downloaded("cyan")


def test_default_user_image_beats_canvas_image(record: Record, images: Images) -> None:
    layout = LayoutSpec(
        mixed_video_layout=1,
        default_user_background_image=images["magenta"],
        background_image=images["grey"],
        user_backgrounds=(BackgroundImageSpec(uid="2", image=images["cyan"]),),  # not user 1
    )
    video, left, right = mute_at_one_second(record, layout)
    assert close_to(region_color(video.frame_at(5.0), left), MAGENTA)
    assert close_to(region_color(video.frame_at(5.0), right), GREEN)


def test_canvas_background_image_when_no_user_image(record: Record, images: Images) -> None:
    layout = LayoutSpec(
        mixed_video_layout=1, background_color="#FFFFFF", background_image=images["grey"]
    )
    video, left, right = mute_at_one_second(record, layout)
    assert close_to(region_color(video.frame_at(4.3), left), RED)
    assert close_to(region_color(video.frame_at(5.0), left), GREY)
    assert close_to(region_color(video.frame_at(5.0), right), GREEN)
    images.assert_downloaded("grey")


def test_user_image_crop_and_fit(record: Record, images: Images) -> None:
    """A 4:1 blue|yellow image in a 120x320 region: crop fills it with the middle of the
    image (blue left of centre, yellow right); fit shows a 120x30 band, the rest the canvas."""
    layouts = {
        mode: LayoutSpec(
            mixed_video_layout=1,
            background_color="#FFFFFF",
            user_backgrounds=(BackgroundImageSpec("1", images["split.png"], render_mode=mode),),
        )
        for mode in (0, 1)
    }
    crop, left, _ = mute_at_one_second(record, layouts[0])
    fit, _, _ = mute_at_one_second(record, layouts[1])
    assert (left.x, left.y, left.width, left.height) == (0, 0, 120, 320)
    assert close_to(rect_color(crop.frame_at(5.0), 20, 20, 30, 280), BLUE)
    assert close_to(rect_color(crop.frame_at(5.0), 70, 20, 30, 280), YELLOW)
    assert close_to(rect_color(fit.frame_at(5.0), 10, 154, 40, 12), BLUE)  # the band
    assert close_to(rect_color(fit.frame_at(5.0), 70, 154, 40, 12), YELLOW)
    assert close_to(rect_color(fit.frame_at(5.0), 10, 20, 100, 100), WHITE)  # above it
    images.assert_downloaded("split.png")


def test_never_published_user_gets_image_after_hold(record: Record, images: Images) -> None:
    layout = LayoutSpec(
        mixed_video_layout=1,
        background_color="#FFFFFF",
        default_user_background_image=images["magenta"],
    )
    recording = record(config(layout), [(0.0, [user("1", RED), user("2", None, 660)])], 4.5)
    video = decode_video(recording.mp4.path)
    _, right = regions_for(layout, ["1", "2"], W, H)
    assert close_to(region_color(video.frame_at(1.0), right), WHITE)  # background colour
    assert close_to(region_color(video.frame_at(4.0), right), MAGENTA)


def test_leaving_user_region_shows_background_colour_at_once(
    record: Record, images: Images
) -> None:
    """A leave is not a video stop: no hold, no user image; the canvas shows through."""
    bound = LayoutRegionSpec(x=0.0, y=0.0, width=0.5, height=1.0, uid="1")
    other = LayoutRegionSpec(x=0.5, y=0.0, width=0.5, height=1.0, uid="2")
    layout = LayoutSpec(
        mixed_video_layout=3,
        background_color="#0000FF",
        regions=(bound, other),
        default_user_background_image=images["magenta"],
    )
    steps = [(0.0, [user("1", RED), user("2", GREEN)]), (1.0, [user("2", GREEN)])]
    video = decode_video(record(config(layout), steps, 5.0).mp4.path)
    assert close_to(rect_color(video.frame_at(0.5), 30, 100, 60, 120), RED)
    assert close_to(rect_color(video.frame_at(1.1), 30, 100, 60, 120), BLUE)
    assert close_to(rect_color(video.frame_at(4.9), 30, 100, 60, 120), BLUE)
    assert close_to(rect_color(video.frame_at(4.9), 150, 100, 60, 120), GREEN)


def test_leaving_user_region_shows_canvas_image(record: Record, images: Images) -> None:
    layout = LayoutSpec(
        mixed_video_layout=3,
        background_color="#0000FF",
        background_image=images["grey"],
        regions=(LayoutRegionSpec(x=0.0, y=0.0, width=1.0, height=1.0, uid="1"),),
    )
    steps = [(0.0, [user("1", RED)]), (1.0, [])]
    video = decode_video(record(config(layout), steps, 2.0).mp4.path)
    assert close_to(rect_color(video.frame_at(0.5), 60, 100, 120, 120), RED)
    assert close_to(rect_color(video.frame_at(1.5), 60, 100, 120, 120), GREY)


def test_later_joiner_fills_freed_region(record: Record) -> None:
    """Layout 3 entries without uid are filled in join order: after user 2 leaves, user 3
    moves into its region and user 4, joining later, takes the next one."""
    entries = tuple(
        LayoutRegionSpec(x=x, y=0.0, width=1 / 3, height=1.0) for x in (0.0, 1 / 3, 2 / 3)
    )
    layout = LayoutSpec(mixed_video_layout=3, background_color="#FFFFFF", regions=entries)
    steps = [
        (0.0, [user("1", RED), user("2", GREEN), user("3", BLUE)]),
        (1.0, [user("1", RED), user("3", BLUE)]),
        (2.0, [user("1", RED), user("3", BLUE), user("4", YELLOW)]),
    ]
    video = decode_video(record(config(layout), steps, 3.0).mp4.path)
    columns = [(x, 100, 40, 120) for x in (20, 100, 180)]

    def colours(t: float) -> list[tuple[int, int, int]]:
        return [rect_color(video.frame_at(t), *box) for box in columns]

    for t, expected in ((0.5, [RED, GREEN, BLUE]), (1.5, [RED, BLUE, WHITE])):
        assert all(close_to(a, e) for a, e in zip(colours(t), expected, strict=True)), t
    assert all(close_to(a, e) for a, e in zip(colours(2.5), [RED, BLUE, YELLOW], strict=True))


def test_unreadable_image_is_ignored(record: Record, tmp_path: Path) -> None:
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"definitely not a png")
    layout = LayoutSpec(
        mixed_video_layout=1,
        default_user_background_image=str(bad),
        background_image=str(tmp_path / "missing.jpg"),
    )
    video, left, _ = mute_at_one_second(record, layout)
    assert close_to(region_color(video.frame_at(5.0), left), RED)


def test_unreachable_url_is_ignored(record: Record, image_server: tuple[str, list[str]]) -> None:
    base_url, served = image_server
    layout = LayoutSpec(mixed_video_layout=1, default_user_background_image=f"{base_url}/nope.png")
    video, left, _ = mute_at_one_second(record, layout)
    assert served == ["/nope.png"]  # tried, answered 404
    assert close_to(region_color(video.frame_at(5.0), left), RED)

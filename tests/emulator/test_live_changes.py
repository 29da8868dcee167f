"""updateLayout and update while recording, and the subscription rules, pinned by decoding what
the recording wrote (docs/service/api-contract.md#recordingconfig,
docs/service/api-contract.md#transcodingconfig, docs/service/api-contract.md#update,
docs/service/api-contract.md#updatelayout, docs/service/behaviour.md#canvas)."""

from __future__ import annotations

from pathlib import Path

from emulator.media import LayoutSpec
from tests.support.emulator import Api
from tests.support.emulator_media import (
    Timeline,
    colour_at,
    composite_request,
    region_centres,
    shows,
    tone_levels_between,
)
from tests.support.mediacheck import close_to

RED, GREEN, BLUE, BLACK, WHITE = "#FF0000", "#00FF00", "#0000FF", "#000000", "#FFFFFF"


def stopped_mp4(api: Api, timeline: Timeline) -> Path:
    r = api.stop(timeline.rid, timeline.sid, "room", "100")
    assert r.status_code == 200, r.text
    bucket = api.server.config.storage_dir / "bucket" / "dir1" / "dir2"
    return bucket / f"{timeline.sid}_room_0.mp4"


def test_update_layout_replaces_the_whole_layout(api: Api) -> None:
    """best fit on blue -> updateLayout(floating, no backgroundColor): floating geometry on the
    default black, not on the blue set at start."""
    api.join("room", "1", video=None, audio={"tone": 440})  # audio only: shows the background
    api.join("room", "2", video={"color": GREEN}, audio=None)
    client = composite_request({"mixedVideoLayout": 1, "backgroundColor": BLUE})
    timeline = Timeline.start(api, "room", "100", client)
    timeline.phase(1.3)
    layout = {"mixedVideoLayout": 0}
    timeline.phase(
        1.3, lambda: api.update_layout(timeline.rid, timeline.sid, "room", "100", layout)
    )
    mp4 = stopped_mp4(api, timeline)

    before = sum(timeline.window(0)) / 2
    best_fit = region_centres(LayoutSpec(mixed_video_layout=1), ["1", "2"])
    assert shows(mp4, before, best_fit["1"], BLUE), colour_at(mp4, before, best_fit["1"])
    assert shows(mp4, before, best_fit["2"], GREEN)

    after = sum(timeline.window(1)) / 2
    floating = region_centres(LayoutSpec(mixed_video_layout=0), ["1", "2"])
    assert shows(mp4, after, floating["2"], GREEN), colour_at(mp4, after, floating["2"])
    for where in (floating["1"], best_fit["1"], best_fit["2"]):  # the rest: default black
        assert shows(mp4, after, where, BLACK), (where, colour_at(mp4, after, where))


def test_update_subscriptions_while_recording(api: Api) -> None:
    """Phase 0: both users. Phase 1: user 2's video unsubscribed: its cell shows the background
    at once (no last frame held), its tone still plays. Phase 2: user 2's audio unsubscribed
    too: it has no region any more (user 1 fills the canvas) and its tone is gone."""
    api.join("room", "1", video={"color": RED}, audio={"tone": 440})
    api.join("room", "2", video={"color": GREEN}, audio={"tone": 660})
    timeline = Timeline.start(
        api, "room", "100", composite_request({"mixedVideoLayout": 1, "backgroundColor": BLUE})
    )
    timeline.phase(1.3)
    video_off = {
        "streamSubscribe": {
            "audioUidList": {"subscribeAudioUids": ["#allstream#"]},
            "videoUidList": {"unSubscribeVideoUids": ["2"]},
        }
    }
    timeline.phase(1.3, lambda: api.update(timeline.rid, timeline.sid, "room", "100", video_off))
    all_off = {
        "streamSubscribe": {
            "audioUidList": {"unsubscribeAudioUids": ["2"]},  # the other spelling
            "videoUidList": {"unSubscribeVideoUids": ["2"]},
        }
    }
    timeline.phase(1.3, lambda: api.update(timeline.rid, timeline.sid, "room", "100", all_off))
    mp4 = stopped_mp4(api, timeline)

    cells = region_centres(LayoutSpec(mixed_video_layout=1), ["1", "2"])
    expected_screens = [
        {cells["1"]: RED, cells["2"]: GREEN},
        {cells["1"]: RED, cells["2"]: BLUE},
        {cells["1"]: RED, cells["2"]: RED, (0.5, 0.5): RED},  # user 1 alone: full canvas
    ]
    for phase, screen in enumerate(expected_screens):
        start, end = timeline.window(phase)
        for t in (start, end):
            for where, colour in screen.items():
                assert shows(mp4, t, where, colour), (phase, t, where, colour_at(mp4, t, where))
    for phase, tone_660_present in enumerate((True, True, False)):
        levels = tone_levels_between(mp4, *timeline.window(phase), [440, 660])
        assert levels[440] > 0.5, (phase, levels)
        assert (levels[660] > 0.5) is tone_660_present, (phase, levels)


def test_a_list_for_audio_only_means_no_video(api: Api) -> None:
    """recordingConfig with an audio blacklist and no video list
    (docs/service/api-contract.md#recordingconfig): no video is subscribed at all, so the canvas
    shows only the background; the blacklisted tone is out."""
    api.join("room", "1", video={"color": RED}, audio={"tone": 440})
    api.join("room", "2", video={"color": GREEN}, audio={"tone": 660})
    client = composite_request(
        {"mixedVideoLayout": 1, "backgroundColor": BLUE}, unsubscribeAudioUids=["2"]
    )
    timeline = Timeline.start(api, "room", "100", client)
    timeline.phase(1.8)
    mp4 = stopped_mp4(api, timeline)
    start, end = timeline.window(0)
    for t in (start, end):
        for where in ((0.25, 0.5), (0.75, 0.5), (0.5, 0.5)):
            assert shows(mp4, t, where, BLUE), (t, where, colour_at(mp4, t, where))
    levels = tone_levels_between(mp4, start, end, [440, 660])
    assert levels[440] > 0.9 and levels[660] < 0.05, levels


PALETTE = [
    "#FF0000", "#00FF00", "#0000FF", "#FFFF00", "#FF00FF", "#00FFFF", "#800000", "#008000",
    "#000080", "#808000", "#800080", "#008080", "#FF8000", "#80FF00", "#0080FF", "#FF0080",
    "#8000FF",
]  # fmt: skip


def test_only_17_users_are_recorded_and_the_18th_moves_up(api: Api) -> None:
    colours = {str(i + 1): colour for i, colour in enumerate([*PALETTE, WHITE])}
    for uid, colour in colours.items():
        assert api.join("room", uid, video={"color": colour}, audio=None).status_code == 201
    client = composite_request({"mixedVideoLayout": 1}, streams=1)
    timeline = Timeline.start(api, "room", "100", client)
    timeline.phase(1.3)
    timeline.phase(1.3, lambda: api.leave("room", "5"))
    mp4 = stopped_mp4(api, timeline)

    best_fit = LayoutSpec(mixed_video_layout=1)
    first_17 = [str(i) for i in range(1, 18)]
    t = sum(timeline.window(0)) / 2
    centres = region_centres(best_fit, first_17)
    assert len(centres) == 17
    for uid, where in centres.items():
        assert shows(mp4, t, where, colours[uid]), (uid, colour_at(mp4, t, where))
    assert not any(close_to(colour_at(mp4, t, where), WHITE) for where in centres.values())

    t = sum(timeline.window(1)) / 2
    moved_up = [uid for uid in [*first_17, "18"] if uid != "5"]
    centres = region_centres(best_fit, moved_up)
    for uid, where in centres.items():
        assert shows(mp4, t, where, colours[uid]), (uid, colour_at(mp4, t, where))
    assert shows(mp4, t, centres["18"], WHITE)

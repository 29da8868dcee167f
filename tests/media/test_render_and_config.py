"""render_scenario, the API JSON parsers, file naming and the playlist text."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.naming import mp4_name, playlist_name, slice_name, utc_stamp
from emulator.media import (
    BackgroundImageSpec,
    LayoutRegionSpec,
    LayoutSpec,
    MediaConfig,
    layout_spec_from_api,
    media_config_from_api,
    regions_for,
    render_scenario,
    sanitize_cname,
)
from emulator.media.playlist import PlaylistEntry, render_playlist
from tests.support.mediadecode import (
    BLUE,
    GREEN,
    RED,
    close_to,
    decode_audio,
    decode_video,
    region_color,
    tone_levels,
)


def scenario(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "cname": "preview",
        "sid": "feedfacefeedfacefeedfacefeedface",
        "start_epoch_ms": 1_560_238_366_073,
        "duration": 4,
        "recordingConfig": {
            "streamTypes": 2,
            "audioProfile": 0,
            "transcodingConfig": {
                "width": 240,
                "height": 320,
                "fps": 10,
                "bitrate": 300,
                "mixedVideoLayout": 1,
                "backgroundColor": "#000000",
            },
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "events": [
            {"at": 0, "join": {"uid": "1", "video": {"color": "#FF0000"}, "audio": {"tone": 440}}},
            {"at": 0, "join": {"uid": "2", "video": {"color": "#00FF00"}, "audio": {"tone": 660}}},
            {"at": 1, "join": {"uid": "3", "video": {"color": "#0000FF"}, "audio": {"tone": 880}}},
            {"at": 2, "leave": {"uid": "2"}},
            {"at": 2, "mute": {"uid": "1", "audio": True}},
            {"at": 3, "updateLayout": {"mixedVideoLayout": 0, "backgroundColor": "#FFFFFF"}},
        ],
    }
    base.update(overrides)
    return base


def test_render_scenario_timeline(tmp_path: Path) -> None:
    files = render_scenario(scenario(), tmp_path)
    assert all(f.path.parent == tmp_path and f.path.exists() for f in files)
    playlist = next(f for f in files if f.kind == "m3u8")
    assert playlist.name == "feedfacefeedfacefeedfacefeedface_preview.m3u8"
    first_ts = next(f for f in files if f.kind == "ts")
    assert first_ts.name == "feedfacefeedfacefeedfacefeedface_preview_20190611073246073.ts"
    mp4 = next(f for f in files if f.kind == "mp4")
    video = decode_video(mp4.path)
    assert len(video.frames) == 40 and video.rate == pytest.approx(10)
    best_fit = LayoutSpec(mixed_video_layout=1)
    two = regions_for(best_fit, ["1", "2"], 240, 320)
    three = regions_for(best_fit, ["1", "2", "3"], 240, 320)
    after_leave = regions_for(best_fit, ["1", "3"], 240, 320)
    floating = regions_for(LayoutSpec(mixed_video_layout=0), ["1", "3"], 240, 320)
    for region, color in zip(two, (RED, GREEN), strict=True):
        assert close_to(region_color(video.frame_at(0.5), region), color)
    assert close_to(region_color(video.frame_at(1.5), three[2]), BLUE)
    assert close_to(region_color(video.frame_at(2.5), after_leave[0]), RED)
    assert close_to(region_color(video.frame_at(2.5), after_leave[1]), BLUE)  # 3 moved up
    # updateLayout at 3 s: floating, user 1 full canvas, user 3 in the first tile
    assert close_to(region_color(video.frame_at(3.5), floating[0]), RED)
    assert close_to(region_color(video.frame_at(3.5), floating[1]), BLUE)
    audio = decode_audio(mp4.path)
    early = tone_levels(audio.samples[:, 4_800:43_200], 48_000, [440.0, 660.0, 880.0])
    late = tone_levels(audio.samples[:, 110_000:], 48_000, [440.0, 660.0, 880.0])
    assert early[440.0] > 0.5 and early[660.0] > 0.5 and early[880.0] < 0.05
    assert late[880.0] > 0.5 and late[440.0] < 0.05 and late[660.0] < 0.05


def test_render_scenario_update_layout_background(tmp_path: Path) -> None:
    events = [
        {"at": 0, "join": {"uid": "1", "video": None, "audio": {"tone": 440}}},
        {"at": 1, "updateLayout": {"backgroundColor": "#FFFFFF"}},
    ]
    files = render_scenario(scenario(duration=2, events=events), tmp_path)
    video = decode_video(next(f for f in files if f.kind == "mp4").path)
    assert close_to(tuple(int(c) for c in video.frame_at(0.5)[160, 120]), (0, 0, 0))  # type: ignore[arg-type]
    assert close_to(tuple(int(c) for c in video.frame_at(1.5)[160, 120]), (255, 255, 255))  # type: ignore[arg-type]


def test_render_scenario_subscription_lists(tmp_path: Path) -> None:
    config = scenario()["recordingConfig"]
    assert isinstance(config, dict)
    config = {**config, "subscribeAudioUids": ["2"]}  # audio list only: no video at all
    events = [
        {"at": 0, "join": {"uid": "1", "video": {"color": "#FF0000"}, "audio": {"tone": 440}}},
        {"at": 0, "join": {"uid": "2", "video": {"color": "#00FF00"}, "audio": {"tone": 660}}},
    ]
    files = render_scenario(scenario(duration=1, events=events, recordingConfig=config), tmp_path)
    mp4 = next(f for f in files if f.kind == "mp4")
    levels = tone_levels(decode_audio(mp4.path).samples, 48_000, [440.0, 660.0])
    assert levels[660.0] > 0.5 and levels[440.0] < 0.05
    frame = decode_video(mp4.path).frame_at(0.5)
    assert close_to(tuple(int(c) for c in frame[160, 60]), (0, 0, 0))  # type: ignore[arg-type]


def test_media_config_defaults() -> None:
    assert media_config_from_api({}, {}) == MediaConfig()


def test_media_config_from_api_full() -> None:
    config = media_config_from_api(
        {
            "streamTypes": 0,
            "audioProfile": 2,
            "transcodingConfig": {
                "width": 640,
                "height": 360,
                "fps": 30,
                "bitrate": 800,
                "mixedVideoLayout": 3,
                "backgroundColor": "#112233",
                "maxResolutionUid": "7",
                "layoutConfig": [
                    {
                        "uid": "7",
                        "x_axis": 0.1,
                        "y_axis": 0.2,
                        "width": 0.3,
                        "height": 0.4,
                        "alpha": 0.5,
                        "render_mode": 1,
                    },
                    {"x_axis": 0, "y_axis": 0, "width": 1, "height": 1},
                ],
                "backgroundImage": "https://example.invalid/bg.jpg",
                "defaultUserBackgroundImage": "/tmp/user.png",
                "backgroundConfig": [{"uid": "7", "image_url": "https://x.invalid/7.jpg"}],
            },
        },
        {"avFileType": ["hls", "mp4"]},
    )
    assert (config.width, config.height, config.fps, config.bitrate_kbps) == (640, 360, 30, 800)
    assert (config.stream_types, config.audio_profile) == (0, 2)
    assert config.av_file_types == ("hls", "mp4")
    assert config.layout == LayoutSpec(
        mixed_video_layout=3,
        background_color="#112233",
        max_resolution_uid="7",
        regions=(
            LayoutRegionSpec(
                x=0.1, y=0.2, width=0.3, height=0.4, uid="7", alpha=0.5, render_mode=1
            ),
            LayoutRegionSpec(x=0.0, y=0.0, width=1.0, height=1.0),
        ),
        background_image="https://example.invalid/bg.jpg",
        default_user_background_image="/tmp/user.png",
        user_backgrounds=(BackgroundImageSpec(uid="7", image="https://x.invalid/7.jpg"),),
    )


def test_unsupported_fps_becomes_15() -> None:
    assert media_config_from_api({"transcodingConfig": {"fps": 25}}, {}).fps == 15


def test_update_layout_omitted_fields_are_defaults() -> None:
    assert layout_spec_from_api({"mixedVideoLayout": 2}) == LayoutSpec(mixed_video_layout=2)
    assert layout_spec_from_api({}) == LayoutSpec()


def test_sanitize_cname() -> None:
    assert sanitize_cname("a!b@c#d$e%f^g&h*i(j)k+l_m.n=o[p]q{r}s~t|u,v;w:x?y<z>") == (
        "a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t-u-v-w-x-y-z-"
    )
    assert sanitize_cname("class42") == "class42"


def test_file_names() -> None:
    assert utc_stamp(1_560_238_366_073) == "20190611073246073"
    assert playlist_name("sid", "a.b") == "sid_a-b.m3u8"
    assert slice_name("sid", "c", 1_560_238_366_073) == "sid_c_20190611073246073.ts"
    assert mp4_name("sid", "c", 2) == "sid_c_2.mp4"


def test_playlist_text() -> None:
    text = render_playlist(
        [PlaylistEntry("a.ts", 15.0), PlaylistEntry("b.ts", 3.25)],
        target_seconds=15.0,
        track_types=["VIDEO", "AUDIO"],
        start_epoch_ms=123,
        ended=True,
    )
    assert text == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-TARGETDURATION:15\n"
        "#EXT-X-AGORA-TRACK-EVENT:EVENT=START,TRACK_TYPE=VIDEO,TIME=123\n"
        "#EXT-X-AGORA-TRACK-EVENT:EVENT=START,TRACK_TYPE=AUDIO,TIME=123\n"
        "#EXTINF:15.000,\na.ts\n#EXTINF:3.250,\nb.ts\n#EXT-X-ENDLIST\n"
    )


def test_render_scenario_sees_only_users_with_recorded_streams(tmp_path: Path) -> None:
    """As in a live recording: a host is on the canvas from their first recorded stream on;
    audience members never are."""
    events = [
        {"at": 0, "join": {"uid": "1", "video": {"color": "#FF0000"}, "audio": None}},
        {"at": 0, "join": {"uid": "2", "video": {"color": "#00FF00"}, "audio": None}},
        {"at": 0, "mute": {"uid": "2", "video": True}},  # joined but not publishing yet
        {
            "at": 0,
            "join": {"uid": "3", "role": "audience", "video": {"color": "#0000FF"}},
        },
        {"at": 1, "unmute": {"uid": "2", "video": True}},
    ]
    files = render_scenario(scenario(duration=2, events=events), tmp_path)
    video = decode_video(next(f for f in files if f.kind == "mp4").path)
    best_fit = LayoutSpec(mixed_video_layout=1)
    (alone,) = regions_for(best_fit, ["1"], 240, 320)
    assert close_to(region_color(video.frame_at(0.5), alone), RED)
    for region, color in zip(
        regions_for(best_fit, ["1", "2"], 240, 320), (RED, GREEN), strict=True
    ):
        assert close_to(region_color(video.frame_at(1.5), region), color)
    for t in (0.5, 1.5):
        frame = video.frame_at(t)
        blue = (frame[..., 2] > 180) & (frame[..., 0] < 80) & (frame[..., 1] < 80)
        assert not blue.any(), t


def test_render_scenario_video_only_ignores_audio_only_users(tmp_path: Path) -> None:
    config = scenario()["recordingConfig"]
    assert isinstance(config, dict)
    events = [
        {"at": 0, "join": {"uid": "1", "video": None, "audio": {"tone": 440}}},
        {"at": 0, "join": {"uid": "2", "video": {"color": "#0000FF"}, "audio": None}},
    ]
    recording_config = {**config, "streamTypes": 1}
    files = render_scenario(
        scenario(duration=1, events=events, recordingConfig=recording_config), tmp_path
    )
    video = decode_video(next(f for f in files if f.kind == "mp4").path)
    (whole,) = regions_for(LayoutSpec(mixed_video_layout=1), ["2"], 240, 320)
    assert (whole.width, whole.height) == (240, 320)
    assert close_to(region_color(video.frame_at(0.5), whole), BLUE)

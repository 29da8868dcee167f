"""CompositeRecorder end to end: decode the real files and check what is in them."""

from __future__ import annotations

import pytest

from contract.naming import utc_stamp
from emulator.media import LayoutRegionSpec, LayoutSpec, MediaConfig, OutputFile, regions_for
from tests.support.media_sources import SID, START_MS, Record
from tests.support.mediadecode import (
    BLUE,
    GREEN,
    MAGENTA,
    RED,
    SLICE_RE,
    YELLOW,
    close_to,
    decode_audio,
    decode_video,
    hex_of,
    parse_playlist,
    rect_color,
    region_color,
    stream_types,
    tone_levels,
    user,
)

FOUR = [user("1", RED, 440), user("2", GREEN, 660), user("3", BLUE, 880), user("4", YELLOW, 1100)]
COLORS = {"1": RED, "2": GREEN, "3": BLUE, "4": YELLOW}
TONES = [440.0, 660.0, 880.0, 1100.0]
ABSENT_TONES = [550.0, 770.0, 990.0]


def config(**overrides: object) -> MediaConfig:
    base: dict[str, object] = {
        "width": 240,
        "height": 320,
        "fps": 15,
        "bitrate_kbps": 300,
        "slice_seconds": 2.0,
        "av_file_types": ("hls", "mp4"),
        "layout": LayoutSpec(mixed_video_layout=1),
    }
    base.update(overrides)
    return MediaConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def best_fit_four(tmp_path_factory: pytest.TempPathFactory) -> object:
    """One 5 s best-fit recording of four users, shared by the checks below."""
    from emulator.media import CompositeRecorder

    out = tmp_path_factory.mktemp("bestfit")
    callbacks: list[object] = []
    recorder = CompositeRecorder(
        config(),
        sid=SID,
        cname="room",
        out_dir=out,
        start_epoch_ms=START_MS,
        on_file=callbacks.append,
    )
    assert not recorder.first_slice_done
    recorder.advance_to(2.5, FOUR)
    first_slice_after_2_5s = recorder.first_slice_done
    recorder.advance_to(5 - 1e-9, FOUR)
    files = recorder.finish()
    assert recorder.finish() == files  # idempotent
    return files, callbacks, first_slice_after_2_5s, recorder


def test_video_properties(best_fit_four: tuple) -> None:  # type: ignore[type-arg]
    files = best_fit_four[0]
    mp4 = next(f for f in files if f.kind == "mp4")
    video = decode_video(mp4.path)
    assert (video.width, video.height) == (240, 320)
    assert video.codec == "h264"
    assert video.rate == pytest.approx(15)
    assert len(video.frames) == 75
    assert video.duration == pytest.approx(5.0, abs=1 / 15 + 0.01)


def test_audio_properties_and_tones(best_fit_four: tuple) -> None:  # type: ignore[type-arg]
    mp4 = next(f for f in best_fit_four[0] if f.kind == "mp4")
    audio = decode_audio(mp4.path)
    assert audio.codec == "aac"
    assert (audio.sample_rate, audio.channels) == (48_000, 1)
    assert audio.duration == pytest.approx(5.0, abs=1 / 15 + 0.05)
    levels = tone_levels(audio.samples, audio.sample_rate, TONES + ABSENT_TONES)
    for tone in TONES:
        assert levels[tone] > 0.5, (tone, levels)
    for tone in ABSENT_TONES:
        assert levels[tone] < 0.05, (tone, levels)


def test_region_colours_best_fit(best_fit_four: tuple) -> None:  # type: ignore[type-arg]
    mp4 = next(f for f in best_fit_four[0] if f.kind == "mp4")
    video = decode_video(mp4.path)
    regions = regions_for(LayoutSpec(mixed_video_layout=1), list(COLORS), 240, 320)
    for t in (0.0, 2.5, 4.9):
        frame = video.frame_at(t)
        for region in regions:
            assert close_to(region_color(frame, region), COLORS[region.uid]), (t, region)


def test_slices_and_playlist(best_fit_four: tuple) -> None:  # type: ignore[type-arg]
    files, callbacks, first_slice_after_2_5s, recorder = best_fit_four
    assert first_slice_after_2_5s
    assert recorder.published_anything
    slices = [f for f in files if f.kind == "ts"]
    assert len(slices) == 3
    for index, ts in enumerate(slices):
        match = SLICE_RE.match(ts.name)
        assert match and match["sid"] == SID and match["cname"] == "room"
        assert match["utc"] == utc_stamp(START_MS + 2000 * index)
        assert ts.slice_start_ms == START_MS + 2000 * index
        assert ts.track_type == "audio_and_video"
        assert stream_types(ts.path) == {"video", "audio"}
        video = decode_video(ts.path)  # each slice decodes on its own, from an IDR
        assert len(video.frames) == (30 if index < 2 else 15)
    playlist = next(f for f in files if f.kind == "m3u8")
    assert playlist.name == f"{SID}_room.m3u8"
    lines, entries = parse_playlist(playlist.path)
    assert lines[:2] == ["#EXTM3U", "#EXT-X-VERSION:3"]
    assert "#EXT-X-TARGETDURATION:2" in lines
    assert lines[-1] == "#EXT-X-ENDLIST"
    events = [line for line in lines if line.startswith("#EXT-X-AGORA-TRACK-EVENT")]
    assert events == [
        f"#EXT-X-AGORA-TRACK-EVENT:EVENT=START,TRACK_TYPE=VIDEO,TIME={START_MS}",
        f"#EXT-X-AGORA-TRACK-EVENT:EVENT=START,TRACK_TYPE=AUDIO,TIME={START_MS}",
    ]
    assert lines.index(events[0]) < lines.index(
        next(ln for ln in lines if ln.startswith("#EXTINF"))
    )
    assert [name for _, name in entries] == [ts.name for ts in slices]
    assert sum(seconds for seconds, _ in entries) == pytest.approx(5.0, abs=0.01)
    # on_file: every slice, the playlist after each slice, the MP4 at the end
    kinds = [f.kind for f in callbacks]
    assert kinds.count("ts") == 3 and kinds.count("m3u8") == 3 and kinds[-1] == "mp4"


def test_mp4_only_with_hls_and_mp4(record: Record) -> None:
    recording = record(config(av_file_types=("hls",)), [(0, FOUR[:1])], 1.0)
    assert recording.of_kind("mp4") == []
    assert len(recording.of_kind("ts")) == 1


def test_mp4_rollover_at_max_seconds(record: Record) -> None:
    recording = record(config(slice_seconds=1.0, mp4_max_seconds=2.0), [(0, FOUR[:2])], 5.0)
    mp4s = recording.of_kind("mp4")
    assert [f.name for f in mp4s] == [f"{SID}_room_{i}.mp4" for i in range(3)]
    assert [f.slice_start_ms for f in mp4s] == [START_MS, START_MS + 2000, START_MS + 4000]
    frames = [len(decode_video(f.path).frames) for f in mp4s]
    assert frames == [30, 30, 15]
    second = decode_video(mp4s[1].path)
    assert second.times[0] == pytest.approx(0.0, abs=0.01)  # each file starts at 0


def test_audio_only_stream_types_0(record: Record) -> None:
    recording = record(config(stream_types=0), [(0, FOUR[:2])], 3.0)
    for output in recording.files:
        assert output.track_type == "audio"
        if output.kind != "m3u8":
            assert stream_types(output.path) == {"audio"}
    lines, entries = parse_playlist(recording.playlist.path)
    assert "#EXT-X-AGORA-TRACK-EVENT:EVENT=START,TRACK_TYPE=AUDIO,TIME=1700000000000" in lines
    assert not any("TRACK_TYPE=VIDEO" in line for line in lines)
    assert sum(s for s, _ in entries) == pytest.approx(3.0, abs=0.01)
    audio = decode_audio(recording.mp4.path)
    assert audio.duration == pytest.approx(3.0, abs=0.05)
    levels = tone_levels(audio.samples, audio.sample_rate, [440.0, 660.0, 880.0])
    assert levels[440.0] > 0.5 and levels[660.0] > 0.5 and levels[880.0] < 0.05


def test_video_only_stream_types_1(record: Record) -> None:
    recording = record(config(stream_types=1), [(0, FOUR[:2])], 2.0)
    for output in recording.files:
        assert output.track_type == "video"
        if output.kind != "m3u8":
            assert stream_types(output.path) == {"video"}


def test_audio_profile_2_is_stereo(record: Record) -> None:
    recording = record(config(audio_profile=2, stream_types=0), [(0, FOUR[:1])], 1.0)
    audio = decode_audio(recording.mp4.path)
    assert (audio.sample_rate, audio.channels) == (48_000, 2)


def test_audio_profile_encoder_settings() -> None:
    from emulator.media.encoding import audio_format, open_audio_encoder

    for profile, channels, bit_rate in ((0, 1, 48_000), (1, 1, 128_000), (2, 2, 192_000)):
        fmt = audio_format(profile)
        assert (fmt.channels, fmt.bit_rate) == (channels, bit_rate)
        encoder = open_audio_encoder(fmt)
        assert (encoder.sample_rate, encoder.channels, encoder.bit_rate) == (
            48_000,
            channels,
            bit_rate,
        )


def test_floating_layout_colours(record: Record) -> None:
    layout = LayoutSpec(mixed_video_layout=0, background_color="#000000")
    recording = record(config(layout=layout), [(0, FOUR[:3])], 1.0)
    frame = decode_video(recording.mp4.path).frame_at(0.5)
    for region in regions_for(layout, ["1", "2", "3"], 240, 320):
        assert close_to(region_color(frame, region), COLORS[region.uid]), region


def test_floating_audio_only_tile_is_transparent(record: Record) -> None:
    layout = LayoutSpec(mixed_video_layout=0, background_color="#FFFFFF")
    users = [user("1", RED, 440), user("2", None, 660)]
    recording = record(config(layout=layout), [(0, users)], 1.0)
    frame = decode_video(recording.mp4.path).frame_at(0.5)
    tile = regions_for(layout, ["1", "2"], 240, 320)[1]
    assert close_to(region_color(frame, tile), RED)


def test_best_fit_audio_only_user_shows_background(record: Record) -> None:
    layout = LayoutSpec(mixed_video_layout=1, background_color=hex_of((0, 0, 128)))
    users = [user("1", RED, 440), user("2", None, 660)]
    recording = record(config(layout=layout), [(0, users)], 1.0)
    frame = decode_video(recording.mp4.path).frame_at(0.5)
    left, right = regions_for(layout, ["1", "2"], 240, 320)
    assert close_to(region_color(frame, left), RED)
    assert close_to(region_color(frame, right), (0, 0, 128))


def test_vertical_layout(record: Record) -> None:
    layout = LayoutSpec(mixed_video_layout=2, max_resolution_uid="2")
    recording = record(config(layout=layout), [(0, FOUR[:3])], 1.0)
    frame = decode_video(recording.mp4.path).frame_at(0.5)
    regions = regions_for(layout, ["1", "2", "3"], 240, 320)
    assert regions[0].uid == "2" and regions[0].x == 0 and regions[0].height == 320
    for region in regions:
        assert close_to(region_color(frame, region), COLORS[region.uid]), region


def test_vertical_without_max_user_shows_background(record: Record) -> None:
    layout = LayoutSpec(mixed_video_layout=2, background_color="#808080")
    recording = record(config(layout=layout), [(0, FOUR[:2])], 1.0)
    frame = decode_video(recording.mp4.path).frame_at(0.5)
    assert close_to(tuple(int(c) for c in frame[160, 90]), (128, 128, 128))  # type: ignore[arg-type]


def test_custom_layout_binding_and_alpha(record: Record) -> None:
    layout = LayoutSpec(
        mixed_video_layout=3,
        background_color="#000000",
        regions=(
            LayoutRegionSpec(x=0.0, y=0.0, width=1.0, height=0.5),  # first free user: 1
            LayoutRegionSpec(x=0.0, y=0.5, width=0.5, height=0.5, uid="3"),
            LayoutRegionSpec(x=0.5, y=0.5, width=0.5, height=0.5, alpha=0.5),  # user 2, 50%
        ),
    )
    recording = record(config(layout=layout), [(0, FOUR[:3])], 1.0)
    frame = decode_video(recording.mp4.path).frame_at(0.5)
    top, bound, translucent = regions_for(layout, ["1", "2", "3"], 240, 320)
    assert close_to(region_color(frame, top), RED)
    assert bound.uid == "3" and close_to(region_color(frame, bound), BLUE)
    assert translucent.uid == "2"
    assert close_to(region_color(frame, translucent), (0, 128, 0), tolerance=30)


def test_leaving_user_frees_region_and_later_joiner_shifts(record: Record) -> None:
    layout = LayoutSpec(mixed_video_layout=1)
    steps = [(0.0, FOUR[:3]), (1.0, [FOUR[0], FOUR[2]])]
    recording = record(config(layout=layout), steps, 2.0)
    video = decode_video(recording.mp4.path)
    before = video.frame_at(0.5)
    for region in regions_for(layout, ["1", "2", "3"], 240, 320):
        assert close_to(region_color(before, region), COLORS[region.uid])
    after = video.frame_at(1.5)
    left, right = regions_for(layout, ["1", "3"], 240, 320)
    assert close_to(region_color(after, left), RED)
    assert close_to(region_color(after, right), BLUE)
    audio = decode_audio(recording.mp4.path)
    late = audio.samples[:, int(1.2 * 48000) :]
    levels = tone_levels(late, 48_000, [440.0, 660.0, 880.0])
    assert levels[660.0] < 0.05 and levels[880.0] > 0.5


def test_update_layout_replaces_background(record: Record) -> None:
    start = LayoutSpec(mixed_video_layout=1, background_color="#0000FF")
    recording = record(
        config(layout=start),
        [(0, [user("1", None, 440)])],
        2.0,
        layouts={1.0: LayoutSpec(mixed_video_layout=1)},  # omitted colour: back to black
    )
    video = decode_video(recording.mp4.path)
    assert close_to(tuple(video.frame_at(0.5)[160, 120]), BLUE)
    assert close_to(tuple(video.frame_at(1.5)[160, 120]), (0, 0, 0))


def test_cname_special_characters_in_file_names(record: Record) -> None:
    recording = record(config(av_file_types=("hls", "mp4")), [(0, FOUR[:1])], 1.0, cname="a_b.c")
    assert recording.playlist.name == f"{SID}_a-b-c.m3u8"
    assert recording.mp4.name == f"{SID}_a-b-c_0.mp4"
    assert recording.of_kind("ts")[0].name.startswith(f"{SID}_a-b-c_")


def test_nobody_published(record: Record) -> None:
    recording = record(config(), [(0, [user("1")])], 1.0)
    assert recording.recorder is not None and not recording.recorder.published_anything


def test_mp4_bitrate_close_to_requested(record: Record) -> None:
    import av

    recording = record(config(bitrate_kbps=400, slice_seconds=15.0), [(0, FOUR)], 6.0)
    with av.open(str(recording.mp4.path)) as container:
        stream = container.streams.video[0]
        size = sum(packet.size for packet in container.demux(stream))
    kbps = size * 8 / 6.0 / 1000
    assert kbps == pytest.approx(400, rel=0.2)


def test_advance_after_finish_is_an_error(record: Record) -> None:
    recording = record(config(), [(0, FOUR[:1])], 0.5)
    assert recording.recorder is not None
    with pytest.raises(RuntimeError):
        recording.recorder.advance_to(1.0, FOUR[:1])


@pytest.mark.parametrize(("profile", "channels", "kbps"), [(0, 1, 48), (1, 1, 128), (2, 2, 192)])
def test_audio_profile_in_the_file(record: Record, profile: int, channels: int, kbps: int) -> None:
    """audioProfile (docs/service/api-contract.md#recordingconfig): 48 kHz AAC, mono/mono/stereo,
    about 48/128/192 kbps."""
    import av

    recording = record(config(audio_profile=profile, stream_types=0), [(0, FOUR)], 4.0)
    for output in (recording.mp4, recording.of_kind("ts")[0]):
        with av.open(str(output.path)) as container:
            stream = container.streams.audio[0]
            assert stream.codec_context.name == "aac"
            assert stream.codec_context.sample_rate == 48_000
            assert stream.codec_context.channels == channels
    with av.open(str(recording.mp4.path)) as container:
        payload = sum(packet.size for packet in container.demux(audio=0))
    assert payload * 8 / 4.0 / 1000 == pytest.approx(kbps, rel=0.15)
    audio = decode_audio(recording.mp4.path)
    assert audio.channels == channels
    levels = tone_levels(audio.samples, audio.sample_rate, TONES + ABSENT_TONES)
    assert min(levels[tone] for tone in TONES) > 0.5
    assert max(levels[tone] for tone in ABSENT_TONES) < 0.05


def test_video_only_file_content(record: Record) -> None:
    layout = LayoutSpec(mixed_video_layout=1)
    recording = record(config(stream_types=1, layout=layout), [(0, FOUR)], 1.0)
    video = decode_video(recording.mp4.path)
    assert len(video.frames) == 15
    for region in regions_for(layout, list(COLORS), 240, 320):
        assert close_to(region_color(video.frame_at(0.5), region), COLORS[region.uid])
    lines, _ = parse_playlist(recording.playlist.path)
    assert [ln for ln in lines if "TRACK-EVENT" in ln] == [
        f"#EXT-X-AGORA-TRACK-EVENT:EVENT=START,TRACK_TYPE=VIDEO,TIME={START_MS}"
    ]


def test_playlist_rewritten_as_each_slice_completes(record: Record) -> None:
    """Watch on_file: after the k-th slice the M3U8 lists exactly the k slices completed so
    far, each with its EXTINF; #EXT-X-ENDLIST appears only in the final version."""
    events: list[tuple[str, str, str]] = []

    def on_file(output: OutputFile) -> None:
        text = output.path.read_text() if output.kind == "m3u8" else ""
        events.append((output.kind, output.name, text))

    record(config(slice_seconds=1.0), [(0, FOUR[:2])], 3.4, on_file=on_file)
    slices_so_far: list[str] = []
    versions = []
    for kind, name, text in events:
        if kind == "ts":
            slices_so_far.append(name)
        elif kind == "m3u8":
            listed = [ln for ln in text.splitlines() if ln.endswith(".ts")]
            assert listed == slices_so_far
            assert text.count("#EXTINF:") == len(slices_so_far)
            versions.append(text)
    assert len(slices_so_far) == 4 and len(versions) == 4
    assert all("#EXT-X-ENDLIST" not in text for text in versions[:-1])
    assert versions[-1].rstrip().endswith("#EXT-X-ENDLIST")
    assert "#EXTINF:1.000,\n" in versions[0] and "#EXTINF:0.400,\n" in versions[-1]
    assert [kind for kind, _, _ in events][-1] == "mp4"


def test_default_slices_are_15_seconds(record: Record) -> None:
    """Default slicing (docs/service/files.md#slicing), audio only to keep it quick: 31 s -> 15 + 15
    + 1 s."""
    assert MediaConfig().slice_seconds == 15.0
    recording = record(MediaConfig(stream_types=0), [(0, FOUR[:1])], 31.0)
    slices = recording.of_kind("ts")
    assert [ts.name for ts in slices] == [
        f"{SID}_room_{utc_stamp(START_MS + offset)}.ts" for offset in (0, 15_000, 30_000)
    ]
    _, entries = parse_playlist(recording.playlist.path)
    assert [seconds for seconds, _ in entries] == pytest.approx([15.0, 15.0, 1.0], abs=0.01)
    assert recording.of_kind("mp4") == []  # avFileType defaults to ["hls"]


def test_mp4_defaults_roll_like_the_real_service() -> None:
    """docs/service/files.md#mp4: about 2 h or about 2 GB per MP4."""
    assert (MediaConfig().mp4_max_seconds, MediaConfig().mp4_max_bytes) == (7200.0, 2 * 10**9)


def test_mp4_rollover_at_max_bytes(record: Record) -> None:
    import av

    limit = 40_000  # between two and three 0.4 s slices at 300 kbps
    recording = record(
        config(slice_seconds=0.4, mp4_max_bytes=limit, stream_types=1), [(0, FOUR)], 4.0
    )
    mp4s = recording.of_kind("mp4")
    assert len(mp4s) >= 3
    assert [f.name for f in mp4s] == [f"{SID}_room_{i}.mp4" for i in range(len(mp4s))]
    total_frames = 0
    for index, output in enumerate(mp4s):
        assert (output.slice_start_ms - START_MS) % 400 == 0  # starts at a slice boundary
        with av.open(str(output.path)) as container:
            packets = [p for p in container.demux(video=0) if p.size]
        payload = sum(p.size for p in packets)
        assert packets[0].is_keyframe
        if index < len(mp4s) - 1:
            assert limit <= payload < limit + 30_000  # closed at the first boundary past it
        video = decode_video(output.path)
        assert video.times[0] == pytest.approx(0.0, abs=0.01)
        total_frames += len(video.frames)
    assert total_frames == 60


def test_alpha_blends_over_another_user(record: Record) -> None:
    layout = LayoutSpec(
        mixed_video_layout=3,
        regions=(
            LayoutRegionSpec(x=0.0, y=0.0, width=1.0, height=1.0),
            LayoutRegionSpec(x=0.25, y=0.25, width=0.5, height=0.5, alpha=0.5),
        ),
    )
    recording = record(config(layout=layout), [(0, [FOUR[0], FOUR[2]])], 1.0)
    frame = decode_video(recording.mp4.path).frame_at(0.5)
    _, over = regions_for(layout, ["1", "3"], 240, 320)
    assert (over.x, over.y, over.width, over.height) == (60, 80, 120, 160)
    assert close_to(region_color(frame, over), (128, 0, 128), tolerance=20)  # red + blue
    assert close_to(rect_color(frame, 80, 260, 80, 40), RED)  # below the translucent region


def test_eighteenth_user_is_picked_up_when_one_leaves(record: Record) -> None:
    """Only the first 17 users are recorded (docs/service/api-contract.md#recordingconfig); after a
    leave the 18th appears."""
    crowd = [user(str(i), GREEN) for i in range(1, 18)]
    eighteenth = user("18", MAGENTA, 1500)
    steps = [(0.0, [*crowd, eighteenth]), (1.0, [*crowd[1:], eighteenth])]
    recording = record(config(layout=LayoutSpec(mixed_video_layout=1)), steps, 2.0)
    video = decode_video(recording.mp4.path)
    before = video.frame_at(0.5)
    magenta = (before[..., 0] > 180) & (before[..., 1] < 80) & (before[..., 2] > 180)
    assert not magenta.any()  # 18 is not on screen
    last_cell = regions_for(
        LayoutSpec(mixed_video_layout=1), [str(i) for i in range(2, 19)], 240, 320
    )[16]
    assert last_cell.uid == "18"
    assert close_to(region_color(video.frame_at(1.5), last_cell), MAGENTA)
    audio = decode_audio(recording.mp4.path)
    assert tone_levels(audio.samples[:, : 48_000 - 4_800], 48_000, [1500.0])[1500.0] < 0.05
    assert tone_levels(audio.samples[:, 48_000 + 4_800 :], 48_000, [1500.0])[1500.0] > 0.5


def test_encoder_threads() -> None:
    """One x264 thread up to 1280x720; x264's own threading (thread_count 0) above."""
    from emulator.media.encoding import open_video_encoder

    def threads(width: int, height: int) -> int:
        return int(open_video_encoder(config(width=width, height=height), 30).thread_count)

    assert threads(360, 640) == 1
    assert threads(1280, 720) == 1
    assert threads(1920, 1080) == 0

"""File sources: video files scaled (crop/fit) and looped, audio files resampled."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.media import (
    AudioSource,
    LayoutRegionSpec,
    LayoutSpec,
    MediaConfig,
    UserSnapshot,
    VideoSource,
    regions_for,
)
from emulator.media.audio_sources import Tone
from tests.support.media_sources import (
    Record,
    write_av_clip,
    write_color_video,
    write_grey_sequence,
    write_image,
    write_tone_wav,
)
from tests.support.mediadecode import (
    CYAN,
    GREEN,
    MAGENTA,
    close_to,
    decode_audio,
    decode_video,
    rect_color,
    region_color,
    tone_levels,
)


def config(layout: LayoutSpec) -> MediaConfig:
    return MediaConfig(
        width=240,
        height=320,
        bitrate_kbps=300,
        slice_seconds=2.0,
        av_file_types=("hls", "mp4"),
        layout=layout,
    )


def test_video_file_fills_region_and_loops(record: Record, tmp_path: Path) -> None:
    clip = write_color_video(tmp_path / "clip.mp4", MAGENTA, (64, 48))  # 1 s long
    layout = LayoutSpec(mixed_video_layout=1)
    users = [UserSnapshot("1", VideoSource(file=str(clip)), None)]
    recording = record(config(layout), [(0.0, users)], 2.5)
    video = decode_video(recording.mp4.path)
    (region,) = regions_for(layout, ["1"], 240, 320)
    for t in (0.3, 1.5, 2.4):  # the second and third passes of the loop
        assert close_to(region_color(video.frame_at(t), region), MAGENTA), t


def test_video_file_plays_frame_by_frame(record: Record, tmp_path: Path) -> None:
    """A 15 fps file in a 15 fps recording: output frame i shows file frame i, for 4 s in
    one advance (so frames queue up for the encoder in batches: none may be overwritten
    while it waits)."""
    levels = [40 + (i * 37) % 180 for i in range(60)]  # every frame differs from its neighbours
    clip = write_grey_sequence(tmp_path / "greys.mp4", levels, 15, (32, 32))
    layout = LayoutSpec(mixed_video_layout=1)
    users = [UserSnapshot("1", VideoSource(file=str(clip)), None)]
    recording = record(config(layout), [(0.0, users)], 4.0)
    video = decode_video(recording.mp4.path)
    assert len(video.frames) == 60
    shown = [int(frame[100:220, 60:180, 1].mean()) for frame in video.frames]
    assert all(abs(a - b) <= 6 for a, b in zip(shown, levels, strict=True)), (shown, levels)


def test_video_file_fit_mode_letterboxes(record: Record, tmp_path: Path) -> None:
    clip = write_color_video(tmp_path / "wide.mp4", MAGENTA, (160, 40))  # 4:1
    layout = LayoutSpec(
        mixed_video_layout=3,
        background_color="#000000",
        regions=(LayoutRegionSpec(x=0, y=0, width=1, height=1, render_mode=1),),
    )
    users = [UserSnapshot("1", VideoSource(file=str(clip)), None)]
    frame = decode_video(record(config(layout), [(0.0, users)], 0.5).mp4.path).frame_at(0.2)
    assert close_to(rect_color(frame, 100, 150, 40, 20), MAGENTA)  # 240x60 band in the middle
    assert close_to(rect_color(frame, 100, 20, 40, 40), (0, 0, 0))
    assert close_to(rect_color(frame, 100, 260, 40, 40), (0, 0, 0))


def test_video_file_crop_mode_fills(record: Record, tmp_path: Path) -> None:
    clip = write_color_video(tmp_path / "wide.mp4", MAGENTA, (160, 40))
    layout = LayoutSpec(
        mixed_video_layout=3,
        regions=(LayoutRegionSpec(x=0, y=0, width=1, height=1, render_mode=0),),
    )
    users = [UserSnapshot("1", VideoSource(file=str(clip)), None)]
    frame = decode_video(record(config(layout), [(0.0, users)], 0.5).mp4.path).frame_at(0.2)
    assert close_to(rect_color(frame, 100, 20, 40, 40), MAGENTA)


def test_audio_file_is_resampled_and_mixed(record: Record, tmp_path: Path) -> None:
    wav = write_tone_wav(tmp_path / "tone.wav", 700.0, seconds=0.5)  # loops 4 times
    users = [
        UserSnapshot("1", None, AudioSource(file=str(wav))),
        UserSnapshot("2", None, AudioSource(tone=1200.0)),
    ]
    recording = record(config(LayoutSpec()), [(0.0, users)], 2.0)
    audio = decode_audio(recording.mp4.path)
    levels = tone_levels(audio.samples, 48_000, [700.0, 1200.0, 950.0])
    assert levels[700.0] > 0.3 and levels[1200.0] > 0.3 and levels[950.0] < 0.05
    second_half = audio.samples[:, 48_000:]
    assert tone_levels(second_half, 48_000, [700.0])[700.0] > 0.3  # still playing: it loops


@pytest.mark.parametrize(
    ("name", "codecs", "audio_rate"),
    [
        ("clip.webm", ("libvpx", "libopus"), 48_000),  # VP8 + Opus in WebM
        ("clip.mkv", ("mpeg4", "flac"), 44_100),  # MPEG-4 Part 2 + FLAC in Matroska
    ],
)
def test_one_file_as_video_and_audio(
    record: Record, tmp_path: Path, name: str, codecs: tuple[str, str], audio_rate: int
) -> None:
    """A user whose camera and microphone are the two streams of one file, beside a
    synthetic user: the file's colour is in its region and its tone in the mix."""
    clip = str(write_av_clip(tmp_path / name, MAGENTA, 700.0, codecs, audio_rate=audio_rate))
    layout = LayoutSpec(mixed_video_layout=1)
    users = [
        UserSnapshot("1", VideoSource(file=clip), AudioSource(file=clip)),
        UserSnapshot("2", VideoSource(color="#00FF00"), AudioSource(tone=1200.0)),
    ]
    recording = record(config(layout), [(0.0, users)], 2.0)
    video = decode_video(recording.mp4.path)
    left, right = regions_for(layout, ["1", "2"], 240, 320)
    for t in (0.2, 1.5):  # first pass and the loop
        assert close_to(region_color(video.frame_at(t), left), MAGENTA), t
        assert close_to(region_color(video.frame_at(t), right), GREEN), t
    audio = decode_audio(recording.mp4.path)
    levels = tone_levels(audio.samples, 48_000, [700.0, 1200.0, 950.0])
    assert levels[700.0] > 0.3 and levels[1200.0] > 0.3 and levels[950.0] < 0.05


def test_still_image_as_video_source(record: Record, tmp_path: Path) -> None:
    image = write_image(tmp_path / "still.png", CYAN, (50, 40))
    users = [UserSnapshot("1", VideoSource(file=str(image)), None)]
    recording = record(config(LayoutSpec()), [(0.0, users)], 2.0)
    video = decode_video(recording.mp4.path)
    assert len(video.frames) == 30
    for t in (0.0, 1.0, 1.9):
        assert close_to(rect_color(video.frame_at(t), 80, 120, 80, 80), CYAN), t


def test_file_without_video_shows_background(record: Record, tmp_path: Path) -> None:
    wav = str(write_tone_wav(tmp_path / "tone.wav", 700.0))
    layout = LayoutSpec(mixed_video_layout=1, background_color="#00FF00")
    users = [UserSnapshot("1", VideoSource(file=wav), AudioSource(file=wav))]
    recording = record(config(layout), [(0.0, users)], 1.0)
    video = decode_video(recording.mp4.path)
    assert close_to(rect_color(video.frame_at(0.5), 80, 120, 80, 80), GREEN)
    levels = tone_levels(decode_audio(recording.mp4.path).samples, 48_000, [700.0])
    assert levels[700.0] > 0.5


def test_unreadable_sources_do_not_stop_the_recording(record: Record, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.mp4")
    users = [UserSnapshot("1", VideoSource(file=missing), AudioSource(file=missing))]
    recording = record(config(LayoutSpec()), [(0.0, users)], 1.0)
    assert len(decode_video(recording.mp4.path).frames) == 15


def test_tone_is_phase_continuous_across_block_sizes() -> None:
    tone = Tone(440.0)
    whole = tone.read(1000, 3000)
    pieces = [tone.read(1000, 1000), tone.read(2000, 1500), tone.read(3500, 500)]
    assert abs(whole - __import__("numpy").concatenate(pieces, axis=1)).max() < 1e-5
    odd = Tone(440.123)  # not tabulated
    assert abs(odd.read(0, 10)[0, 0]) < 1e-6

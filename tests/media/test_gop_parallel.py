"""GOP-parallel encoding of offline renders (`CompositeRecorder(gop_lanes=2)`): every slice
encoded by an encoder of its own, two at once, the packets muxed back in order.

The files must be those of one encoder: the same frames on screen at the same times, an
IDR (and only there a key frame) at every slice start, each TS slice decodable on its own,
continuous timestamps in the MP4, the audio whole, and the bitrate of the request.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from emulator.media import CompositeRecorder, MediaConfig
from emulator.media.render import _gop_lanes
from tests.support.mediadecode import (
    BLUE,
    GREEN,
    RED,
    decode_audio,
    decode_video,
    parse_playlist,
    tone_levels,
    user,
)

FPS = 10
SLICE = 1.0
DURATION = 5.3  # five whole slices and a short one: six chunks, the last partial
KBPS = 300


def _render(out: Path, lanes: int) -> list[Path]:
    config = MediaConfig(
        width=240,
        height=320,
        fps=FPS,
        bitrate_kbps=KBPS,
        slice_seconds=SLICE,
        av_file_types=("hls", "mp4"),
    )
    recorder = CompositeRecorder(
        config, sid="ab" * 16, cname="gop", out_dir=out, start_epoch_ms=0, gop_lanes=lanes
    )
    recorder.wait_for_images()
    # The channel changes inside slices and at a slice boundary.
    recorder.advance_to(1.5 - 1e-9, [user("1", RED, 440)])
    recorder.advance_to(3.0 - 1e-9, [user("1", RED, 440), user("2", GREEN, 660)])
    recorder.advance_to(DURATION - 1e-9, [user("3", BLUE, 880)])
    return [f.path for f in recorder.finish()]


def _key_frames(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            i
            for i, packet in enumerate(p for p in container.demux(stream) if p.size)
            if packet.is_keyframe
        ]


def test_gop_parallel_files_match_one_encoder(tmp_path: Path) -> None:
    parallel = _render(tmp_path / "parallel", lanes=2)
    serial = _render(tmp_path / "serial", lanes=1)
    assert [p.name for p in parallel] == [p.name for p in serial]

    mp4 = next(p for p in parallel if p.suffix == ".mp4")
    video = decode_video(mp4)
    reference = decode_video(next(p for p in serial if p.suffix == ".mp4"))
    frames = round(DURATION * FPS) + 1  # frames 0..53 (t <= 5.3 - 1e-9 renders frame 52)
    assert len(video.frames) == len(reference.frames) in (frames - 1, frames)
    assert np.allclose(np.diff(video.times), 1 / FPS)  # continuous, no gap or overlap at joins
    assert video.times == reference.times
    for ours, theirs in zip(video.frames, reference.frames, strict=True):
        # The same picture (flat colours: the encoders' rounding differs by a few levels).
        assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 3
    assert _key_frames(mp4) == [i * round(SLICE * FPS) for i in range(6)]

    _, entries = parse_playlist(next(p for p in parallel if p.suffix == ".m3u8"))
    assert [seconds for seconds, _ in entries] == [1.0] * 5 + [0.3]
    for _, name in entries:
        alone = decode_video(tmp_path / "parallel" / name)  # each slice decodes on its own
        assert len(alone.frames) == round(SLICE * FPS) or name == entries[-1][1]
        assert _key_frames(tmp_path / "parallel" / name)[0] == 0

    audio = decode_audio(mp4)
    assert abs(audio.duration - DURATION) < 0.05
    early = tone_levels(audio.samples[:, :48_000], audio.sample_rate, [440, 660, 880])
    late = tone_levels(audio.samples[:, 4 * 48_000 :], audio.sample_rate, [440, 660, 880])
    assert early[440] > 0.5 and early[880] < 0.1
    assert late[880] > 0.5 and late[440] < 0.1

    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        payload = sum(p.size for p in container.demux(stream) if p.size)
    with av.open(str(next(p for p in serial if p.suffix == ".mp4"))) as container:
        stream = container.streams.video[0]
        serial_payload = sum(p.size for p in container.demux(stream) if p.size)
    # CBR: the same bytes as one encoder (the later chunks' encoders start with a full VBV
    # buffer, as one encoder is after its first GOP), and close to the request.
    assert abs(payload - serial_payload) <= 0.002 * serial_payload
    assert abs(payload * 8 / DURATION / 1000 - KBPS) / KBPS < 0.03


def test_render_uses_lanes_only_with_two_slices_and_cores() -> None:
    assert _gop_lanes(duration=15, slice_seconds=15) == 1
    assert _gop_lanes(duration=60, slice_seconds=15) == min(
        2, len(__import__("os").sched_getaffinity(0))
    )


def test_abandoned_render_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    """A render that fails half-way leaves a chunk's encoder waiting for frames: run in a
    separate interpreter, the failure must end the process, not hang it at exit."""
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
import subprocess
import sys
from pathlib import Path
from emulator.media import CompositeRecorder, MediaConfig
from tests.support.mediadecode import RED, user
config = MediaConfig(width=240, height=320, fps=10, slice_seconds=1.0)
recorder = CompositeRecorder(config, sid="cd" * 16, cname="gop", out_dir=Path(sys.argv[1]),
                             start_epoch_ms=0, gop_lanes=2)
recorder.advance_to(2.5, [user("1", RED, 440)])
raise SystemExit(3)  # no finish(): the third chunk's encoder still waits for frames
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], timeout=30, capture_output=True
    )
    assert done.returncode == 3, done.stderr.decode()

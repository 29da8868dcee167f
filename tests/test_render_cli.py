"""`cloudrec render SCENARIO.json --out DIR` (docs/design.md#fixed-interfaces), run as a real
subprocess.

The scripted timeline: three users join, user 2 leaves at 2 s (user 3 shifts into its
place), and an updateLayout at 3 s switches to the vertical layout with user 3 large.
The printed files must exist and decode to exactly that.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.mediacheck import (
    TS_NAME,
    close_to,
    color_at,
    frame_at,
    playlist_entries,
    probe,
    tone_levels,
)

SID = "c0ffeec0ffeec0ffeec0ffeec0ffee00"
START_MS = 1_560_238_366_073  # 2019-06-11 07:32:46.073 UTC

SCENARIO = {
    "cname": "cli_preview",
    "sid": SID,
    "start_epoch_ms": START_MS,
    "slice_seconds": 2,
    "duration": 4,
    "recordingConfig": {
        "streamTypes": 2,
        "audioProfile": 1,
        "transcodingConfig": {
            "width": 320,
            "height": 240,
            "fps": 10,
            "bitrate": 400,
            "mixedVideoLayout": 1,
            "backgroundColor": "#000000",
        },
    },
    "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
    "events": [
        {"at": 0, "join": {"uid": "1", "video": {"color": "#FF0000"}, "audio": {"tone": 440}}},
        {"at": 0, "join": {"uid": "2", "video": {"color": "#00FF00"}, "audio": {"tone": 660}}},
        {"at": 0, "join": {"uid": "3", "video": {"color": "#0000FF"}, "audio": {"tone": 880}}},
        {"at": 2, "leave": {"uid": "2"}},
        {
            "at": 3,
            "updateLayout": {
                "mixedVideoLayout": 2,
                "maxResolutionUid": "3",
                "backgroundColor": "#FFFFFF",
            },
        },
    ],
}


def run_render(tmp_path: Path) -> list[Path]:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(SCENARIO))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "render", str(scenario), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [Path(line) for line in result.stdout.splitlines() if line.strip()]


def test_render_cli_writes_the_scripted_timeline(tmp_path: Path) -> None:
    printed = run_render(tmp_path)
    assert printed and all(path.is_file() for path in printed)
    assert {path.parent for path in printed} == {tmp_path / "out"}
    names = [path.name for path in printed]
    # "_" in the cname becomes "-" (docs/service/files.md#naming)
    assert f"{SID}_cli-preview.m3u8" in names
    assert f"{SID}_cli-preview_0.mp4" in names
    slices = [path for path in printed if path.suffix == ".ts"]
    assert [path.name for path in slices] == [
        f"{SID}_cli-preview_20190611073246073.ts",
        f"{SID}_cli-preview_20190611073248073.ts",
    ]
    assert all(TS_NAME.match(path.name) for path in slices)

    playlist = next(path for path in printed if path.suffix == ".m3u8")
    entries, text = playlist_entries(playlist)
    assert [name for _, name in entries] == [path.name for path in slices]
    assert text.rstrip().endswith("#EXT-X-ENDLIST")

    mp4 = next(path for path in printed if path.suffix == ".mp4")
    facts = probe(mp4)
    assert (facts.width, facts.height, facts.fps, facts.video_frames) == (320, 240, 10, 40)
    assert (facts.audio_codec, facts.sample_rate, facts.channels) == ("aac", 48_000, 1)

    # 0-2 s: best fit 2x2 grid, users 1 2 / 3 -
    early = frame_at(mp4, 1.0)
    for (fx, fy), colour in (((0.25, 0.25), "#FF0000"), ((0.75, 0.25), "#00FF00")):
        assert close_to(color_at(early, fx, fy), colour)
    assert close_to(color_at(early, 0.25, 0.75), "#0000FF")
    # 2-3 s: user 2 left, user 3 shifted into the right half (two users side by side)
    middle = frame_at(mp4, 2.5)
    assert close_to(color_at(middle, 0.25, 0.6), "#FF0000")
    assert close_to(color_at(middle, 0.75, 0.6), "#0000FF")
    # 3-4 s: vertical, user 3 in the large left region, user 1 top right, white background
    late = frame_at(mp4, 3.5)
    assert close_to(color_at(late, 0.4, 0.5), "#0000FF")
    assert close_to(color_at(late, 0.9, 0.12), "#FF0000")
    assert close_to(color_at(late, 0.9, 0.75), "#FFFFFF")

    # The last slice (2-4 s) has users 1 and 3 only: 660 Hz is gone from the mix.
    levels = tone_levels(slices[1], [440.0, 660.0, 880.0])
    assert levels[440.0] > 0.5 and levels[880.0] > 0.5 and levels[660.0] < 0.05
    assert tone_levels(slices[0], [660.0])[660.0] > 0.5

"""Render one picture per composite layout with the compositor itself.

    python docs/layouts/make.py [OUT_DIR]      (default: this directory)

Each layout is recorded by `render_scenario` (the code path of a live recording) for one
second at 640x360, and the picture is a decoded frame of the recorded MP4, saved as PNG.
Users are synthetic colour patterns (a solid colour with a small moving marker), numbered
by join order: 1 red, 2 green, 3 blue, 4 yellow, 5 magenta, 6 cyan; the canvas background
is dark grey.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import av

from emulator.media import render_scenario

WIDTH, HEIGHT = 640, 360
COLOURS = ["#E53935", "#43A047", "#1E88E5", "#FDD835", "#D81B60", "#00ACC1"]
BACKGROUND = "#303030"

LAYOUTS: dict[str, tuple[int, dict[str, Any]]] = {
    # name: (users, transcodingConfig layout fields)
    "0-floating": (6, {"mixedVideoLayout": 0}),
    "1-best-fit": (5, {"mixedVideoLayout": 1}),
    "2-vertical": (5, {"mixedVideoLayout": 2, "maxResolutionUid": "3"}),
    "3-custom": (
        3,
        {
            "mixedVideoLayout": 3,
            "layoutConfig": [
                {"uid": "2", "x_axis": 0.0, "y_axis": 0.0, "width": 0.6, "height": 1.0},
                {"x_axis": 0.62, "y_axis": 0.05, "width": 0.36, "height": 0.5},
                {"x_axis": 0.45, "y_axis": 0.45, "width": 0.4, "height": 0.5, "alpha": 0.5},
            ],
        },
    ),
}


def scenario(users: int, layout: dict[str, Any]) -> dict[str, Any]:
    """One second of `users` colour users under `layout`, HLS + MP4 at a high bitrate."""
    return {
        "cname": "layout",
        "duration": 1,
        "recordingConfig": {
            "streamTypes": 1,
            "transcodingConfig": {
                "width": WIDTH,
                "height": HEIGHT,
                "fps": 10,
                "bitrate": 4000,
                "backgroundColor": BACKGROUND,
                **layout,
            },
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "events": [
            {"at": 0, "join": {"uid": str(i + 1), "video": {"color": COLOURS[i]}, "audio": None}}
            for i in range(users)
        ],
    }


def last_frame(mp4: Path) -> av.VideoFrame:
    with av.open(str(mp4)) as container:
        frames = list(container.decode(video=0))
    return frames[-1]


def write_png(frame: av.VideoFrame, path: Path) -> None:
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "rgb24"
        container.mux(stream.encode(frame.reformat(format="rgb24")))
        container.mux(stream.encode(None))


def main(out_dir: Path) -> list[Path]:
    written = []
    for name, (users, layout) in LAYOUTS.items():
        with tempfile.TemporaryDirectory() as work:
            files = render_scenario(scenario(users, layout), Path(work))
            mp4 = next(f.path for f in files if f.kind == "mp4")
            target = out_dir / f"layout-{name}.png"
            write_png(last_frame(mp4), target)
        written.append(target)
    return written


if __name__ == "__main__":
    for path in main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent):
        print(path)

"""Job specs and REST bodies the tests send: one small spec (a tiny canvas keeps the compositor
cheap on a shared machine) and the variants built from it."""

from __future__ import annotations

import copy
from typing import Any

# A 160x120 canvas: what every test recording is composited on unless it says otherwise.
TINY_TRANSCODING: dict[str, Any] = {"width": 160, "height": 120, "fps": 7, "bitrate": 100}

# What a spec run by real worker processes adds: it ends by itself soon, in a known layout and
# with its files named, so the process tests can look for them.
PROCESS_RECORDING: dict[str, Any] = {
    "maxIdleTime": 30,
    "transcodingConfig": {
        **TINY_TRANSCODING,
        "fps": 10,
        "bitrate": 200,
        "mixedVideoLayout": 1,
        "backgroundColor": "#000000",
    },
}
PROCESS_OVERRIDES: dict[str, Any] = {
    "duration": 4,
    "recordingConfig": PROCESS_RECORDING,
    "recordingFileConfig": {"avFileType": ["hls"]},
    "fileNamePrefix": ["ops"],
}


def small_spec(cname: str, **overrides: Any) -> dict[str, Any]:
    """A job spec with a tiny canvas; ``overrides`` replace top-level fields."""
    spec: dict[str, Any] = {
        "cname": cname,
        "duration": 60,
        "recordingConfig": {"maxIdleTime": 30, "transcodingConfig": dict(TINY_TRANSCODING)},
    }
    spec.update(copy.deepcopy(overrides))
    return spec


def process_spec(cname: str, **overrides: Any) -> dict[str, Any]:
    """``small_spec`` for recordings run by real worker processes (see PROCESS_OVERRIDES)."""
    return small_spec(cname, **{**PROCESS_OVERRIDES, **overrides})

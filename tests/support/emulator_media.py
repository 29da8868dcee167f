"""Recording helpers for tests that decode what a live recording wrote: phases of a
recording placed on its media clock, and what is on screen / in the audio during a phase."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emulator.media import LayoutSpec, regions_for
from tests.support.emulator import Api
from tests.support.mediacheck import audio_samples, close_to, color_at, frame_at
from tests.support.waiting import wait_for

WIDTH, HEIGHT = 320, 180


def composite_request(
    layout: dict[str, Any] | None = None, *, streams: int = 2, **recording: Any
) -> dict[str, Any]:
    """A start clientRequest: a 320x180 canvas, HLS + MP4, the given layout fields."""
    return {
        "recordingConfig": {
            "streamTypes": streams,
            "audioProfile": 0,
            "transcodingConfig": {
                "width": WIDTH,
                "height": HEIGHT,
                "fps": 15,
                "bitrate": 600,
                **(layout or {}),
            },
            **recording,
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "storageConfig": {
            "vendor": 1,
            "region": 0,
            "bucket": "bucket",
            "accessKey": "ak",
            "secretKey": "sk",
            "fileNamePrefix": ["dir1", "dir2"],
        },
    }


END_GUARD = 0.3  # seconds left out at the end of each phase's window


@dataclass
class Timeline:
    """A live recording's media clock: media time = wall time - the recorder's start."""

    api: Api
    rid: str
    sid: str
    start_ms: int
    marks: list[float] = field(default_factory=list)  # media times at which phases began
    # Media times at which each phase's change was *sent*: the previous phase may end there
    # already (the change takes effect somewhere inside the call, which can be slow).
    sent: list[float] = field(default_factory=list)

    @classmethod
    def start(cls, api: Api, cname: str, uid: str, client: dict[str, Any]) -> Timeline:
        rid, sid = api.start(cname, uid, client)

        def slice_start() -> int | None:
            value = api.query(rid, sid).json()["serverResponse"].get("sliceStartTime")
            return int(value) if value else None

        start_ms = wait_for(slice_start, 10, what="the recorder to start")
        return cls(api, rid, sid, start_ms, [0.0])

    def now(self) -> float:
        return time.time() - self.start_ms / 1000

    def phase(self, seconds: float, change: Callable[[], Any] | None = None) -> None:
        """Apply ``change`` (an API call), note when, and let it run for ``seconds``."""
        if change is not None:
            self.sent.append(self.now())
            change()
            self.marks.append(self.now())
        end = self.now() + seconds
        wait_for(lambda: self.now() >= end, seconds + 5, what="the phase to run", interval=0.02)

    def window(self, index: int, margin: float = 0.35) -> tuple[float, float]:
        """Media-time window well inside phase ``index`` (the last phase ends at ``now``)."""
        start = self.marks[index] + margin
        end = self.sent[index] if index + 1 < len(self.marks) else self.now()
        # The change may show a little before the mark we took of its sending: the file's
        # media clock starts with its first frame, a few tens of ms after the start time the
        # query answers (the mapping here), more on a busy machine.
        assert end - END_GUARD > start, f"phase {index} too short: {start}..{end}"
        return start, end - END_GUARD


def region_centres(layout: LayoutSpec, uids: list[str]) -> dict[str, tuple[float, float]]:
    """Centre of each user's region, as fractions of the canvas (the compositor's geometry)."""
    return {
        r.uid: ((r.x + r.width / 2) / WIDTH, (r.y + r.height / 2) / HEIGHT)
        for r in regions_for(layout, uids, WIDTH, HEIGHT)
    }


def shows(mp4: Path, t: float, at: tuple[float, float], colour: str) -> bool:
    """Whether the frame at media time ``t`` shows ``colour`` around ``at``."""
    return close_to(color_at(frame_at(mp4, t), *at), colour)


def colour_at(mp4: Path, t: float, at: tuple[float, float]) -> tuple[int, int, int]:
    return color_at(frame_at(mp4, t), *at)


def tone_levels_between(
    path: Path, start: float, end: float, frequencies: list[float]
) -> dict[float, float]:
    """Spectral level of each frequency within [start, end] s of the audio, relative to the
    strongest frequency there (1.0); 0 for silence."""
    samples, rate = audio_samples(path)
    window = samples[int(start * rate) : int(end * rate)]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    freqs = np.fft.rfftfreq(len(window), 1 / rate)
    peak = float(spectrum.max())
    if peak < 1e-3:
        return dict.fromkeys(frequencies, 0.0)
    return {f: float(spectrum[(freqs > f - 5) & (freqs < f + 5)].max() / peak) for f in frequencies}

"""Whether a recording keeps up with the wall clock: ``realtime`` in ``GET /dev/recordings``
(every frame composed is in the files; the frames composed too late are counted and logged)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import av
import pytest

from emulator import RecordingService
from emulator.channels import JoinRequest
from emulator.errors import ApiError
from emulator.media import LayoutSpec, OutputFile, UserSnapshot
from tests.support.emulator import FAST, Api, start_request
from tests.support.waiting import wait_for


def test_every_frame_composed_is_in_the_files(api: Api) -> None:
    api.join("room", "1", video={"color": "#FF0000"}, audio={"tone": 440})
    rid, sid = api.start("room", "7", start_request())
    wait_for(lambda: api.recording(sid)["realtime"]["frames"] >= 15, what="frames composed")
    assert api.stop(rid, sid, "room", "7").status_code == 200
    shown = api.recording(sid)
    realtime = shown["realtime"]
    assert set(realtime) == {"frames", "lateFrames", "maxLagSeconds"}
    slices = [Path(f["location"]) for f in shown["files"] if f["kind"] == "ts"]
    in_files = 0
    for path in slices:
        with av.open(str(path)) as container:
            in_files += sum(1 for _ in container.decode(video=0))
    assert in_files == realtime["frames"] > 0
    assert realtime["lateFrames"] <= realtime["frames"]


class SlowRecorder:
    """A compositor that needs 0.4 s of every tick, whatever the tick: it falls behind."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def advance_to(self, t: float, users: Sequence[UserSnapshot]) -> None:
        self.times.append(t)
        time.sleep(0.4)

    def set_layout(self, layout: LayoutSpec) -> None:
        pass

    def finish(self) -> list[OutputFile]:
        return []


RECORDERS: list[SlowRecorder] = []


def slow_recorder(*args: object, **kwargs: object) -> SlowRecorder:
    RECORDERS.append(SlowRecorder())
    return RECORDERS[-1]


@pytest.fixture
def slow_service(tmp_path: Path) -> Iterator[RecordingService]:
    config = replace(FAST, storage_dir=tmp_path, late_frame_seconds=0.5)
    RECORDERS.clear()
    svc = RecordingService(config, recorder_factory=slow_recorder)
    yield svc
    svc.close()


def test_a_recorder_behind_real_time_counts_late_frames_and_says_so(
    slow_service: RecordingService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="emulator.driver")
    slow_service.channels.join("room", JoinRequest.model_validate({"uid": "1"}))
    _, acquired = slow_service.acquire("app", {"cname": "room", "uid": "9", "clientRequest": {}})
    body = {"cname": "room", "uid": "9", "clientRequest": start_request()}
    rid = acquired["resourceId"]
    _, started = slow_service.start("app", rid, "mix", body)
    sid = str(started["sid"])

    def late() -> int:
        shown = slow_service.recording(sid)
        assert shown is not None
        return int(shown["realtime"]["lateFrames"])

    wait_for(late, timeout=30, what="late frames counted")
    shown = slow_service.recording(sid)
    assert shown is not None
    assert shown["realtime"]["maxLagSeconds"] > 0.5
    assert any(f"recording {sid} fell behind real time" in r.message for r in caplog.records)

    # Stopped while behind: the last advance goes to the stop's time, not to the (later)
    # moment the driver gets round to it.
    (recorder,) = RECORDERS
    advances = len(recorder.times)
    wait_for(
        lambda: len(recorder.times) > advances, interval=0.005, what="the next advance"
    )  # 0.4 s long
    stop = {"cname": "room", "uid": "9", "clientRequest": {}}
    with pytest.raises(ApiError, match="no recorded data"):  # this recorder writes no file
        slow_service.stop("app", rid, sid, "mix", stop)
    shown = slow_service.recording(sid)
    assert shown is not None
    recorded = _epoch(shown["stoppedAt"]) - _epoch(shown["recorderStartedAt"])
    assert recorder.times[-1] <= recorded + 0.01


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()

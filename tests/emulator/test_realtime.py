"""Whether a recording keeps up with the wall clock: ``realtime`` in ``GET /dev/recordings``
(every frame composed is in the files; the frames composed too late are counted and logged)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import av
import pytest

from emulator import RecordingService
from emulator.channels import JoinRequest
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

    def advance_to(self, t: float, users: Sequence[UserSnapshot]) -> None:
        time.sleep(0.4)

    def set_layout(self, layout: LayoutSpec) -> None:
        pass

    def finish(self) -> list[OutputFile]:
        return []


@pytest.fixture
def slow_service(tmp_path: Path) -> Iterator[RecordingService]:
    config = replace(FAST, storage_dir=tmp_path, late_frame_seconds=0.5)
    svc = RecordingService(config, recorder_factory=lambda *a, **k: SlowRecorder())
    yield svc
    svc.close()


def test_a_recorder_behind_real_time_counts_late_frames_and_says_so(
    slow_service: RecordingService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="emulator.driver")
    slow_service.channels.join("room", JoinRequest.model_validate({"uid": "1"}))
    _, acquired = slow_service.acquire("app", {"cname": "room", "uid": "9", "clientRequest": {}})
    body = {"cname": "room", "uid": "9", "clientRequest": start_request()}
    _, started = slow_service.start("app", acquired["resourceId"], "mix", body)
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

"""Many live recordings in empty channels, as ``benchmarks/scale.py`` holds (100,000): none of
them holds a thread, a housekeeping tick looks only at those something can happen to, and a
recording that rests still exits idle on time, records when someone joins and sees its failover
end. The clock is the test's: a tick happens when the test says so."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from emulator.channels import JoinRequest
from emulator.errors import ApiError
from emulator.housekeeping import Housekeeper
from emulator.service import RecordingService
from tests.support.emulator import FAST, start_request
from tests.support.waiting import wait_for


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def service(tmp_path: Path, clock: ManualClock) -> Iterator[RecordingService]:
    config = replace(FAST, storage_dir=tmp_path, idle_second=1.0)
    svc = RecordingService(config, clock=clock)
    yield svc
    svc.close()


def start(svc: RecordingService, cname: str, *, max_idle: int = 3600) -> str:
    """acquire + start in ``cname``; the sid."""
    status, acquired = svc.acquire("app", {"cname": cname, "uid": "9", "clientRequest": {}})
    assert status == 200, acquired
    body = {"cname": cname, "uid": "9", "clientRequest": start_request(max_idle=max_idle)}
    status, started = svc.start("app", acquired["resourceId"], "mix", body)
    assert status == 200, started
    return str(started["sid"])


def later(service: RecordingService, clock: ManualClock, seconds: float) -> None:
    """``seconds`` pass, then a housekeeping tick."""
    clock.now += seconds
    service.tick()


def view(svc: RecordingService, sid: str) -> dict[str, object]:
    recording = svc.recording(sid)
    assert recording is not None
    return recording


@pytest.fixture
def tended(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sids housekeeping looked at, tick after tick."""
    seen: list[str] = []
    tend = Housekeeper._tend

    def counting(self: Housekeeper, task, now):  # type: ignore[no-untyped-def]
        seen.append(task.sid)
        return tend(self, task, now)

    monkeypatch.setattr(Housekeeper, "_tend", counting)
    return seen


def test_recordings_in_empty_channels_hold_no_thread(service: RecordingService) -> None:
    sids = [start(service, f"room{i}") for i in range(200)]
    service.tick()
    # By name (a task's threads are named after its sid): other tests' threads may still be
    # ending while this one runs.
    names = {thread.name for thread in threading.enumerate()}
    assert not [sid for sid in sids if any(sid[:8] in name for name in names)]
    assert all(view(service, sid)["live"] for sid in sids)


def test_a_tick_looks_only_at_the_recordings_something_can_happen_to(
    service: RecordingService, clock: ManualClock, tended: list[str]
) -> None:
    sids = [start(service, f"room{i}") for i in range(300)]
    service.tick()  # each new recording is looked at once, then rests
    assert sorted(tended) == sorted(sids)
    tended.clear()
    for _ in range(5):
        later(service, clock, 0.2)
    assert tended == []

    service.channels.join("room7", JoinRequest.model_validate({"uid": "1"}))
    later(service, clock, 0.2)
    assert tended == [sids[7]]
    # it records now: its recorder starts (on a thread of its own) and says so
    wait_for(lambda: view(service, sids[7])["recorderStartedAt"] is not None, timeout=30)


def test_a_resting_recording_exits_idle_on_time(
    service: RecordingService, clock: ManualClock
) -> None:
    sid = start(service, "quiet", max_idle=5)
    service.tick()  # the channel is empty from now: idle for more than 5 s exits
    later(service, clock, 5.0)
    assert view(service, sid)["live"]
    later(service, clock, 0.1)
    recording = view(service, sid)
    assert not recording["live"]
    assert recording["exitReason"] == "idle"


def test_a_user_who_joins_and_leaves_keeps_a_resting_recording_from_its_idle_exit(
    service: RecordingService, clock: ManualClock
) -> None:
    sid = start(service, "visited", max_idle=5)
    service.tick()
    clock.now += 4.0  # no tick: someone joins before the next one
    service.channels.join("visited", JoinRequest.model_validate({"uid": "1", "video": None}))
    service.tick()
    service.channels.leave("visited", "1")
    later(service, clock, 0.1)  # idle again from here
    later(service, clock, 4.0)
    assert view(service, sid)["live"]  # 4 s idle, not 8
    later(service, clock, 1.1)
    assert view(service, sid)["exitReason"] == "idle"


def test_a_failover_wakes_a_resting_recording(
    service: RecordingService, clock: ManualClock
) -> None:
    sid = start(service, "moving")
    service.tick()
    uid_before = view(service, sid)["recorderUid"]
    assert service.failover(sid, 2.0) is not None
    later(service, clock, 1.0)
    assert view(service, sid)["migrating"]
    later(service, clock, 1.1)
    recording = view(service, sid)
    assert not recording["migrating"]
    assert recording["recorderUid"] != uid_before  # event 12: it rejoined with a new uid


def test_a_stopped_resting_recording_is_let_go_and_its_key_is_free_again(
    service: RecordingService, clock: ManualClock, tended: list[str]
) -> None:
    sid = start(service, "room")
    service.tick()
    recording = view(service, sid)
    with pytest.raises(ApiError) as stopped:  # nothing was recorded: 435
        service.stop("app", str(recording["resourceId"]), sid, "mix", {"cname": "room", "uid": "9"})
    assert stopped.value.body["code"] == 435
    tended.clear()
    later(service, clock, FAST.exit_linger_seconds + 1)
    assert view(service, sid)["removed"]
    # the same app, channel and uid can record again
    second = start(service, "room")
    assert second != sid
    assert view(service, second)["live"]

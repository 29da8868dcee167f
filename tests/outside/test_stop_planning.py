"""Stops planned against the API budget, shown with real processes in real-service mode
(``CLOUDREC_DEV_API=false``): ``cloudrec worker`` and ``cloudrec beat`` against an emulator that
takes 5 requests per second, like the real service's limit at a smaller scale.

Thirty recordings end at the same second with ``stop_early_max`` 0, thirty more at another
second with 3 s. The emulator's own log of every API call (``GET /dev/api-requests``) says when each
stop reached it: never before ``deadline - stop_early_max``, and the worst lateness is the least
the budget allows (30 stops at 5/s: 6 s less one slot; with 3 s of tolerance, 3 s less one slot),
give or take the machine's latency. Jobs submitted while the first stops are behind send their
acquire only once those stops are through: no acquire, start or query reaches the service in
the middle of a crunch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from emulator import EmulatorServer
from tasks.recording import submit_and_start
from tests.support.emulator import PROCESS_EMULATOR, serving
from tests.support.processes import cloudrec_env, processes, spawn, wait_worker_ready
from tests.support.promises import empty_channel_spec
from tests.support.waiting import wait_for
from worker.celery_app import configure, runtime
from worker.devapi import DevApiClient
from worker.runtime import Runtime

pytestmark = pytest.mark.e2e

RATE = 5  # requests per second, the emulator's and the worker's
STOPS = 30  # per crunch
EARLY = 3.0  # the second crunch's stop_early_max
SLACK = 3.0  # seconds of machine latency allowed beyond the least possible lateness
# Seconds for 60 jobs to acquire, start and be confirmed (3 calls each at 5 per second: 36 s,
# and the reconciler's queries), with room for a loaded machine.
RAMP = 90.0


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    config = replace(PROCESS_EMULATOR, storage_dir=tmp_path / "storage", qps=RATE)
    with serving(config) as server:
        yield server


@pytest.fixture
def deployment(redis_url: str, emulator: EmulatorServer, tmp_path: Path) -> Iterator[Runtime]:
    """``cloudrec worker`` and ``cloudrec beat`` in real-service mode, 5 requests per second."""
    settings = {"CLOUDREC_API_RATE_LIMIT": str(RATE), "CLOUDREC_DEV_API": "false"}
    env = cloudrec_env(redis_url, emulator.base_url, **settings)
    configure(
        Settings(
            redis_url=redis_url, api_base_url=emulator.base_url, api_rate_limit=RATE, dev_api=False
        )
    )
    with processes() as procs:
        worker = spawn("worker", ["worker", "-c", "16", "--pool", "threads"], env, tmp_path)
        procs.append(worker)
        wait_worker_ready(worker)
        procs.append(spawn("beat", ["beat", "-l", "INFO"], env, tmp_path))
        yield runtime()


def submit_group(rt: Runtime, name: str, count: int, deadline: float, early: float) -> list[str]:
    stop_at = datetime.fromtimestamp(deadline, UTC).isoformat()
    ids = []
    for i in range(count):
        spec = empty_channel_spec(f"{name}{i}", 1) | {"stop_at": stop_at, "stop_early_max": early}
        del spec["duration"]
        ids.append(submit_and_start(rt, spec)[0].job_id)
    return ids


def stop_times(calls: list[dict[str, Any]], sids: set[str]) -> list[float]:
    return sorted(c["at"] for c in calls if c["operation"] == "stop" and c.get("sid") in sids)


def others_between(calls: list[dict[str, Any]], begin: float, end: float) -> list[dict[str, Any]]:
    """Admitted calls other than stops that reached the service within [begin, end]."""
    return [
        c for c in calls if c["operation"] != "stop" and c["admitted"] and begin <= c["at"] <= end
    ]


def test_stops_are_planned_against_the_budget_and_the_rest_yields(
    deployment: Runtime, emulator: EmulatorServer
) -> None:
    rt = deployment
    dev = DevApiClient(emulator.base_url)
    first = time.time() + RAMP
    second = first + 30
    tight = submit_group(rt, "tight", STOPS, first, 0.0)
    tolerant = submit_group(rt, "tolerant", STOPS, second, EARLY)
    wait_for(
        lambda: all(rt.store.get(j).state == "recording" for j in tight + tolerant),
        first - time.time() - 1,
        0.5,
        "every recording to run before the first deadline",
    )
    # Two jobs arrive as the first crunch begins: they must wait until its stops are through.
    time.sleep(max(0.0, first - time.time()))
    late = [
        submit_and_start(rt, empty_channel_spec(f"latecomer{i}", 300))[0].job_id for i in range(2)
    ]
    wait_for(
        lambda: all(rt.store.get(j).terminal for j in tight + tolerant),
        120,
        1.0,
        "every stop",
    )
    calls = dev.api_requests()
    sid = {j: rt.store.get(j).sid for j in tight + tolerant}
    for group, deadline, early in ((tight, first, 0.0), (tolerant, second, EARLY)):
        sids = {sid[j] for j in group if sid[j]}
        assert len(sids) == STOPS
        times = stop_times(calls, sids)
        assert len(times) >= STOPS
        bound = max(0.0, STOPS / RATE - early) - 1 / RATE
        worst = times[-1] - deadline
        print(f"stop_early_max {early:g}: max lateness {worst:.2f} s (least possible {bound:g} s)")
        assert times[0] >= deadline - early, "a stop went earlier than its job allows"
        assert bound - 0.5 <= worst <= bound + SLACK
        # While the stops are behind, nothing else reaches the service.
        assert others_between(calls, times[0], times[-1] - 1.0) == []
    acquires = [
        c["at"] for c in calls if c["operation"] == "acquire" and c["admitted"] and c["at"] > first
    ]
    assert len(acquires) >= len(late), "the latecomers never acquired"
    assert min(acquires) >= stop_times(calls, {sid[j] for j in tight})[-1] - 1.0

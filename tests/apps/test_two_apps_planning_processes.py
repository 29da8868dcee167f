"""Stops planned per App ID, with real processes in real-service mode (``CLOUDREC_DEV_API=false``):
``cloudrec worker`` and ``cloudrec beat`` against the emulator serving two App IDs, each taking
5 requests per second (the worker paces each at 4).

The crunched app has 20 recordings ending at the same second: its stops need 5 s of its budget,
so they are planned (the last one about 5 s late) and, while they are behind, its other calls
wait. The calm app has 2 recordings ending at that same second and 2 jobs submitted at that
second: its stops reach the service on time and its latecomers acquire and start in the middle
of the other app's crunch (they yield only to their own App ID's stops behind). The emulator's
log of every API call (``GET /dev/api-requests``, with its App ID) says when each call arrived."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from emulator import EmulatorServer
from emulator.config import EmulatorApp
from tasks.recording import submit_and_start
from tests.support.emulator import PROCESS_EMULATOR, serving
from tests.support.processes import cloudrec_env, processes, spawn, wait_worker_ready
from tests.support.promises import empty_channel_spec
from tests.support.waiting import wait_for
from worker.celery_app import configure, runtime
from worker.devapi import DevApiClient
from worker.runtime import Runtime

pytestmark = pytest.mark.e2e

CRUNCH = EmulatorApp("crunch-app-id", "crunch-customer", "crunch-customer-secret", qps=5)
CALM = EmulatorApp("calm-app-id", "calm-customer", "calm-customer-secret", qps=5)
RATE = 4  # each app's budget in the workers' settings
CRUNCH_STOPS = 20  # 5 s of the crunched app's budget
CALM_STOPS = 2
LEAD = 30.0  # seconds from submit to the common deadline: every job records by then
ON_TIME = 1.5  # the calm app's stops reach the service within this of the deadline
APPS = {"crunch": CRUNCH, "calm": CALM}


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    config = replace(PROCESS_EMULATOR, storage_dir=tmp_path / "storage", apps=(CRUNCH, CALM))
    with serving(config) as server:
        yield server


def profile(app: EmulatorApp) -> dict[str, Any]:
    return {
        "app_id": app.app_id,
        "customer_id": app.customer_id,
        "customer_secret": app.customer_secret,
        "api_rate_limit": RATE,
    }


def app_env() -> dict[str, str]:
    env = {}
    for name, app in APPS.items():
        for field, value in profile(app).items():
            env[f"CLOUDREC_APPS__{name.upper()}__{field.upper()}"] = str(value)
    return env


@pytest.fixture
def deployment(redis_url: str, emulator: EmulatorServer, tmp_path: Path) -> Iterator[Runtime]:
    env = cloudrec_env(redis_url, emulator.base_url, CLOUDREC_DEV_API="false", **app_env())
    apps = {name: profile(app) for name, app in APPS.items()}
    configure(
        Settings(redis_url=redis_url, api_base_url=emulator.base_url, dev_api=False, apps=apps)
    )
    with processes() as procs:
        worker = spawn("worker", ["worker", "-c", "16", "--pool", "threads"], env, tmp_path)
        procs.append(worker)
        wait_worker_ready(worker)
        procs.append(spawn("beat", ["beat", "-l", "INFO"], env, tmp_path))
        yield runtime()


def submit_group(rt: Runtime, app: str, count: int, deadline: float) -> list[str]:
    stop_at = datetime.fromtimestamp(deadline, UTC).isoformat()
    ids = []
    for i in range(count):
        spec = empty_channel_spec(f"{app}{i}", 1) | {"stop_at": stop_at, "app": app}
        del spec["duration"]
        ids.append(submit_and_start(rt, spec)[0].job_id)
    return ids


def test_one_apps_stop_crunch_delays_neither_the_other_apps_stops_nor_its_starts(
    deployment: Runtime, emulator: EmulatorServer
) -> None:
    rt = deployment
    deadline = time.time() + LEAD
    crunch = submit_group(rt, "crunch", CRUNCH_STOPS, deadline)
    calm = submit_group(rt, "calm", CALM_STOPS, deadline)
    wait_for(
        lambda: all(rt.store.get(j).state == "recording" for j in crunch + calm),
        deadline - time.time() - 1,
        0.5,
        "every recording to run before the deadline",
    )
    time.sleep(max(0.0, deadline - time.time()))
    late = {
        app: submit_and_start(rt, empty_channel_spec(f"{app}-late", 300) | {"app": app})[0].job_id
        for app in APPS
    }
    wait_for(lambda: all(rt.store.get(j).terminal for j in crunch + calm), 60, 0.5, "every stop")
    wait_for(lambda: rt.store.get(late["calm"]).sid is not None, 30, 0.5, "the calm latecomer")
    load = os.getloadavg()[0]
    dev = DevApiClient(emulator.base_url)
    calls = dev.api_requests()
    dev.close()
    sids = {
        app: {rt.store.get(j).sid for j in ids} for app, ids in (("crunch", crunch), ("calm", calm))
    }

    def stops(app: str) -> list[float]:
        return sorted(
            c["at"] for c in calls if c["operation"] == "stop" and c.get("sid") in sids[app]
        )

    def admitted(app: str, operation: str) -> list[float]:
        app_id = APPS[app].app_id
        return sorted(
            c["at"]
            for c in calls
            if c["operation"] == operation
            and c["admitted"]
            and c["appId"] == app_id
            and c["at"] >= deadline - 0.5
        )

    crunch_stops, calm_stops = stops("crunch"), stops("calm")
    assert len(crunch_stops) >= CRUNCH_STOPS and len(calm_stops) >= CALM_STOPS
    crunch_late, calm_late = crunch_stops[-1] - deadline, calm_stops[-1] - deadline
    print(
        f"crunched app: last of {CRUNCH_STOPS} stops {crunch_late:.2f} s late; calm app: last "
        f"stop {calm_late:.2f} s late (load average {load:.2f})"
    )
    # The crunched app was at its budget (its stops planned across ~5 s) ...
    assert crunch_late >= CRUNCH_STOPS / RATE / 2, "no crunch: inconclusive"
    # ... the calm app's stops went on time,
    assert calm_late < ON_TIME
    # its latecomer acquired and started in the middle of the other app's crunch,
    assert admitted("calm", "acquire")[0] < crunch_stops[-1] - 1.0
    assert admitted("calm", "start")[0] < crunch_stops[-1] - 0.5
    # while the crunched app's own latecomer waited for its stops to catch up.
    crunch_acquires = admitted("crunch", "acquire")
    assert not crunch_acquires or crunch_acquires[0] >= crunch_stops[-1] - 1.0

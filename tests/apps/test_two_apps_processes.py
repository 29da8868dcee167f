"""Two Agora projects through one deployment, as an operator runs it: a real ``cloudrec worker``
and ``cloudrec beat`` (real-service mode, CLOUDREC_DEV_API=false) against the emulator serving
both App IDs, each with its own credentials and its own 3 requests/s.

The busy app has more work queued than its budget (2 calls/s in the worker's settings) can
serve: ten recordings whose stops all fall at the same second as the quiet app's two. Its
stops come seconds late (its budget is the limit), while the quiet app's stops are on time:
its own budget is untouched by the other's queue. With one budget shared by both App IDs, the
quiet app's stops would wait among the busy app's (up to 12 stops at 2/s: about 6 s)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from config import Settings
from emulator import EmulatorServer
from emulator.config import EmulatorApp
from tasks.recording import submit_and_start
from tests.support.emulator import PROCESS_EMULATOR, serving
from tests.support.processes import (
    cloudrec_env,
    processes,
    start_beat_process,
    start_worker_process,
)
from tests.support.specs import PROCESS_RECORDING, process_spec
from tests.support.waiting import wait_for
from worker.celery_app import configure, runtime
from worker.devapi import DevApiClient
from worker.metrics import LIMITER_WAITS

pytestmark = pytest.mark.e2e

BUSY = EmulatorApp("busy-app-id", "busy-customer", "busy-customer-secret", qps=3)
QUIET = EmulatorApp("quiet-app-id", "quiet-customer", "quiet-customer-secret", qps=3)
RATE = 2  # each app's budget in the workers' settings, calls per second
BUSY_JOBS = 10
QUIET_JOBS = 2
LEAD = 40.0  # seconds from submit to the common deadline: every start fits in the busy budget
IDLE = {**PROCESS_RECORDING, "maxIdleTime": 300}  # empty channels: no recorder leaves by itself
ON_TIME = 1.5  # seconds: the quiet app's stops reach the service within this of the deadline
BUSY_LATE = 2.5  # the busy app's last stop is at least this late: it was at its limit


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    config = replace(PROCESS_EMULATOR, storage_dir=tmp_path / "storage", qps=3, apps=(BUSY, QUIET))
    with serving(config) as server:
        yield server


def everything_in(client: redis.Redis) -> bytes:
    """Every value in the database, as bytes (records, indexes, what the broker still holds)."""
    read = {
        b"string": lambda k: [client.get(k)],
        b"hash": lambda k: [*client.hgetall(k).keys(), *client.hgetall(k).values()],
        b"list": lambda k: client.lrange(k, 0, -1),
        b"set": lambda k: list(client.smembers(k)),
        b"zset": lambda k: client.zrange(k, 0, -1),
    }
    values: list[bytes] = []
    for key in client.scan_iter():
        values += [key, *(v for v in read.get(client.type(key), lambda k: [])(key) if v)]
    return b"\n".join(values)


def app_env(name: str, app: EmulatorApp) -> dict[str, str]:
    prefix = f"CLOUDREC_APPS__{name.upper()}__"
    return {
        prefix + "APP_ID": app.app_id,
        prefix + "CUSTOMER_ID": app.customer_id,
        prefix + "CUSTOMER_SECRET": app.customer_secret,
        prefix + "API_RATE_LIMIT": str(RATE),
    }


def test_a_busy_app_never_slows_another_apps_stops(
    redis_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    env = cloudrec_env(
        redis_url,
        emulator.base_url,
        CLOUDREC_DEV_API="false",
        CLOUDREC_START_CONFIRM_TIMEOUT="60",  # the busy app's queries wait behind its starts
        **app_env("busy", BUSY),
        **app_env("quiet", QUIET),
    )
    settings = Settings(
        redis_url=redis_url,
        api_base_url=emulator.base_url,
        dev_api=False,
        apps={
            name: {
                "app_id": app.app_id,
                "customer_id": app.customer_id,
                "customer_secret": app.customer_secret,
                "api_rate_limit": RATE,
            }
            for name, app in (("busy", BUSY), ("quiet", QUIET))
        },
    )
    configure(settings)
    rt = runtime()
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    deadline = time.time() + LEAD
    stop_at = datetime.fromtimestamp(deadline, UTC).isoformat()
    with processes() as procs:
        procs.append(start_worker_process(env, log_dir))
        procs.append(start_beat_process(env, log_dir))
        jobs = {}
        for app, count in (("busy", BUSY_JOBS), ("quiet", QUIET_JOBS)):
            for i in range(count):
                spec = process_spec(
                    f"{app}-{i}", app=app, duration=None, stop_at=stop_at, recordingConfig=IDLE
                )
                jobs[submit_and_start(rt, spec)[0].job_id] = app
        assert time.time() < deadline - LEAD / 2, "submitting took too long to measure"
        wait_for(
            lambda: all(rt.store.get(j).terminal for j in jobs),
            LEAD + 90,
            0.5,
            "every job to end",
        )
        load = os.getloadavg()[0]
        records = {j: rt.store.get(j) for j in jobs}
        assert all(r.state == "empty" for r in records.values()), [
            r.status_json() for r in records.values() if r.state != "empty"
        ]
        dev = DevApiClient(emulator.base_url)
        seen = {r["sid"]: r for r in dev.recordings()}
        dev.close()
    logs = "".join(p.read_text(errors="replace") for p in log_dir.iterdir())
    stored = everything_in(rt.redis)
    for secret in (BUSY.customer_secret, QUIET.customer_secret):  # not in logs, records, broker
        assert secret not in logs and secret.encode() not in stored

    lateness: dict[str, list[float]] = {"busy": [], "quiet": []}
    for job_id, app in jobs.items():
        record = records[job_id]
        assert record.status_json()["app"] == app
        row = seen[record.sid]
        # Recorded under its own App ID (and so with its own customer's credentials).
        assert row["appId"] == {"busy": BUSY.app_id, "quiet": QUIET.app_id}[app]
        stopped = datetime.fromisoformat(row["stoppedAt"].replace("Z", "+00:00")).timestamp()
        lateness[app].append(stopped - record.stop_at)
    for app, values in lateness.items():
        print(
            f"{app}: {len(values)} stops, lateness p50 {statistics.median(values):.3f} s, "
            f"max {max(values):.3f} s (load average {load:.2f})"
        )
    waits = rt.redis.hgetall(LIMITER_WAITS)
    busy_waits = sum(int(v) for k, v in waits.items() if k.decode().endswith("|busy"))
    assert busy_waits > 0, "the busy app never waited for its budget: inconclusive"
    assert max(lateness["busy"]) >= BUSY_LATE, "the busy app was not at its limit: inconclusive"
    assert max(lateness["quiet"]) < ON_TIME, lateness

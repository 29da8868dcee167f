"""Tier 3 in real-service mode (``dev_api=False``: the worker uses nothing of the emulator's dev
API) with the NCS receiver running: emulator -> HTTP (signed) -> ``cloudrec ncs`` -> Redis ->
the real Celery worker, dispatcher and reconciler.

The tests may read ``GET /dev/recordings`` to check what ran at the emulator; the worker never
does (its runtime has no locator)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from config import Settings
from emulator import EmulatorConfig, serve_in_thread
from tasks.recording import submit_and_start
from tests.support.waiting import wait_for
from worker.celery_app import CONTROL_QUEUE, RECORDING_QUEUE, app, configure, runtime
from worker.devapi import DevApiClient
from worker.metrics import API_CALLS, SID_UNKNOWN
from worker.ncs_receiver import ReceiverThread
from worker.runtime import Runtime
from worker.store import JobRecord

pytestmark = pytest.mark.e2e

NCS_SECRET = "e2e-ncs-secret"


@dataclass
class RealStack:
    settings: Settings
    runtime: Runtime
    dev: DevApiClient  # the test's own view of the emulator, never the worker's


def _tick(stop: threading.Event) -> None:
    from tasks.recording import dispatch, reconcile

    last_round = 0.0
    while not stop.wait(0.25):
        dispatch()
        if time.monotonic() - last_round >= 1.0:  # the reconciler, much more often than 30 s
            reconcile()
            last_round = time.monotonic()


def _settings(redis_url: str, base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "api_base_url": base_url,
        "api_rate_limit": 50,
        "api_read_timeout": 2.0,
        "start_confirm_timeout": 20,
        "failover_window": 4,
        "dev_api": False,
        "ncs_secret": NCS_SECRET,
        "sid_unknown_window": 20,
        "reconcile_stuck_after": 10,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def real_stack(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> Iterator[RealStack]:
    overrides = getattr(request, "param", {})
    receiver = ReceiverThread(Settings(redis_url=redis_url, ncs_secret=NCS_SECRET))
    emulator = serve_in_thread(
        EmulatorConfig(
            port=0,
            storage_dir=tmp_path / "storage",
            startup_seconds=1.0,
            slice_seconds=2.0,
            exit_linger_seconds=3.0,
            progress_seconds=5.0,
            qps=0,
            ncs_url=receiver.url,
            ncs_secret=NCS_SECRET,
        )
    )
    settings = _settings(redis_url, emulator.base_url, **overrides)
    configure(settings)
    stop = threading.Event()
    ticker = threading.Thread(target=_tick, args=(stop,), daemon=True)
    dev = DevApiClient(emulator.base_url)
    try:
        with start_worker(
            app,
            pool="threads",
            concurrency=4,
            perform_ping_check=False,
            queues=[CONTROL_QUEUE, RECORDING_QUEUE],
            shutdown_timeout=30,
        ):
            ticker.start()
            rt = runtime()
            assert rt.locator is None  # real-service mode: no dev API for the worker
            yield RealStack(settings, rt, dev)
            stop.set()
            ticker.join()
    finally:
        dev.close()
        emulator.stop()
        receiver.stop()


def _spec(cname: str, duration: float, max_idle: int = 30) -> dict[str, Any]:
    return {
        "cname": cname,
        "duration": duration,
        "recordingConfig": {
            "maxIdleTime": max_idle,
            "transcodingConfig": {"width": 160, "height": 120, "fps": 7, "bitrate": 100},
        },
    }


def _terminal(stack: RealStack, job_id: str, timeout: float = 60.0) -> JobRecord:
    return wait_for(
        lambda: (job := stack.runtime.store.get(job_id)).terminal and job,
        timeout,
        0.2,
        f"job {job_id} to end",
    )


def _recordings(stack: RealStack, cname: str) -> list[dict[str, Any]]:
    return [r for r in stack.dev.recordings() if r["cname"] == cname]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _api_calls(stack: RealStack, operation: str) -> int:
    raw = stack.runtime.redis.hgetall(API_CALLS)
    return sum(int(v) for k, v in raw.items() if k.decode().startswith(f"{operation}|"))


LOST_START_ANSWER = {
    # The service starts the recording; its answer comes after the client's 2 s timeout.
    "latency": [{"operations": ["start"], "seconds": 4, "when": "after", "count": 1}],
    "ncsDuplicateRate": 1,
    "ncsDelayRate": 0.5,
    "ncsDelaySeconds": 0.5,
    "seed": 11,
}


def test_a_start_whose_answer_is_lost_is_stopped_at_its_deadline(real_stack: RealStack) -> None:
    real_stack.dev.set_faults(LOST_START_ANSWER)
    job, _ = submit_and_start(real_stack.runtime, _spec("lost-answer", duration=6))
    job = _terminal(real_stack, job.job_id)
    assert job.state == "empty"  # nobody published: stopped, 435
    assert job.sid_source == "ncs"
    (rec,) = _recordings(real_stack, "lost-answer")  # one recording, never a second
    assert rec["sid"] == job.sid and not rec["live"]
    # Measured at the emulator: stopped on time although the worker never got the answer.
    assert _epoch(rec["stoppedAt"]) - job.stop_at < 3.0


def test_ncs_end_events_finish_the_job_with_its_files_without_queries(
    real_stack: RealStack,
) -> None:
    real_stack.dev.set_faults({"ncsDuplicateRate": 1, "ncsDelayRate": 0.5, "seed": 5})
    real_stack.dev.join("idle", "1", video={"color": "#00FF00"}, audio={"tone": 440})
    job, _ = submit_and_start(real_stack.runtime, _spec("idle", duration=120, max_idle=5))
    wait_for(lambda: real_stack.runtime.store.get(job.job_id).state == "recording", 20)
    time.sleep(3)
    real_stack.dev.leave("idle", "1")  # the recorder leaves by itself 5 s later
    job = _terminal(real_stack, job.job_id, timeout=40)
    assert job.state == "idle_exit"
    assert "NCS" in job.error["reason"]
    heard = real_stack.runtime.ncs.get(job.sid)
    assert heard is not None and heard.upload_status == "uploaded"
    assert [f.fileName for f in job.files] == heard.file_names
    assert f"{job.sid}_idle.m3u8" in heard.file_names
    assert job.uploading_status == "uploaded"
    assert _api_calls(real_stack, "query") == 0  # watched and ended by NCS alone
    assert _api_calls(real_stack, "stop") == 0


def test_lost_events_fall_back_to_queries(real_stack: RealStack) -> None:
    real_stack.dev.set_faults({"ncsDropRate": 1})
    real_stack.dev.join("deaf", "1", video={"color": "#FF0000"}, audio=None)
    job, _ = submit_and_start(real_stack.runtime, _spec("deaf", duration=5))
    job = _terminal(real_stack, job.job_id, timeout=60)
    assert job.state == "completed" and job.sid_source == "start"
    assert _api_calls(real_stack, "query") >= 1  # the watch had to ask
    (rec,) = _recordings(real_stack, "deaf")
    assert _epoch(rec["stoppedAt"]) - job.stop_at < 3.0


@pytest.mark.parametrize("real_stack", [{"sid_unknown_window": 4}], indirect=True)
def test_a_sid_nothing_tells_ends_the_job_sid_unknown_and_counts_it(
    real_stack: RealStack,
) -> None:
    real_stack.dev.set_faults(
        {
            "latency": [{"operations": ["start"], "seconds": 4, "when": "after", "count": 1}],
            "ncsDropRate": 1,
        }
    )
    job, _ = submit_and_start(real_stack.runtime, _spec("unknowable", duration=3))
    job = _terminal(real_stack, job.job_id, timeout=40)
    assert (job.state, job.stop_reason, job.error["kind"]) == (
        "failed",
        "sid_unknown",
        "SidUnknown",
    )
    # Counted (a worker writes its counts twice a second: worker.metrics).
    wait_for(lambda: real_stack.runtime.redis.hget(SID_UNKNOWN, "total") == b"1", 5, 0.1)
    # Honest: the recording the job could not stop is running at the emulator.
    assert [r["live"] for r in _recordings(real_stack, "unknowable")] == [True]


def test_a_failover_new_uid_is_recorded_on_the_job(real_stack: RealStack) -> None:
    real_stack.dev.join("moved", "1", video={"color": "#0000FF"}, audio={"tone": 330})
    job, _ = submit_and_start(real_stack.runtime, _spec("moved", duration=14))
    wait_for(lambda: real_stack.runtime.store.get(job.job_id).state == "recording", 20)
    sid = real_stack.runtime.store.get(job.job_id).sid
    assert sid is not None
    real_stack.dev.failover(sid, seconds=1.0)  # the test's dev API: an HA move, then event 12
    moved = wait_for(
        lambda: (j := real_stack.runtime.store.get(job.job_id)).failover_uids and j,
        20,
        0.2,
        "event 12's new uid on the job",
    )
    (rec,) = _recordings(real_stack, "moved")
    assert moved.status_json()["failover_uids"] == [str(u) for u in moved.failover_uids]
    assert moved.failover_uids == [rec["recorderUid"]] != [moved.uid]
    job = _terminal(real_stack, job.job_id, timeout=40)
    assert job.state == "completed" and job.failover_uids == moved.failover_uids

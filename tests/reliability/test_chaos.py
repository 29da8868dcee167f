"""Reliability (small size of ``benchmarks/chaos.py``): jobs submitted through the intake by a
plain Celery app run while whole worker process groups are SIGKILLed every 2-5 s and restarted,
and the emulator answers half the starts 2.5 s late and some only after the client's read
timeout (the recording starts, the answer is lost). Real-service mode: the worker uses no dev
API; it learns a lost start's sid from the NCS receiver. Every job ends terminal with a reason;
every recording at the emulator (including any whose job never learnt its sid) is stopped
within 30 s of its job's deadline, none started twice, none left live; a job that failed left
no recording; and the emulator saw no dev API request from the worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from celery import Celery

from config import Settings
from emulator import EmulatorConfig, serve_in_thread
from tests.support.fleet import Killer, WorkerGroup, beat_threads
from tests.support.promises import (
    NCS_SECRET,
    REAL_SERVICE,
    check_promises,
    dev_requests_mark,
    empty_channel_spec,
    observer_dev,
    wait_all_terminal,
    worker_dev_requests,
)
from tests.support.waiting import wait_for
from worker.celery_app import configure, runtime
from worker.ncs_receiver import ReceiverThread

pytestmark = pytest.mark.reliability

JOBS = 20
KILL_EVERY = (2.0, 5.0)
READ_TIMEOUT = 3.0
START_FAULTS = {
    "latency": [
        {"operations": ["start"], "seconds": 2.5, "when": "after", "rate": 0.5},
        {"operations": ["start"], "seconds": READ_TIMEOUT + 1.5, "when": "after", "rate": 0.2},
    ],
    "seed": 3,
}


def chaos_settings(redis_url: str, base_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        api_base_url=base_url,
        api_rate_limit=50,
        api_read_timeout=READ_TIMEOUT,
        start_confirm_timeout=30,
        failover_window=5,
        reconcile_stuck_after=10,
        orphan_grace=15,
        orphan_scan_interval=5,
        sid_unknown_window=30,
        **REAL_SERVICE,  # type: ignore[arg-type]
    )


def test_every_promise_holds_while_workers_are_killed(redis_url, tmp_path: Path):
    receiver = ReceiverThread(Settings(redis_url=redis_url, ncs_secret=NCS_SECRET))
    emulator = serve_in_thread(
        EmulatorConfig(
            port=0,
            qps=0,
            storage_dir=tmp_path / "storage",
            startup_seconds=1.0,
            exit_linger_seconds=3.0,
            ncs_url=receiver.url,
            ncs_secret=NCS_SECRET,
        )
    )
    settings = chaos_settings(redis_url, emulator.base_url)
    dev = observer_dev(emulator.base_url)
    mark = dev_requests_mark(dev)
    configure(settings)
    rt = runtime()
    dev.set_faults(START_FAULTS)
    caller = Celery(broker=redis_url)  # another service's app: no cloudrec, no routes
    groups = [WorkerGroup(settings, f"chaos{i}", log_dir=tmp_path).start() for i in range(2)]
    try:
        with (
            beat_threads(dispatch_interval=1.0, reconcile_interval=5.0),
            Killer(groups, *KILL_EVERY) as killer,
        ):
            ids = []
            for i in range(JOBS):
                spec = empty_channel_spec(f"chaos{i}", 12 + i, max_idle=600, job_id=f"chaos-{i}")
                caller.send_task("recording.submit", args=[spec], queue="cloudrec")
                ids.append(f"chaos-{i}")
                time.sleep(0.4)  # arrivals spread over ~8 s (a pace, not a wait)
            # Every submit stored (a killed worker's is restored), then past every deadline.
            wait_for(lambda: len(rt.store.records(ids)) == JOBS, 40, 0.5, "every job stored")
            last_deadline = max(j.stop_at for j in rt.store.records(ids))
            while time.time() < last_deadline + 5:
                time.sleep(0.5)
            kills = killer.kills
        with beat_threads(dispatch_interval=1.0, reconcile_interval=5.0):
            assert wait_all_terminal(rt, ids, 90), "some jobs never ended"
            time.sleep(1)  # a last look at the emulator after the final stops (a deadline)
        for group in groups:
            group.stop()
        verdict = check_promises(rt, dev, ids)
        from_worker = worker_dev_requests(dev, mark)
    finally:
        for group in groups:
            group.stop()
        emulator.stop()
        receiver.stop()
    print(verdict.summary(), dict(verdict.reasons), f"kills={kills}")
    assert kills >= 8
    assert verdict.not_terminal == []
    assert verdict.started_twice == [] and verdict.unknown_recordings == []
    assert verdict.left_live == []
    # Under this pressure a job may fail to start before its deadline: it says so, and then
    # nothing was recorded for it. Most jobs record.
    recorded = {r.job_id for r in verdict.recordings}
    for job_id, reason in verdict.failures.items():
        assert reason == "the deadline passed before the recording started", (job_id, reason)
        assert job_id not in recorded, job_id
    assert verdict.states["empty"] + verdict.states["completed"] >= JOBS * 3 // 4, verdict.reasons
    assert len(verdict.lateness) == len(verdict.recordings)
    assert verdict.max_lateness <= 30.0, sorted(verdict.lateness)
    late = [r.line() for r in verdict.recordings if r.late is None or r.late > 30.0]
    assert late == [], late
    assert from_worker == [], from_worker[:5]  # real-service mode: no dev API for the worker

"""Reliability (small size; ``benchmarks/chaos.py`` runs the full size): jobs run while worker
process groups are SIGKILLed every few seconds and restarted, in real-service mode (the worker
uses no dev API; it hears of lost start answers through the NCS receiver). Every job ends
terminal, every recording at the emulator (including any whose job never learnt its sid) is
stopped within 30 s of its job's deadline, none started twice, none is left live, and the
emulator saw no dev API request from the worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from config import Settings
from emulator import EmulatorConfig, serve_in_thread
from tasks.recording import submit_and_start
from tests.reliability.harness import (
    NCS_SECRET,
    REAL_SERVICE,
    Killer,
    WorkerGroup,
    beat_threads,
    check_promises,
    dev_requests_mark,
    empty_channel_spec,
    observer_dev,
    wait_all_terminal,
    worker_dev_requests,
)
from worker.celery_app import configure, runtime
from worker.ncs_receiver import ReceiverThread

pytestmark = pytest.mark.reliability

JOBS = 20
KILL_EVERY = 4.0


def chaos_settings(redis_url: str, base_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        api_base_url=base_url,
        api_rate_limit=50,
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
    groups = [WorkerGroup(settings, f"chaos{i}", log_dir=tmp_path).start() for i in range(2)]
    try:
        with (
            beat_threads(dispatch_interval=1.0, reconcile_interval=5.0),
            Killer(groups, KILL_EVERY) as killer,
        ):
            ids = []
            for i in range(JOBS):
                job, _ = submit_and_start(rt, empty_channel_spec(f"chaos{i}", 12 + i))
                ids.append(job.job_id)
                time.sleep(0.4)  # arrivals spread over ~8 s (a pace, not a wait)
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
    print(verdict.summary(), f"kills={kills}")
    assert kills >= 8
    assert verdict.not_terminal == []
    assert verdict.started_twice == [] and verdict.unknown_recordings == []
    assert verdict.left_live == []
    assert verdict.states["empty"] + verdict.states["completed"] == JOBS, verdict.failures
    assert len(verdict.lateness) == JOBS
    assert verdict.max_lateness <= 30.0, sorted(verdict.lateness)
    late = [r.line() for r in verdict.recordings if r.late is None or r.late > 30.0]
    assert late == [], late
    assert from_worker == [], from_worker[:5]  # real-service mode: no dev API for the worker

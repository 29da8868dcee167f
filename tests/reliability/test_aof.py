"""Reliability: Redis as a durable store. A private ``redis-server`` with append-only
persistence (``--appendfsync always``, as compose.yaml runs it) is SIGKILLed while jobs are
queued and recording, then restarted on the same data directory: every job whose submit was
acknowledged before the crash is still there, and the worker carries each to its end."""

from __future__ import annotations

import faulthandler
import shutil
import sys
import time
from pathlib import Path

import pytest

from config import Settings
from emulator import EmulatorConfig, serve_in_thread
from tasks.recording import submit_and_start
from tests.support.fleet import RedisServer, WorkerGroup, beat_threads
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


def test_jobs_acknowledged_before_redis_is_killed_survive_and_finish(tmp_path: Path):
    if shutil.which("redis-server") is None:
        pytest.fail(
            "this test runs its own redis-server: install one (apt-get install redis-server)"
        )
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisServer(data, appendfsync="always").start()
    # Real-service mode: the NCS receiver keeps its ledger in the same Redis (killed too).
    receiver = ReceiverThread(Settings(redis_url=server.url, ncs_secret=NCS_SECRET))
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
    settings = Settings(
        redis_url=server.url,
        api_base_url=emulator.base_url,
        api_rate_limit=50,
        start_confirm_timeout=30,
        failover_window=5,
        reconcile_stuck_after=5,
        **REAL_SERVICE,  # type: ignore[arg-type]
    )
    configure(settings)
    dev = observer_dev(emulator.base_url)
    mark = dev_requests_mark(dev)
    rt = runtime()
    group = WorkerGroup(settings, "aof", pool="threads", concurrency=8, log_dir=tmp_path).start()
    try:
        with beat_threads(dispatch_interval=0.5, reconcile_interval=5.0):
            early = [
                submit_and_start(rt, empty_channel_spec(f"aof{i}", 15))[0].job_id for i in range(6)
            ]
            wait_for(
                lambda: sum(j.state == "recording" for j in rt.store.records(early)) >= 3,
                30,
                0.2,
                "some recordings to run",
            )
            # Acknowledged a moment before the crash: queued, nothing run yet.
            late = [
                submit_and_start(rt, empty_channel_spec(f"late{i}", 30))[0].job_id for i in range(4)
            ]
            ids = early + late
            before = {j.job_id: j.state for j in rt.store.records(ids)}
            server.kill()
            time.sleep(1.0)  # Redis stays down for a moment (a deadline, not a poll)
            server.start()
            after = {j.job_id: j.state for j in rt.store.records(ids)}
            assert set(after) == set(ids), "acknowledged jobs were lost"
            # Not a single acknowledged transition lost either (the worker may have moved on).
            assert all(_rank(after[i]) >= _rank(before[i]) for i in ids), (before, after)
            if group.proc is not None and group.proc.poll() is not None:
                group.start()  # a worker that gave up on the broker is restarted
            if not wait_all_terminal(rt, ids, 90):
                faulthandler.dump_traceback(sys.stderr, all_threads=True)
                print(group.stacks(), file=sys.stderr)
                states = {j.job_id: j.state for j in rt.store.records(ids)}
                pytest.fail(f"jobs were not carried to their end: {states}")
            time.sleep(1)
        group.stop()
        verdict = check_promises(rt, dev, ids)
        from_worker = worker_dev_requests(dev, mark)
    finally:
        group.stop()
        server.stop()
        emulator.stop()
        receiver.stop()
    print(verdict.summary())
    assert verdict.states == {"empty": len(ids)}, verdict.failures
    assert verdict.left_live == [] and verdict.started_twice == []
    assert from_worker == [], from_worker[:5]  # real-service mode: no dev API for the worker


_ORDER = ["queued", "acquiring", "starting", "recording", "stopping"]


def _rank(state: str) -> int:
    return _ORDER.index(state) if state in _ORDER else len(_ORDER)

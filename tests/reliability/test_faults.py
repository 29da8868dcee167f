"""Reliability (small size; ``benchmarks/faults.py`` runs the full size): the emulator injects
about 20 % errors on every operation (5xx/62, 206/65, 429, answers that time out after the call
took effect, failover-style 404 windows), in real-service mode: the worker uses no dev API (a
start whose answer was lost learns its sid from the NCS receiver). Every job still ends
``completed``, with exactly one recording per job and none left live, and the emulator saw no
dev API request from the worker."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from emulator import EmulatorConfig, serve_in_thread
from tasks.recording import submit_and_start
from tests.support.fleet import WorkerGroup, beat_threads
from tests.support.promises import (
    NCS_SECRET,
    REAL_SERVICE,
    check_promises,
    dev_requests_mark,
    injected_faults,
    observer_dev,
    wait_all_terminal,
    worker_dev_requests,
)
from worker.celery_app import configure, runtime
from worker.devapi import DevApiClient
from worker.metrics import API_CALLS, RETRIES
from worker.ncs_receiver import ReceiverThread

pytestmark = pytest.mark.reliability

JOBS = 10
RATE = 0.05  # per kind: 4 kinds -> about 1 - 0.95^4 = 18.5 %, plus the 404 windows


def fault_settings(seed: int, *, window: float = 0.0, after: float = 0.0) -> dict[str, Any]:
    """About 20 % of calls fail; answers come 3.5 s late, after the client's 2 s read timeout."""
    return injected_faults(RATE, seed, late_answer=3.5, window=window, after=after)


def faults_config(redis_url: str, base_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        api_base_url=base_url,
        api_rate_limit=50,
        api_read_timeout=1.5,
        api_stop_read_timeout=3.0,
        start_confirm_timeout=40,
        # longer than any injected 404 window, as docs/service/errors.md#not-found promises
        failover_window=8,
        reconcile_stuck_after=15,
        sid_unknown_window=40,
        **REAL_SERVICE,  # type: ignore[arg-type]
    )


class FailoverWindows:
    """Every ``every`` seconds, open a 404 window of ``length`` seconds (as an HA move does)."""

    def __init__(self, dev: DevApiClient, every: float, length: float) -> None:
        self.dev, self.every, self.length = dev, every, length
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.opened += 1
            self.dev.set_faults(
                fault_settings(self.opened, window=self.length, after=random.uniform(0, 2))
            )

    def __enter__(self) -> FailoverWindows:
        self.dev.set_faults(fault_settings(0))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.dev.set_faults({})


def test_every_job_completes_once_despite_20_percent_errors(redis_url, tmp_path: Path):
    receiver = ReceiverThread(Settings(redis_url=redis_url, ncs_secret=NCS_SECRET))
    emulator = serve_in_thread(
        EmulatorConfig(
            port=0,
            qps=0,
            storage_dir=tmp_path / "storage",
            startup_seconds=1.0,
            slice_seconds=2.0,
            exit_linger_seconds=3.0,
            ncs_url=receiver.url,
            ncs_secret=NCS_SECRET,
        )
    )
    settings = faults_config(redis_url, emulator.base_url)
    configure(settings)
    rt = runtime()
    dev = observer_dev(emulator.base_url)
    mark = dev_requests_mark(dev)
    group = WorkerGroup(settings, "faults", pool="threads", concurrency=8, log_dir=tmp_path).start()
    try:
        with (
            beat_threads(dispatch_interval=0.5, reconcile_interval=5.0),
            FailoverWindows(dev, every=9.0, length=4.0) as windows,
        ):
            ids = []
            for i in range(JOBS):
                dev.join(f"f{i}", "1", video={"color": "#3366FF"}, audio={"tone": 500})
                spec = {
                    "cname": f"f{i}",
                    "duration": 12 + i,
                    "recordingConfig": {
                        "maxIdleTime": 60,
                        "transcodingConfig": {
                            "width": 160,
                            "height": 120,
                            "fps": 7,
                            "bitrate": 100,
                        },
                    },
                }
                ids.append(submit_and_start(rt, spec)[0].job_id)
            finished = wait_all_terminal(rt, ids, 120)
        with beat_threads(dispatch_interval=0.5, reconcile_interval=5.0):
            finished = finished or wait_all_terminal(rt, ids, 60)
            time.sleep(1)
        group.stop()
        verdict = check_promises(rt, dev, ids)
        from_worker = worker_dev_requests(dev, mark)
        calls = {k.decode(): int(v) for k, v in rt.redis.hgetall(API_CALLS).items()}
        retries = {k.decode(): int(v) for k, v in rt.redis.hgetall(RETRIES).items()}
    finally:
        group.stop()
        emulator.stop()
        receiver.stop()
    failed_calls = sum(n for k, n in calls.items() if k.split("|")[1] != "200")
    total_calls = sum(calls.values())
    print(
        verdict.summary(), f"calls={total_calls} failed={failed_calls}", f"windows={windows.opened}"
    )
    assert finished
    assert failed_calls >= 0.1 * total_calls, calls  # the faults really were there
    # Each retry was counted, by step and error class.
    kinds = {key.split("|")[1] for key in retries}
    assert kinds & {"RetryableApiError", "RateLimitedByService", "TransportError"}, retries
    assert verdict.states == {"completed": JOBS}, verdict.failures
    assert verdict.started_twice == [] and verdict.unknown_recordings == []
    assert verdict.left_live == []
    assert from_worker == [], from_worker[:5]  # real-service mode: no dev API for the worker

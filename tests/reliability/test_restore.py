"""Reliability: a message taken by a worker that is then SIGKILLed does not wait for the broker's
visibility timeout (300 s). For each step (submit, acquire, start, watch) a worker process group
is killed while it holds that step's message, a fresh worker is started, and the job exists and
reaches ``recording`` within 30 s of the kill (the reconciler is kept out of it: its interval
is longer than the test), with one recording at the emulator, stopped at its deadline.

Real-service mode (``dev_api=False``); the test, not the worker, reads the emulator's dev API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from config import Settings
from emulator import EmulatorConfig, serve_in_thread
from tasks.recording import submit_and_start
from tests.support.fleet import WorkerGroup, beat_threads
from tests.support.promises import (
    dev_requests_mark,
    empty_channel_spec,
    observer_dev,
    wait_all_terminal,
    worker_dev_requests,
)
from tests.support.waiting import wait_for
from worker.celery_app import RECORDING_QUEUE, configure, runtime
from worker.devapi import DevApiClient
from worker.restorer import WORKERS_KEY, held_key

pytestmark = pytest.mark.reliability

RECOVERY = 30.0  # the promise: a job whose worker died proceeds within this


def held_tasks(client: redis.Redis) -> list[dict[str, Any]]:
    """The messages live workers say they hold: task name, retries, eta (from kombu's record)."""
    out = []
    for worker in client.zrange(WORKERS_KEY, 0, -1):
        for tag in client.smembers(held_key(worker.decode())):
            raw = client.hget("unacked", tag)
            if raw is not None:
                headers = json.loads(raw)[0]["headers"]
                out.append({k: headers.get(k) for k in ("task", "retries", "eta", "argsrepr")})
    return out


def holds(client: redis.Redis, task: str, *, retried: bool = False) -> Callable[[], bool]:
    def probe() -> bool:
        return any(
            h["task"] == task and (not retried or (h["retries"] or 0) >= 1)
            for h in held_tasks(client)
        )

    return probe


def restore_settings(redis_url: str, base_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        api_base_url=base_url,
        api_rate_limit=100,
        api_read_timeout=3.0,
        start_confirm_timeout=30,
        dev_api=False,
    )


STEPS = ["submit", "acquire", "start", "watch"]


@pytest.mark.parametrize("step", STEPS)
def test_a_job_whose_worker_died_holding_its_message_proceeds_within_30_s(
    step: str, redis_url: str, tmp_path: Path
):
    emulator = serve_in_thread(
        EmulatorConfig(
            port=0,
            qps=0,
            storage_dir=tmp_path / "storage",
            startup_seconds=1.0,
            exit_linger_seconds=1.0,
        )
    )
    settings = restore_settings(redis_url, emulator.base_url)
    configure(settings)
    rt = runtime()
    dev = observer_dev(emulator.base_url)
    mark = dev_requests_mark(dev)
    first = WorkerGroup(settings, f"doomed-{step}", pool="threads", concurrency=4, log_dir=tmp_path)
    second = WorkerGroup(settings, f"fresh-{step}", pool="threads", concurrency=4, log_dir=tmp_path)
    cname = f"restore-{step}"
    spec = empty_channel_spec(cname, 40, job_id=f"job-{step}")
    try:
        # The reconciler would re-drive a stuck job too, after a minute or more: keep it out.
        with beat_threads(dispatch_interval=1.0, reconcile_interval=3600):
            first.start()
            killed_at = hold_then_kill(step, first, rt.redis, dev, redis_url, spec)
            second.start()
            wait_for(
                lambda: (
                    (job := rt.store.find(f"job-{step}")) is not None
                    and job.state in ("recording", "stopping", "completed", "empty")
                ),
                RECOVERY + 5,
                0.2,
                f"the job whose {step} was lost to reach recording",
            )
            recovered = time.time() - killed_at
            print(f"{step}: recording {recovered:.1f} s after the kill")
            assert recovered <= RECOVERY
            dev.set_faults({})
            job = rt.store.get(f"job-{step}")
            # Let it run to its deadline: a restored duplicate must not start or stop it twice.
            assert wait_all_terminal(rt, [job.job_id], job.stop_at - time.time() + 30)
            time.sleep(1.5)  # a duplicate start would show by now (a deadline, not a poll)
            recordings = [r for r in dev.recordings() if r["cname"] == cname]
            from_worker = worker_dev_requests(dev, mark)
    finally:
        first.kill()
        second.stop()
        emulator.stop()
    job = rt.store.get(f"job-{step}")
    assert job.state == "empty", (job.state, job.error)
    assert len(recordings) == 1, recordings
    assert not recordings[0]["live"]
    assert from_worker == [], from_worker[:5]  # real-service mode: no dev API for the worker


def hold_then_kill(
    step: str,
    worker: WorkerGroup,
    client: redis.Redis,
    dev: DevApiClient,
    redis_url: str,
    spec: dict[str, Any],
) -> float:
    """Arrange for ``worker`` to hold ``step``'s message, SIGKILL its process group; returns
    when it died."""
    rt = runtime()
    if step == "submit":
        # As a caller sends it (a plain Celery app), with a countdown: the worker takes the
        # message and keeps it unacknowledged in memory until it is due.
        caller = Celery(broker=redis_url)
        caller.send_task("recording.submit", args=[spec], queue=RECORDING_QUEUE, countdown=6)
        wait_for(holds(client, "recording.submit"), 30, 0.05, "the worker to take the submit")
    elif step == "acquire":
        # The acquire request is in flight (answered 8 s late) when the worker dies.
        dev.set_faults(
            {"latency": [{"operations": ["acquire"], "seconds": 8, "when": "before", "count": 1}]}
        )
        submit_and_start(rt, spec)
        wait_for(holds(client, "recording.acquire"), 30, 0.05, "the worker to take the acquire")
        time.sleep(1.0)  # the request is out (a pace, not a wait)
    elif step == "start":
        # A 429 on start: its retry waits 2-4 s in the worker's memory when the worker dies.
        dev.set_faults(
            {
                "errors": [
                    {"operations": ["start"], "status": 429, "message": "slow down", "count": 1}
                ]
            }
        )
        submit_and_start(rt, spec)
        wait_for(holds(client, "recording.start", retried=True), 30, 0.05, "the start's retry")
    else:  # watch: the recording started, its first query waits in the worker
        submit_and_start(rt, spec)
        wait_for(holds(client, "recording.watch"), 30, 0.05, "the worker to take a watch")
    worker.kill()
    return time.time()

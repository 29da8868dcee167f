"""Reliability in real-service mode with the NCS receiver (issue 9.2/9.3, small size): worker
process groups SIGKILLed every few seconds while jobs run, the emulator answering half the starts
late and some only after the client's read timeout, ``dev_api=False`` (the worker uses nothing of
the emulator's dev API; the test reads ``GET /dev/recordings`` to judge). Every recording that
reached the emulator, including those whose job never got the start's answer, is stopped within
30 s of its job's deadline; none started twice; every job ends terminal, with a reason."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from config import Settings
from emulator import EmulatorConfig, serve_in_thread
from tasks.recording import submit_and_start
from tests.support.fleet import Killer, WorkerGroup, beat_threads
from tests.support.promises import empty_channel_spec, epoch, wait_all_terminal
from worker.celery_app import configure, runtime
from worker.devapi import DevApiClient
from worker.ncs_receiver import ReceiverThread

pytestmark = pytest.mark.reliability

JOBS = 16
KILL_EVERY = 3.0
NCS_SECRET = "chaos-ncs-secret"
LATE_STARTS = {
    "latency": [
        {"operations": ["start"], "seconds": 2.5, "rate": 0.5},
        {"operations": ["start"], "seconds": 4.0, "when": "after", "rate": 0.25},
    ],
    "ncsDuplicateRate": 0.3,
    "ncsDelayRate": 0.3,
    "seed": 9,
}


def test_every_recording_is_stopped_on_time_without_the_dev_api(redis_url, tmp_path: Path):
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
    settings = Settings(
        redis_url=redis_url,
        api_base_url=emulator.base_url,
        api_rate_limit=50,
        api_read_timeout=3.0,
        start_confirm_timeout=30,
        failover_window=5,
        reconcile_stuck_after=10,
        dev_api=False,
        ncs_secret=NCS_SECRET,
    )
    configure(settings)
    rt = runtime()
    dev = DevApiClient(emulator.base_url)  # the test's judge, never the worker's
    dev.set_faults(LATE_STARTS)
    groups = [WorkerGroup(settings, f"ncschaos{i}", log_dir=tmp_path).start() for i in range(2)]
    try:
        with (
            beat_threads(dispatch_interval=1.0, reconcile_interval=5.0),
            Killer(groups, KILL_EVERY) as killer,
        ):
            ids = []
            for i in range(JOBS):
                job, _ = submit_and_start(rt, empty_channel_spec(f"ncschaos{i}", 6 + i % 9))
                ids.append(job.job_id)
                time.sleep(0.3)
            last_deadline = max(j.stop_at for j in rt.store.records(ids))
            while time.time() < last_deadline + 5:
                time.sleep(0.5)
            kills = killer.kills
        with beat_threads(dispatch_interval=1.0, reconcile_interval=5.0):
            assert wait_all_terminal(rt, ids, 120), "some jobs never ended"
            time.sleep(1)
            jobs = {j.cname: j for j in rt.store.records(ids)}
            recordings = [r for r in dev.recordings() if r["cname"] in jobs]
    finally:
        for group in groups:
            group.stop()
        emulator.stop()
        receiver.stop()
    lateness = {}
    for rec in recordings:  # every recording at the emulator, whether its job knew it or not
        stopped = epoch(rec["stoppedAt"])
        assert stopped is not None, f"{rec['sid']} of {rec['cname']} is still live"
        lateness[rec["cname"]] = stopped - jobs[rec["cname"]].stop_at
    reasons = {
        j.job_id: (j.state, j.stop_reason, (j.error or {}).get("reason")) for j in jobs.values()
    }
    print(f"kills={kills} recordings={len(recordings)} lateness={sorted(lateness.values())}")
    print(reasons)
    assert kills >= 6
    assert len(recordings) == len({r["cname"] for r in recordings})  # none started twice
    assert max(lateness.values(), default=0.0) <= 30.0, lateness
    for job in jobs.values():
        assert job.terminal
        if job.state == "failed":
            assert job.error and job.error.get("reason"), job.job_id
        if job.cname in lateness and job.state in ("empty", "completed"):
            assert job.sid is not None

"""Tier 1 on a real Redis and the emulator in a thread, in real-service mode (no dev API): what
the reconciler does with the NCS ledger. Events are put in the ledger directly here (the HTTP
path is tested in test_ncs and tests/e2e/test_ncs_real_service)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.emulator import live_recordings
from tests.support.specs import small_spec
from tests.support.stack import make_settings
from tests.support.waiting import wait_for
from worker import recording
from worker.metrics import API_CALLS
from worker.ncs import Envelope
from worker.reconcile import reconcile
from worker.recording import NCS_SETTLE_SECONDS
from worker.runtime import Runtime
from worker.states import JobState

S = JobState


@pytest.fixture
def real_rt(redis_url: str, emulator: Any) -> Iterator[Runtime]:
    rt = Runtime.build(
        make_settings(redis_url, emulator.base_url, dev_api=False, sid_unknown_window=5)
    )
    yield rt
    rt.close()


def hear(rt: Runtime, job_id: str, event_type: int, seq: int, at: float | None = None, **details):
    """Put one notification about the job's recording in the ledger."""
    job = rt.store.get(job_id)
    ms = int((at if at is not None else time.time()) * 1000)
    rt.ncs.record(
        Envelope.parse(
            {
                "noticeId": uuid.uuid4().hex,
                "productId": 3,
                "eventType": event_type,
                "notifyMs": ms,
                "payload": {
                    "cname": job.cname,
                    "uid": job.uid,
                    "sid": job.sid or details.pop("sid"),
                    "sequence": seq,
                    "sendts": ms,
                    "details": details,
                },
            }
        )
    )


def _recording(rt: Runtime, cname: str) -> str:
    job, _ = recording.submit(rt, small_spec(cname))
    recording.acquire_step(rt, job.job_id)
    recording.start_step(rt, job.job_id)
    wait_for(
        lambda: (
            recording.watch_step(rt, job.job_id) is not None
            and rt.store.get(job.job_id).state == S.RECORDING
        ),
        10,
        0.2,
        "the recording to run",
    )
    return job.job_id


def queries(rt: Runtime) -> int:
    return sum(int(v) for k, v in rt.redis.hgetall(API_CALLS).items() if k.startswith(b"query|"))


def test_an_idle_exit_heard_through_ncs_ends_the_job_with_its_files_without_a_query(real_rt):
    job_id = _recording(real_rt, "idle")
    sid = real_rt.store.get(job_id).sid
    before = queries(real_rt)
    files = [{"fileName": f"{sid}_idle.m3u8"}, {"fileName": f"{sid}_idle_0.mp4"}]
    hear(real_rt, job_id, 11, 9, exitStatus=0)  # out of order: the exit first
    hear(real_rt, job_id, 32, 8, status=0, fileList=files)
    hear(real_rt, job_id, 41, 7, leaveCode=4)
    report = reconcile(real_rt)
    job = real_rt.store.get(job_id)
    assert report.ncs_ended == 1 and report.queried == 0 and queries(real_rt) == before
    assert job.state == S.IDLE_EXIT and "leaveCode 4" in job.error["reason"]
    assert [f.fileName for f in job.files] == [f["fileName"] for f in files]
    assert job.uploading_status == "backuped"


def test_an_exit_without_its_files_waits_for_them_then_settles(real_rt):
    job_id = _recording(real_rt, "nofiles")
    sid = real_rt.store.get(job_id).sid
    hear(real_rt, job_id, 41, 5, leaveCode=4)
    hear(real_rt, job_id, 11, 6, exitStatus=1)  # 31/32 lost, or still on their way
    assert reconcile(real_rt).ncs_ended == 0
    assert real_rt.store.get(job_id).state == S.RECORDING
    report = reconcile(real_rt, now=time.time() + NCS_SETTLE_SECONDS + 1)
    job = real_rt.store.get(job_id)
    assert report.ncs_ended == 1
    assert (job.state, job.uploading_status) == (S.FAILED, "unknown")  # exitStatus 1: abnormal
    assert [f.fileName for f in job.files] == [f"{sid}_nofiles.m3u8"]


def test_a_recording_heard_from_recently_is_not_queried_and_failover_uids_are_kept(real_rt):
    job_id = _recording(real_rt, "fresh")
    hear(real_rt, job_id, 33, 4, progress=5000)
    hear(real_rt, job_id, 12, 5, newUid=123456)
    before = queries(real_rt)
    report = reconcile(real_rt)
    assert (report.ncs_fresh, report.queried, queries(real_rt)) == (1, 0, before)
    job = real_rt.store.get(job_id)
    assert job.failover_uids == ["123456"]
    assert job.status_json()["failover_uids"] == ["123456"]
    # Heard from long ago: queried as before.
    later = time.time() + real_rt.settings.reconcile_check_interval + 1
    assert reconcile(real_rt, now=later).queried == 1


def test_a_sid_learnt_after_the_job_ended_sid_unknown_still_gets_it_stopped(real_rt, dev):
    job, _ = recording.submit(real_rt, small_spec("late"))
    recording.acquire_step(real_rt, job.job_id)
    dev.set_faults(
        {"latency": [{"operations": ["start"], "seconds": 3, "when": "after", "count": 1}]}
    )
    with pytest.raises(Exception):  # noqa: B017 - the client's timeout, whatever its class
        recording.start_step(real_rt, job.job_id)
    waiting = real_rt.store.get(job.job_id)
    soon = time.time()
    # No 201/7 yet: the search begins (and repeats the start), then gives up after the window.
    assert recording.watch_step(real_rt, job.job_id, now=soon + 6).step == "acquire"
    assert recording.watch_step(real_rt, job.job_id, now=soon + 12) == recording.DONE
    assert real_rt.store.get(job.job_id).stop_reason == "sid_unknown"
    (running,) = live_recordings(dev, "late")
    # Only now does an event about it arrive (delayed, or the recorder's later events).
    hear(real_rt, job.job_id, 33, 4, at=waiting.acquired_at + 1, sid=running["sid"])
    report = reconcile(real_rt)
    assert report.late_adopted == 1
    ended = real_rt.store.get(job.job_id)
    assert (ended.state, ended.sid, ended.sid_source) == (S.FAILED, running["sid"], "ncs")
    assert real_rt.store.due_at("stop", job.job_id) is not None
    recording.stop_step(real_rt, job.job_id)  # what the dispatcher sends
    assert live_recordings(dev, "late") == []

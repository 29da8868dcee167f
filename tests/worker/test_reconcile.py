"""Tier 1 on a real Redis and the emulator in a thread: one reconciler round at a time."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from contract.models import AcquireClientRequest
from tests.support.emulator import live_recordings
from tests.support.specs import small_spec
from tests.support.stack import make_settings
from tests.support.waiting import wait_for
from worker import recording
from worker import store as store_module
from worker.leases import LeaseKeeper
from worker.limiter import Priority
from worker.reconcile import reconcile
from worker.recording import DONE, Next, build_start_request
from worker.runtime import Runtime
from worker.states import JobState

# A start_at a day ahead: later than any test runs, well within CLOUDREC_MAX_START_AHEAD.
TOMORROW = datetime.fromtimestamp(time.time() + 86400, UTC).isoformat()

S = JobState


def _submit(rt: Runtime, cname: str, **spec) -> str:
    job, _ = recording.submit(rt, small_spec(cname, **spec))
    return job.job_id


def _recording(rt: Runtime, cname: str, **spec) -> str:
    job_id = _submit(rt, cname, **spec)
    recording.acquire_step(rt, job_id)
    recording.start_step(rt, job_id)
    wait_for(
        lambda: recording.watch_step(rt, job_id) and rt.store.get(job_id).state == S.RECORDING,
        10,
        0.2,
        "the recording to run",
    )
    return job_id


def _runtime(redis_url: str, base_url: str, **overrides) -> Runtime:
    return Runtime.build(make_settings(redis_url, base_url, **overrides))


def test_only_jobs_that_stopped_moving_are_sent_their_step_again(rt):
    stuck_queued = _submit(rt, "a")
    scheduled = _submit(rt, "b", start_at=TOMORROW)
    in_flight = _submit(rt, "c")
    recording.acquire_step(rt, in_flight)
    stuck_acquiring = _submit(rt, "d")
    recording.acquire_step(rt, stuck_acquiring)

    with LeaseKeeper(rt.redis, 600).hold("start", in_flight) as theirs:  # its start in flight
        assert theirs
        assert reconcile(rt).redrive == []  # everything is young: nothing is stuck yet
        report = reconcile(rt, now=time.time() + 120)
    assert sorted(report.redrive) == sorted(
        [(stuck_queued, Next("acquire")), (stuck_acquiring, Next("acquire"))]
    )
    assert scheduled not in dict(report.redrive) and in_flight not in dict(report.redrive)


def test_a_backlog_in_the_queue_makes_the_reconciler_patient(rt):
    queued = _submit(rt, "behind")
    later = time.time() + 120
    assert reconcile(rt, now=later, backlog=5000).redrive == []  # maybe just behind the others
    assert reconcile(rt, now=later).redrive == [(queued, Next("acquire"))]
    assert reconcile(rt, now=time.time() + 1200, backlog=5000).redrive == [
        (queued, Next("acquire"))  # ten times the patience: lost even in a backlog
    ]


@pytest.mark.parametrize("make", [_submit, _recording], ids=["queued", "recording"])
def test_a_missing_stop_deadline_is_put_back(rt, make):
    job_id = make(rt, "deadline")
    rt.store.unschedule("stop", job_id)
    report = reconcile(rt)
    assert report.deadlines_restored == 1
    assert rt.store.due_at("stop", job_id) == rt.store.get(job_id).stop_at


def test_a_round_builds_whole_records_only_of_jobs_not_plainly_recording(
    redis_url, emulator, monkeypatch
):
    """At 100,000 recording jobs, building every record every 30 s kept a core busy: a job
    recording before its deadline is looked at through a few fields. (No queries here: a
    query reads the record of the job it checks.)"""
    rt = _runtime(redis_url, emulator.base_url, reconcile_query_budget=0)
    try:
        recording_ids = [_recording(rt, f"plain{i}", duration=3600) for i in range(3)]
        overdue = _recording(rt, "late")
        rt.store.transition(overdue, {S.RECORDING}, None, stop_at=time.time() - 120)
        queued = _submit(rt, "waiting")
        built: list[str] = []
        record = store_module._record

        def counting(job_id, raw):  # type: ignore[no-untyped-def]
            built.append(job_id)
            return record(job_id, raw)

        monkeypatch.setattr(store_module, "_record", counting)
        report = reconcile(rt, now=time.time() + 120)
        assert sorted(built) == sorted([overdue, queued])
        assert (overdue, Next("stop")) in report.redrive
        assert (queued, Next("acquire")) in report.redrive
        assert not set(recording_ids) & set(dict(report.redrive))
    finally:
        rt.close()


def test_a_recording_far_past_its_deadline_is_sent_its_stop(rt):
    job_id = _recording(rt, "overdue")
    rt.store.transition(job_id, {S.RECORDING}, None, stop_at=time.time() - 120)
    assert (job_id, Next("stop")) in reconcile(rt).redrive


def test_queries_stay_within_the_budget_and_go_to_the_overdue_first(redis_url, emulator):
    rt = _runtime(redis_url, emulator.base_url, reconcile_query_budget=2)
    try:
        ids = [_recording(rt, f"q{i}") for i in range(3)]
        rt.store.transition(ids[2], {S.RECORDING}, None, stop_at=time.time() - 1)
        report = reconcile(rt)
        assert report.queried == 2
        checked = rt.store.last_checked(ids)
        assert checked[2] is not None  # the overdue one came first
        assert sum(c is not None for c in checked) == 2
        # Checked ones wait for the interval; the third gets its turn next round.
        report = reconcile(rt)
        assert report.queried == 1
        assert all(c is not None for c in rt.store.last_checked(ids))
    finally:
        rt.close()


def test_a_404_is_believed_only_once_it_outlasts_the_failover_window(rt, dev):
    job_id = _recording(rt, "ha")
    dev.set_faults({"notFoundSeconds": 60})
    reconcile(rt)
    job = rt.store.get(job_id)
    assert job.state == S.RECORDING and job.missing_since is not None
    dev.set_faults({})  # the failover ends: the next answer clears the suspicion
    reconcile(rt, now=job.missing_since + 2)  # probed again soon, not after the interval
    job = rt.store.get(job_id)
    assert job.state == S.RECORDING and job.missing_since is None

    dev.set_faults({"notFoundSeconds": 60})
    now = time.time() + 400  # due for its next regular check
    report = reconcile(rt, now=now)
    first = rt.store.get(job_id).missing_since
    for probe in (2, 4):  # three 404s, but all inside the window: not yet
        report = reconcile(rt, now=first + probe)
        assert rt.store.get(job_id).state == S.RECORDING
    report = reconcile(rt, now=first + 6)  # the fourth, past the 5 s window: gone
    assert report.idle_exits == 1 and (job_id, Next("stop")) in report.redrive
    assert rt.store.get(job_id).state == S.STOPPING  # stopped anyway, in case it is alive
    assert recording.stop_step(rt, job_id, now=first + 6.5) == DONE
    job = rt.store.get(job_id)
    assert job.state == S.IDLE_EXIT and job.error["code"] == 404
    assert job.files[0].fileName == f"{job.sid}_ha.m3u8"


def test_404s_from_two_failovers_in_a_row_are_not_taken_for_a_gone_recorder(rt, dev):
    job_id = _recording(rt, "twice")
    dev.set_faults({"notFoundSeconds": 60})
    now = time.time()
    reconcile(rt, now=now)
    reconcile(rt, now=now + 2)
    dev.set_faults({})  # between the two failovers the task answers
    reconcile(rt, now=now + 4)
    dev.set_faults({"notFoundSeconds": 60})
    reconcile(rt, now=now + 400)  # the next regular check falls into another failover
    job = rt.store.get(job_id)
    assert job.state == S.RECORDING
    assert (job.missing_count, job.missing_since) == (1, pytest.approx(now + 400))
    assert live_recordings(dev, "twice")


def test_a_recorder_that_left_by_itself_ends_idle_exit(rt, dev):
    job_id = _recording(rt, "gone", recordingConfig={"maxIdleTime": 5})
    wait_for(lambda: not live_recordings(dev, "gone"), 15, 0.2, "the idle exit")
    now = time.time() + 400
    for _ in range(8):  # status 8 while the task lingers, or 404s confirmed past the window
        for job_id_, nxt in reconcile(rt, now=now).redrive:
            assert (job_id_, nxt) == (job_id, Next("stop"))
            recording.stop_step(rt, job_id, now=now)
        if rt.store.get(job_id).terminal:
            break
        now += 2
    assert rt.store.get(job_id).state == S.IDLE_EXIT


def test_queries_back_off_while_the_limiter_says_wait(rt, redis_url, emulator):
    _recording(rt, "budget")
    slow = _runtime(redis_url, emulator.base_url, api_rate_limit=3)
    try:
        while slow.limiter.try_acquire(Priority.STOP) == 0.0:
            pass  # stops take the whole second
        report = reconcile(slow)
        assert report.budget_exhausted and report.queried == 0
    finally:
        slow.close()


def test_a_recording_no_job_holds_is_stopped_once_past_the_grace(redis_url, emulator, dev):
    rt = _runtime(redis_url, emulator.base_url, orphan_grace=2)
    try:
        resource = rt.client.acquire("orphan", "4242", AcquireClientRequest()).resourceId
        job_id = _submit(rt, "orphan")  # only for a valid start body
        request = build_start_request(rt, rt.store.get(job_id))
        rt.client.start(resource, "orphan", "4242", request)
        assert reconcile(rt).orphans_stopped == 0  # too young: its job may be recording it
        assert live_recordings(dev, "orphan")
        assert reconcile(rt, now=time.time() + 3).orphans_stopped == 1
        assert live_recordings(dev, "orphan") == []
    finally:
        rt.close()


def test_a_job_whose_start_answer_was_lost_adopts_its_recording(rt, dev):
    job_id = _submit(rt, "adopt")
    recording.acquire_step(rt, job_id)
    job = rt.store.get(job_id)
    rt.store.transition(job_id, {S.ACQUIRING}, S.STARTING)
    rt.client.start(job.resource_id, job.cname, job.uid, build_start_request(rt, job))
    report = reconcile(rt)
    assert report.adopted == 1
    assert (job_id, Next("watch")) in report.redrive
    assert rt.store.get(job_id).sid == live_recordings(dev, "adopt")[0]["sid"]

"""Tier 1 on a real Redis and the emulator in a thread: the recording steps keep their promises
(one recording per job, a started recording is always stopped, a 404 is only believed after the
failover window) when answers are lost, duplicated or late. The steps run directly, no Celery."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from contract.models import AcquireClientRequest
from tests.support.emulator import live_recordings, recordings_of
from tests.support.promises import epoch
from tests.support.specs import small_spec
from tests.support.stack import make_settings
from tests.support.waiting import wait_for
from worker import recording
from worker.errors import JobSpecError, TransportError
from worker.leases import LeaseKeeper
from worker.metrics import SID_UNKNOWN, STOP_LATENESS, read_counters
from worker.ncs import Envelope
from worker.recording import DONE, Next
from worker.runtime import Runtime
from worker.states import JobState
from worker.steps import Step

S = JobState


def _acquired(rt: Runtime, cname: str, **spec) -> str:
    job, _ = recording.submit(rt, small_spec(cname, **spec))
    assert recording.acquire_step(rt, job.job_id) == Next("start")
    return job.job_id


def _recording(rt: Runtime, cname: str, **spec) -> str:
    job_id = _acquired(rt, cname, **spec)
    assert recording.start_step(rt, job_id).step == "watch"

    def running():
        nxt = recording.watch_step(rt, job_id)
        return rt.store.get(job_id).state == S.RECORDING or (nxt == DONE and None)

    wait_for(running, 10, 0.2, "the recording to run")
    return job_id


def test_a_duplicate_start_while_one_is_in_flight_sends_nothing(rt, dev):
    job_id = _acquired(rt, "dup")
    other = LeaseKeeper(rt.redis, 30)
    with other.hold(Step.START, job_id) as theirs:  # another delivery is sending the start
        assert theirs
        assert recording.start_step(rt, job_id) == DONE
        assert recordings_of(dev, "dup") == []
    # its request ended without an answer: released
    assert recording.start_step(rt, job_id).step == "watch"
    assert len(recordings_of(dev, "dup")) == 1


def test_a_start_whose_answer_was_lost_recovers_its_sid_and_records_once(rt, dev):
    job_id = _acquired(rt, "lostsid")
    # The service starts the recording, but the answer comes after the client gave up.
    dev.set_faults(
        {"latency": [{"operations": ["start"], "seconds": 3, "when": "after", "count": 1}]}
    )
    with pytest.raises(TransportError):
        recording.start_step(rt, job_id)
    assert not rt.leases.held(Step.START, job_id)  # released: the retry may send it again
    assert recording.start_step(rt, job_id).step == "watch"  # 201/7, then the dev API
    started = recordings_of(dev, "lostsid")
    assert len(started) == 1
    assert rt.store.get(job_id).sid == started[0]["sid"]


def test_a_lost_sid_is_sought_never_closed_as_unstarted_then_ends_sid_unknown(
    redis_url, emulator, dev
):
    rt = Runtime.build(
        make_settings(redis_url, emulator.base_url, dev_api=False, sid_unknown_window=20)
    )
    try:
        job_id = _acquired(rt, "nosid")
        dev.set_faults(
            {"latency": [{"operations": ["start"], "seconds": 3, "when": "after", "count": 1}]}
        )
        with pytest.raises(TransportError):
            recording.start_step(rt, job_id)
        # 201/7 and no way to know the sid yet (no dev API, no NCS): keep looking.
        assert recording.start_step(rt, job_id) == Next("watch", delay=1.0)
        job = rt.store.get(job_id)
        assert job.state == S.STARTING and job.sid_wait_since is not None
        # The deadline does not close it as "never started": the stop keeps coming back.
        assert recording.stop_step(rt, job_id).step == "stop"
        assert rt.store.get(job_id).state == S.STARTING
        since = job.sid_wait_since
        # Now and then the start is repeated on the same resource (201/7: event 3 has the sid).
        assert recording.watch_step(rt, job_id, now=since + 6) == Next("acquire")
        assert recording.watch_step(rt, job_id, now=since + 7).step == "watch"
        # Past the window it ends with its own reason, counted for the alert.
        assert recording.watch_step(rt, job_id, now=since + 21) == DONE
        job = rt.store.get(job_id)
        assert (job.state, job.stop_reason) == (S.FAILED, "sid_unknown")
        assert job.error["kind"] == "SidUnknown"
        assert job.error["reason"].startswith("sid unknown: a recording may be running")
        assert rt.redis.hget(SID_UNKNOWN, "total") == b"1"
        assert len(recordings_of(dev, "nosid")) == 1  # still one recording, never a second
    finally:
        rt.close()


def test_a_lost_sid_is_adopted_from_ncs_events_without_the_dev_api(redis_url, emulator, dev):
    rt = Runtime.build(make_settings(redis_url, emulator.base_url, dev_api=False))
    try:
        job_id = _acquired(rt, "ncssid")
        dev.set_faults(
            {"latency": [{"operations": ["start"], "seconds": 3, "when": "after", "count": 1}]}
        )
        with pytest.raises(TransportError):
            recording.start_step(rt, job_id)
        (started,) = recordings_of(dev, "ncssid")
        # What NCS would have posted (the HTTP path is tested in test_ncs and the e2e tests).
        for event in dev.events(started["sid"]):
            rt.ncs.record(Envelope.parse(event))
        assert recording.start_step(rt, job_id).step == "watch"
        job = rt.store.get(job_id)
        assert (job.sid, job.sid_source) == (started["sid"], "ncs")
        assert rt.ncs.get(job.sid).job_id == job_id  # claimed: not "unclaimed" any more
    finally:
        rt.close()


def test_a_stop_inside_a_failover_window_is_retried_not_given_up(rt, dev):
    job_id = _recording(rt, "failover")
    dev.set_faults({"notFoundSeconds": 60})  # every task answers 404, as in an HA move
    nxt = recording.stop_step(rt, job_id)
    assert nxt.step == "stop" and nxt.delay > 0
    job = rt.store.get(job_id)
    assert job.state == S.STOPPING and job.missing_since is not None
    assert live_recordings(dev, "failover")  # it is still running: giving up would orphan it
    # Past the window in time, but on the second 404 only: not proof enough yet.
    nxt = recording.stop_step(rt, job_id, now=job.missing_since + 6)
    assert nxt.step == "stop"
    dev.set_faults({})  # the failover is over
    assert recording.stop_step(rt, job_id) == DONE
    job = rt.store.get(job_id)
    assert job.state == S.EMPTY  # nobody published in this channel
    assert live_recordings(dev, "failover") == []


def test_a_recorder_that_left_by_itself_ends_idle_exit_once_the_window_has_passed(rt, dev):
    job_id = _recording(rt, "leftalone", recordingConfig={"maxIdleTime": 5})
    wait_for(lambda: not live_recordings(dev, "leftalone"), 15, 0.2, "the idle exit")
    now = time.time() + 2  # past the emulator's linger: the task answers 404 from now on
    for _ in range(10):  # 49 while the task lingers, then 404s until the window has passed
        nxt = recording.stop_step(rt, job_id, now=now)
        if nxt == DONE:
            break
        assert rt.store.get(job_id).state == S.STOPPING
        now += 2
        time.sleep(0.2)
    job = rt.store.get(job_id)
    assert job.state == S.IDLE_EXIT
    assert job.missing_count >= 3 and now - job.missing_since >= 5
    assert job.error["code"] == 404
    assert job.files[0].fileName == f"{job.sid}_leftalone.m3u8"


def test_a_stop_whose_answer_was_lost_ends_stopped_not_idle_exit(rt, dev):
    job_id = _recording(rt, "lostanswer")
    dev.set_faults(
        {"latency": [{"operations": ["stop"], "seconds": 6, "when": "after", "count": 1}]}
    )
    with pytest.raises(TransportError):
        recording.stop_step(rt, job_id)
    assert rt.store.get(job_id).stop_uncertain
    assert live_recordings(dev, "lostanswer") == []  # it did stop
    now = time.time()
    for _ in range(20):  # 49 while the task lingers, then 404 confirmed past the window
        nxt = recording.stop_step(rt, job_id, now=now)
        if nxt == DONE:
            break
        now += max(nxt.delay, 1.0)
        time.sleep(0.2)
    job = rt.store.get(job_id)
    assert job.state == S.COMPLETED, job
    assert job.uploading_status == "unknown"
    assert len(recordings_of(dev, "lostanswer")) == 1


def test_a_start_never_confirmed_is_stopped_not_just_failed(rt, dev):
    job_id = _acquired(rt, "unconfirmed")
    dev.set_faults({"startNotFoundSeconds": 3600})  # the task never shows up in a query
    assert recording.start_step(rt, job_id).step == "watch"
    job = rt.store.get(job_id)
    assert recording.watch_step(rt, job_id).step == "watch"  # early 404: keep asking
    nxt = recording.watch_step(rt, job_id, now=job.started_at + 21)
    assert nxt == Next("stop")
    job = rt.store.get(job_id)
    assert job.state == S.STOPPING and job.stop_reason == "start_timeout"
    dev.set_faults({})
    assert recording.stop_step(rt, job_id) == DONE
    assert rt.store.get(job_id).state == S.FAILED
    assert live_recordings(dev, "unconfirmed") == []


def test_a_cancel_that_races_a_start_still_stops_the_recording(rt, dev):
    job_id = _acquired(rt, "race")
    dev.set_faults(
        {"latency": [{"operations": ["start"], "seconds": 1.0, "when": "after", "count": 1}]}
    )
    result: list[Next] = []
    starter = threading.Thread(target=lambda: result.append(recording.start_step(rt, job_id)))
    starter.start()
    wait_for(lambda: live_recordings(dev, "race"), 5, 0.05, "the start to reach the service")
    recording.request_stop(rt, job_id, "cancel")
    assert recording.stop_step(rt, job_id) == DONE  # no sid yet: cancelled without a call
    assert rt.store.get(job_id).state == S.CANCELLED
    starter.join(10)
    assert result == [Next("stop")]  # the answer arrived after the cancel
    job = rt.store.get(job_id)
    assert job.sid and job.state == S.CANCELLED
    # The stop is due in the store, not only in a message: a crash here cannot lose it.
    assert rt.store.due_at("stop", job_id) is not None
    assert recording.stop_step(rt, job_id) == DONE
    assert live_recordings(dev, "race") == []
    assert rt.store.due_at("stop", job_id) is None
    assert rt.store.get(job_id).stop_sent_at is not None


def test_a_stop_delivered_ahead_does_its_work_first_and_calls_at_its_time(rt, dev):
    """tasks.recording.STOP_PREPARE_LEAD: the step is delivered before its second; the job is
    stopping before then, the call reaches the service at that second, never before."""
    job_id = _recording(rt, "ahead")
    call_at = time.time() + 0.8
    assert recording.stop_step(rt, job_id, call_at=call_at) == DONE
    job = rt.store.get(job_id)
    assert job.terminal
    stopping = next(h.at for h in job.history if h.state == S.STOPPING)
    assert stopping < call_at - 0.3  # the Redis work was done ahead
    (stopped,) = [epoch(r["stoppedAt"]) for r in recordings_of(dev, "ahead")]
    assert stopped is not None and call_at <= stopped < call_at + 0.5
    assert job.stop_sent_at == pytest.approx(call_at)


def test_a_deadline_stop_counts_its_lateness(rt, redis_client):
    job_id = _recording(rt, "late")
    rt.store.transition(job_id, {S.RECORDING}, None, stop_at=time.time() - 0.5)
    assert recording.stop_step(rt, job_id) == DONE
    fields = {k.decode(): float(v) for k, v in redis_client.hgetall(STOP_LATENESS).items()}
    assert fields["count"] == 1
    assert 0.5 <= fields["sum"] < 5
    # One field for its bucket; the exporter's read adds them up to cumulative buckets.
    assert sum(n for name, n in fields.items() if name.startswith("in=")) == 1
    buckets = dict(read_counters(redis_client).lateness["default"].buckets)
    assert buckets["0.25"] == 0 and buckets["5.0"] == 1


def test_a_stop_renews_the_deadline_lease_while_it_works(rt, dev):
    job_id = _recording(rt, "lease")
    now = time.time()
    rt.store.transition(job_id, {S.RECORDING}, None, stop_at=now)
    dev.set_faults({"errors": [{"operations": ["stop"], "status": 504, "code": 62, "count": 1}]})
    with pytest.raises(Exception, match="HTTP 504"):
        recording.stop_step(rt, job_id, now=now)
    # The deadline is still in the due-queue, leased beyond this attempt: never lost.
    due = rt.store.due_at("stop", job_id)
    assert due is not None and due >= now + rt.settings.stop_lease - 1


def test_a_task_conflict_acquires_again_with_another_recorder_uid(rt, dev):
    job_id = _acquired(rt, "conflict")
    job = rt.store.get(job_id)
    first_uid = job.uid
    # Someone else's recorder already records this channel with the same uid.
    other = rt.client.acquire("conflict", job.uid, AcquireClientRequest()).resourceId
    rt.client.start(other, "conflict", job.uid, recording.build_start_request(rt, job))
    assert recording.start_step(rt, job_id) == Next("acquire")
    job = rt.store.get(job_id)
    assert job.state == S.ACQUIRING and job.resource_id is None
    assert job.uid != first_uid and job.uid_attempt == 1
    assert recording.acquire_step(rt, job_id) == Next("start")
    assert recording.start_step(rt, job_id).step == "watch"
    uids = sorted(r["uid"] for r in recordings_of(dev, "conflict"))
    assert uids == sorted([first_uid, job.uid])  # the other one, and ours under its new uid


@pytest.mark.parametrize(("status", "code"), [(400, 433), (400, 432), (400, 1001), (500, 502)])
def test_an_unusable_resource_is_acquired_again(rt, dev, status, code):
    job_id = _acquired(rt, f"reacq{code}")
    first = rt.store.get(job_id).resource_id
    dev.set_faults(
        {"errors": [{"operations": ["start"], "status": status, "code": code, "count": 1}]}
    )
    assert recording.start_step(rt, job_id) == Next("acquire")
    assert rt.store.get(job_id).state == S.ACQUIRING
    assert recording.acquire_step(rt, job_id) == Next("start")
    assert rt.store.get(job_id).resource_id not in (None, first)
    assert recording.start_step(rt, job_id).step == "watch"
    assert len(recordings_of(dev, f"reacq{code}")) == 1


def test_a_permanent_error_fails_the_job_at_once_with_code_and_reason(rt, dev):
    job_id = _acquired(rt, "permanent")
    dev.set_faults(
        {
            "errors": [
                {
                    "operations": ["start"],
                    "status": 400,
                    "code": 2,
                    "reason": "clientRequest.token: invalid",
                    "count": 1,
                }
            ]
        }
    )
    assert recording.start_step(rt, job_id) == DONE
    job = rt.store.get(job_id)
    assert job.state == S.FAILED
    assert (job.error["status"], job.error["code"]) == (400, 2)
    assert job.error["reason"] == "clientRequest.token: invalid"
    assert recordings_of(dev, "permanent") == []


def test_giving_up_on_a_start_without_an_answer_stops_it_once_its_sid_is_known(
    redis_url, emulator, dev
):
    from worker.errors import RetryableApiError

    rt = Runtime.build(make_settings(redis_url, emulator.base_url, dev_api=False))
    try:
        answered = _acquired(rt, "answered")
        rt.store.transition(answered, {S.ACQUIRING}, S.STARTING)
        # The last start was answered (500): a started resource would have said 201/7.
        error = RetryableApiError("start", status=500, code=62, reason="request timeout")
        assert recording.fail_job(rt, answered, error) == DONE
        assert rt.store.get(answered).state == S.FAILED

        job_id = _acquired(rt, "unanswered")
        dev.set_faults(
            {"latency": [{"operations": ["start"], "seconds": 3, "when": "after", "count": 1}]}
        )
        with pytest.raises(TransportError) as lost:
            recording.start_step(rt, job_id)
        # Its retries ran out on that timeout: not "failed, never started", but stopped.
        assert recording.fail_job(rt, job_id, lost.value) == Next("stop")
        job = rt.store.get(job_id)
        assert (job.state, job.stop_reason) == (S.STARTING, "error")
        assert rt.store.due_at("stop", job_id) is not None
        (started,) = recordings_of(dev, "unanswered")
        for event in dev.events(started["sid"]):
            rt.ncs.record(Envelope.parse(event))  # NCS tells the sid
        assert recording.stop_step(rt, job_id) == DONE
        job = rt.store.get(job_id)
        assert (job.state, job.sid) == (S.FAILED, started["sid"])
        assert job.error["status"] is None  # the start's own error, kept
        assert live_recordings(dev, "unanswered") == []
    finally:
        rt.close()


def test_a_conflict_after_an_unanswered_start_is_taken_for_that_start_not_a_new_uid(rt, dev):
    job_id = _acquired(rt, "conflict")
    uid = rt.store.get(job_id).uid
    dev.set_faults(
        {"latency": [{"operations": ["start"], "seconds": 3, "when": "after", "count": 1}]}
    )
    with pytest.raises(TransportError):
        recording.start_step(rt, job_id)
    # The repeat answers 53 "task conflict": the recording holding this channel and uid is
    # most likely the unanswered one. A new uid would start a second recording.
    dev.set_faults({"errors": [{"operations": ["start"], "status": 400, "code": 53, "count": 1}]})
    assert recording.start_step(rt, job_id).step == "watch"
    job = rt.store.get(job_id)
    assert (job.state, job.uid) == (S.STARTING, uid)
    assert job.sid is not None  # found (this runtime may use the dev API; NCS in real mode)
    assert len(recordings_of(dev, "conflict")) == 1


def test_a_submit_writes_its_job_and_deadline_together_and_returns_it_when_sent_again(rt):
    now = time.time()
    spec = _ending_at("again", "again-1", now + 30)
    job, created = recording.submit(rt, spec, now=now)
    assert created and rt.store.due_at("stop", "again-1") == job.stop_at
    # The same spec again, once its stop_at is past (the caller's retry of a lost answer):
    # still its job, not an error, and nothing written twice.
    again, created_again = recording.submit(rt, spec, now=now + 60)
    assert not created_again and again.job_id == "again-1" and again.created_at == job.created_at
    # A new job with such a spec is refused, naming the field.
    with pytest.raises(JobSpecError, match="stop_at"):
        recording.submit(rt, _ending_at("late", "late-1", now), now=now + 60)
    assert rt.store.find("late-1") is None and rt.store.due_at("stop", "late-1") is None


def _ending_at(cname: str, job_id: str, stop_at: float) -> dict[str, object]:
    spec = small_spec(
        cname, job_id=job_id, stop_at=datetime.fromtimestamp(stop_at, UTC).isoformat()
    )
    del spec["duration"]
    return spec

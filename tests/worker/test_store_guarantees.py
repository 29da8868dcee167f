"""Tier 1 on a real Redis: what a terminal transition does atomically, the due-queue's lookahead
and leases, the start claim, and the structured transition log line."""

from __future__ import annotations

import logging
import time

import pytest

from worker.states import JobState
from worker.store import CHECKED_KEY, DUE_KEY, JobRecord, JobStore, deliveries_key, job_key

S = JobState


def _record(job_id: str = "j1", state: JobState = S.RECORDING, **fields) -> JobRecord:
    values = dict(
        job_id=job_id,
        state=state,
        cname="class42",
        uid="7",
        spec={"cname": "class42"},
        created_at=time.time(),
        stop_at=time.time() + 60,
    )
    values.update(fields)
    return JobRecord(**values)


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client)


def test_a_terminal_transition_settles_the_due_queue_and_bookkeeping(store, redis_client):
    store.create(
        _record(sid="s1", resource_id="r1", has_callback=True, stop_sent_at=1.0, state=S.STOPPING)
    )
    store.schedule("stop", "j1", time.time() + 30)
    store.schedule("start", "j1", time.time() + 30)
    store.count_delivery("j1", "stop:task-1")
    store.mark_checked("j1", time.time())
    store.transition("j1", {S.STOPPING}, S.COMPLETED)
    assert store.due_at("stop", "j1") is None and store.due_at("start", "j1") is None
    assert store.due_at("callback", "j1") is not None  # the callback is due at once
    assert not redis_client.exists(deliveries_key("j1"))
    assert redis_client.zscore(CHECKED_KEY, "j1") is None


def test_a_job_failing_while_holding_an_unstopped_sid_keeps_a_stop_due(store):
    store.create(_record(state=S.STARTING, sid="s1", resource_id="r1"))
    store.schedule("stop", "j1", time.time() + 3600)
    before = time.time()
    store.transition("j1", {S.STARTING}, S.FAILED, error={"reason": "x"})
    due = store.due_at("stop", "j1")
    assert due is not None and before - 1 <= due <= time.time() + 1  # due now, not at 1 h
    assert store.due_at("callback", "j1") is None  # this job has no callback


def test_a_job_ending_without_a_sid_drops_its_deadline(store):
    store.create(_record(state=S.QUEUED))
    store.schedule("stop", "j1", time.time() + 60)
    store.transition("j1", {S.QUEUED}, S.CANCELLED)
    assert store.due_at("stop", "j1") is None


def test_claims_look_ahead_and_lease_from_the_due_time(store, redis_client):
    now = time.time()
    store.schedule("stop", "soon", now + 1.0)
    store.schedule("stop", "later", now + 5.0)
    entries = store.claim_due_entries(now, lease=10, lookahead=1.5)
    assert [(e.action, e.job_id) for e in entries] == [("stop", "soon")]
    assert entries[0].due == pytest.approx(now + 1.0)
    assert redis_client.zscore(DUE_KEY, "stop:soon") == pytest.approx(now + 11.0)
    assert store.claim_due_entries(now, lease=10, lookahead=1.5) == []


def test_extending_a_lease_never_creates_an_entry(store):
    assert not store.extend_due("stop", "nobody", time.time() + 10)
    assert store.due_at("stop", "nobody") is None
    store.schedule("stop", "j1", 5.0)
    assert store.extend_due("stop", "j1", 50.0)
    assert store.due_at("stop", "j1") == 50.0


def test_a_transition_logs_job_cname_sid_states_and_api_code(store, caplog):
    store.create(_record(state=S.STOPPING, sid="abc123"))
    with caplog.at_level(logging.INFO, logger="cloudrec.store"):
        store.transition("j1", {S.STOPPING}, S.FAILED, error={"code": 435, "reason": "r"})
    line = next(r for r in caplog.records if r.name == "cloudrec.store")
    assert (line.job_id, line.cname, line.sid) == ("j1", "class42", "abc123")
    assert (line.from_state, line.to_state, line.api_code) == ("stopping", "failed", 435)


def test_defaults_are_not_stored_and_the_record_is_one_small_string(store, redis_client):
    from worker import jobcodec

    store.create(_record(state=S.QUEUED))
    store.transition("j1", {S.QUEUED}, S.ACQUIRING, resource_id="r" * 224)
    raw = redis_client.get(job_key("j1"))  # one string: no second key
    fields = {jobcodec.NAMES[c] for c in jobcodec.parse(raw)}
    assert fields == {
        "state",
        "cname",
        "uid",
        "created_at",
        "stop_at",
        "spec",
        "history",
        "resource_id",
    }
    # The job id is the key; the spec's cname is the record's, stored once.
    assert redis_client.keys("*j1*") == [job_key("j1").encode()]
    assert len(raw) < 300  # 224 characters of resourceId are 168 bytes of base64
    job = store.get("j1")
    assert job.resource_id == "r" * 224 and [h.state for h in job.history] == [S.ACQUIRING]
    assert job.files == [] and job.sid is None and not job.has_callback
    assert job.spec == {"cname": "class42"}


def test_each_action_can_have_its_own_lease(store, redis_client):
    now = time.time()
    store.schedule("stop", "a", now - 1)
    store.schedule("start", "b", now - 1)
    store.claim_due_entries(now, lease=15, leases={"start": 300})
    assert redis_client.zscore(DUE_KEY, "stop:a") == pytest.approx(now + 15)
    assert redis_client.zscore(DUE_KEY, "start:b") == pytest.approx(now + 300)


def test_a_missing_deadline_is_restored_only_for_a_job_still_active(store):
    store.create(_record("live", state=S.RECORDING))
    store.create(_record("ended", state=S.STOPPING))
    store.transition("ended", {S.STOPPING}, S.COMPLETED)
    assert store.restore_deadline("live", 123.0)
    assert store.due_at("stop", "live") == 123.0
    assert not store.restore_deadline("live", 456.0)  # present: left as it is
    assert store.due_at("stop", "live") == 123.0
    assert not store.restore_deadline("ended", 123.0)
    assert store.due_at("stop", "ended") is None


def test_the_codecs_defaults_are_the_records():
    from worker import jobcodec

    required = {n for n, f in JobRecord.model_fields.items() if f.is_required()}
    assert set(jobcodec.FIELDS) == set(JobRecord.model_fields) - {"job_id"}
    for name, info in JobRecord.model_fields.items():
        if name not in required:
            assert jobcodec.DEFAULTS[name] == info.get_default(call_default_factory=True), name
    assert required - {"job_id"} == set(jobcodec.FIELDS) - set(jobcodec.DEFAULTS)

"""Tier 1 on a real Redis: the job store's compare-and-set transitions and the due-queue."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.support.status import STATUS_KEYS
from worker.errors import JobNotFound
from worker.states import IllegalTransition, JobState
from worker.store import JobRecord, JobStore, job_key

S = JobState


def _record(job_id: str = "j1", state: JobState = S.QUEUED) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        state=state,
        cname="c",
        uid="1",
        spec={"cname": "c"},
        created_at=time.time(),
        stop_at=time.time() + 60,
    )


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client)


def test_create_is_idempotent_on_job_id(store):
    first, created = store.create(_record())
    again, created_again = store.create(_record().model_copy(update={"cname": "other"}))
    assert created and not created_again
    assert again.cname == "c" == first.cname
    assert store.ids() == ["j1"]
    assert store.ids(S.QUEUED) == ["j1"]


def test_transition_moves_state_history_and_index(store):
    store.create(_record())
    done, state = store.transition("j1", {S.QUEUED}, S.ACQUIRING, resource_id="r1")
    assert (done, state) == (True, S.ACQUIRING)
    job = store.get("j1")
    assert job.state == S.ACQUIRING and job.resource_id == "r1"
    assert [h.state for h in job.history] == [S.ACQUIRING]
    assert store.ids(S.QUEUED) == [] and store.ids(S.ACQUIRING) == ["j1"]


def test_losing_the_race_is_not_an_error_and_changes_nothing(store):
    store.create(_record())
    store.transition("j1", {S.QUEUED}, S.ACQUIRING)
    done, state = store.transition("j1", {S.QUEUED}, S.CANCELLED, stop_reason="cancel")
    assert (done, state) == (False, S.ACQUIRING)
    assert store.get("j1").stop_reason is None


def test_only_one_of_many_concurrent_transitions_wins(store):
    store.create(_record())
    results = []

    def attempt():
        results.append(store.transition("j1", {S.QUEUED}, S.ACQUIRING)[0])

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert len(store.get("j1").history) == 1


def test_illegal_transition_raises(store):
    store.create(_record())
    with pytest.raises(IllegalTransition):
        store.transition("j1", {S.QUEUED}, S.COMPLETED)


def test_terminal_state_leaves_the_active_index_and_the_due_queue(store, redis_client):
    store.create(_record(state=S.STOPPING))
    store.schedule("stop", "j1", time.time())
    store.transition("j1", {S.STOPPING}, S.COMPLETED)
    assert store.count_in(S.STOPPING) == 0
    assert store.due_at("stop", "j1") is None
    assert redis_client.ttl(job_key("j1")) > 0  # kept for a while, not forever
    assert store.ids(S.COMPLETED) == ["j1"]


def test_unknown_job(store):
    with pytest.raises(JobNotFound):
        store.get("nope")
    with pytest.raises(JobNotFound):
        store.transition("nope", {S.QUEUED}, S.ACQUIRING)


def test_claim_due_leases_entries_instead_of_dropping_them(store):
    now = time.time()
    store.schedule("stop", "a", now - 1)
    store.schedule("stop", "b", now + 100)
    assert store.claim_due(now, lease=30) == [("stop", "a")]
    assert store.claim_due(now, lease=30) == []  # leased
    assert store.claim_due(now + 31, lease=30) == [("stop", "a")]  # came back: never lost
    store.unschedule("stop", "a")
    assert store.claim_due(now + 200, lease=30) == [("stop", "b")]


def test_status_json_has_the_fixed_fields(store):
    store.create(_record())
    store.transition("j1", {S.QUEUED}, S.ACQUIRING)
    out = store.get("j1").status_json()
    assert set(out) >= STATUS_KEYS
    assert out["state"] == "acquiring"
    assert out["history"][0]["state"] == "acquiring"
    assert out["history"][0]["at"].endswith("Z")


# -- retention and listing ----------------------------------------------------------------------
def _end(store: JobStore, job_id: str) -> None:
    store.transition(job_id, [S.QUEUED], S.CANCELLED)


def test_an_ended_jobs_index_entry_leaves_with_its_record(redis_client):
    store = JobStore(redis_client, retention=1)
    for job_id in ("old", "live"):
        store.create(_record(job_id))
    _end(store, "old")
    assert redis_client.ttl(job_key("old")) == 1 and redis_client.ttl(job_key("live")) == -1
    assert store.ids() == ["live", "old"]
    time.sleep(1.2)  # past the retention: Redis expired the record
    assert not redis_client.exists(job_key("old"))
    assert store.purge_expired() == 1
    assert store.ids() == ["live"]
    assert redis_client.zcard("cloudrec:jobs") == 0  # "live" is active: its state set lists it
    assert redis_client.zcard("cloudrec:ended") == 0
    assert store.purge_expired(time.time() + 10**6) == 0  # an active job is never purged


def test_each_create_purges_expired_entries(redis_client):
    store = JobStore(redis_client, retention=1)
    for i in range(5):
        store.create(_record(f"e{i}"))
        _end(store, f"e{i}")
    time.sleep(1.2)
    store.create(_record("new"))  # no listing, no purge call: the create drains them
    assert redis_client.zcard("cloudrec:jobs") == 0
    assert redis_client.zcard("cloudrec:ended") == 0


def test_an_id_used_again_after_expiry_keeps_its_new_entry(redis_client):
    store = JobStore(redis_client, retention=1)
    store.create(_record("again"))
    _end(store, "again")
    time.sleep(1.2)
    store.create(_record("again"))  # the old record expired: a new job with the same id
    assert store.purge_expired(time.time() + 0.5) == 0
    assert store.ids() == ["again"]


def test_only_ended_jobs_have_an_index_entry_scored_by_their_creation(redis_client):
    """An active job costs no entry in ``jobs`` (its state set lists it); the transition that
    ends it adds one, scored by when the job was created, so listings keep their order."""
    store = JobStore(redis_client)
    record = _record("ends")
    store.create(record)
    store.create(_record("active"))
    assert redis_client.zcard("cloudrec:jobs") == 0
    _end(store, "ends")
    assert redis_client.zrange("cloudrec:jobs", 0, -1, withscores=True) == [
        (b"ends", pytest.approx(record.created_at, abs=1e-6))
    ]
    store.create(_record("born-ended", S.CANCELLED))  # stored ended: indexed at once
    assert redis_client.zscore("cloudrec:jobs", "born-ended") is not None


def test_listing_every_job_merges_active_and_ended_newest_first(redis_client, monkeypatch):
    monkeypatch.setattr("worker.store.LIST_CHUNK", 2)  # index pages that cross round trips
    store = JobStore(redis_client)
    now = time.time()
    for i in range(8):
        store.create(_record(f"j{i}").model_copy(update={"created_at": now - 100 + i}))
        if i % 3 == 0:
            _end(store, f"j{i}")
    # An active job indexed the way versions before session 8 indexed every job.
    store.create(_record("old-active").model_copy(update={"created_at": now - 50.5}))
    redis_client.zadd("cloudrec:jobs", {"old-active": now - 50.5})
    newest_first = ["old-active", "j7", "j6", "j5", "j4", "j3", "j2", "j1", "j0"]
    assert store.ids(limit=None) == newest_first
    assert store.ids(limit=3, offset=2) == newest_first[2:5]
    assert store.ids(S.CANCELLED, limit=None) == ["j6", "j3", "j0"]
    assert store.ids(S.QUEUED, limit=None) == ["old-active", "j7", "j5", "j4", "j2", "j1"]


def test_a_listing_drops_entries_whose_record_is_gone(store, redis_client):
    store.create(_record("kept"))
    redis_client.zadd("cloudrec:jobs", {"vanished": time.time()})  # a record gone, no `ended`
    assert [j.job_id for j in store.listed_records(store.ids())] == ["kept"]
    assert store.ids() == ["kept"]


def test_listing_pages_newest_first_by_state(store, monkeypatch):
    monkeypatch.setattr("worker.store.LIST_CHUNK", 5)  # pages that cross round trips
    now = time.time()
    for i in range(12):
        record = _record(f"j{i:02d}").model_copy(update={"created_at": now + i})
        store.create(record)
        if i % 3 == 0:
            _end(store, f"j{i:02d}")
    newest = [f"j{i:02d}" for i in reversed(range(12))]
    assert store.ids(limit=None) == newest
    assert store.ids(limit=4, offset=2) == newest[2:6]
    assert store.ids(offset=20) == []
    cancelled = [i for i in newest if int(i[1:]) % 3 == 0]
    queued = [i for i in newest if i not in cancelled]
    assert store.ids(S.CANCELLED, limit=None) == cancelled
    assert store.ids(S.CANCELLED, limit=2, offset=1) == cancelled[1:3]
    assert store.ids(S.QUEUED, limit=3, offset=1) == queued[1:4]
    active = [i for chunk in store.iter_ids(active=True) for i in chunk]
    assert active == queued


def test_ended_jobs_are_counted_by_the_hour_for_the_exporter(store, redis_client):
    from worker.exporter import read_job_facts
    from worker.keys import ENDED_COUNT_HOUR, ended_count_key

    for job_id in ("e1", "e2", "e3"):
        store.create(_record(job_id))
    store.create(_record("e4").model_copy(update={"app": "school"}))
    store.transition("e1", {S.QUEUED}, S.CANCELLED, stop_reason="cancel")
    store.transition("e2", {S.QUEUED}, S.FAILED, error={"reason": "x"})
    store.transition("e3", {S.QUEUED}, S.CANCELLED, stop_reason="cancel")
    store.transition("e3", {S.QUEUED, S.CANCELLED}, S.CANCELLED)  # no move: not counted again
    store.transition("e4", {S.QUEUED}, S.CANCELLED, stop_reason="cancel")
    hour = int(time.time()) // ENDED_COUNT_HOUR
    counts = redis_client.hgetall(ended_count_key(hour))
    # By state, and by state and app (the default app is not stored in a record: counted as it).
    assert counts == {
        b"cancelled": b"3",
        b"failed": b"1",
        b"cancelled|default": b"2",
        b"cancelled|school": b"1",
        b"failed|default": b"1",
    }
    assert 0 < redis_client.ttl(ended_count_key(hour)) <= 26 * 3600
    facts = read_job_facts(redis_client, time.time())
    assert (facts.terminal["cancelled"], facts.terminal["failed"]) == (3, 1)
    assert facts.terminal_by_app == {
        ("cancelled", "default"): 2,
        ("cancelled", "school"): 1,
        ("failed", "default"): 1,
    }
    # An hour more than the window ago is not counted; the scrape reads no job record for it.
    redis_client.hset(ended_count_key(hour - 30), "failed", 5)
    assert read_job_facts(redis_client, time.time()).terminal["failed"] == 1


def test_log_fields_are_the_jobs_cname_and_sid(store):
    store.create(_record("lf"))
    assert store.log_fields("lf") == {"cname": "c", "sid": None}
    store.transition("lf", {S.QUEUED}, None, sid="s-1")
    assert store.log_fields("lf") == {"cname": "c", "sid": "s-1"}
    assert store.log_fields("nope") == {}


def test_a_task_that_read_its_job_does_not_look_its_log_fields_up(store):
    """A step reads its job anyway: the store offers the cname and sid to the task's log
    context, so a line without them costs no second read, and names the latest sid read."""
    import logging

    from worker.logs import ContextFilter, DeferredJobFields, _deferred

    store.create(_record("lf2"))
    store.create(_record("other"))
    reads: list[str] = []

    def lookup(job_id: str) -> dict[str, str | None]:
        reads.append(job_id)
        return {"cname": "looked-up", "sid": None}

    def line() -> logging.LogRecord:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "a line", None, None)
        ContextFilter().filter(record)
        return record

    token = _deferred.set(DeferredJobFields(lookup, "lf2"))
    try:
        store.get("lf2")
        store.get("other")  # another job's read tells this task nothing
        first = line()
        assert (first.cname, getattr(first, "sid", None)) == ("c", None)  # type: ignore[attr-defined]
        store.transition("lf2", {S.QUEUED}, None, sid="s-2")
        store.get("lf2")
        later = line()
        assert (later.cname, later.sid) == ("c", "s-2")  # type: ignore[attr-defined]
        assert reads == []
    finally:
        _deferred.reset(token)


def test_history_is_stored_compact_and_old_entries_still_read(store, redis_client):
    from worker import jobcodec
    from worker.keys import data_key

    store.create(_record("h1"))
    store.transition("h1", {S.QUEUED}, S.ACQUIRING)
    history = jobcodec.parse(redis_client.get(job_key("h1")))["h"]
    assert len(history) == 7  # the state code in upper case and 6 bytes of milliseconds
    ((state, at),) = jobcodec.decode_value("history", history)
    assert state == "acquiring" and at == round(at, 3)
    # A record two versions before this one wrote: the old layout, history entries as objects.
    redis_client.delete(job_key("h1"))
    old = {"state": '"acquiring"', "cname": '"c"', "uid": '"1"', "created_at": "1", "stop_at": "2"}
    redis_client.hset(job_key("h1"), mapping=old)
    blob = {"spec": "{}", "history": json.dumps([{"state": "acquiring", "at": 1.5}])}
    redis_client.set(data_key("h1"), json.dumps(blob))
    store.transition("h1", {S.ACQUIRING}, S.STARTING)
    history = store.get("h1").history
    assert [(h.state, h.at) for h in history[:1]] == [(S.ACQUIRING, 1.5)]
    assert history[1].state == S.STARTING

"""Tier 1 on a real Redis: the job record's stored form (one string per job, worker.jobcodec),
and records the previous version wrote (a ``job:<id>`` hash and a ``jobdata:<id>`` string)
read and driven to the end by this one."""

from __future__ import annotations

import json
import time

import pytest

from worker import jobcodec
from worker.keys import DUE_KEY, JOBS_KEY, data_key, job_key, state_key
from worker.states import JobState
from worker.store import JobRecord, JobStore, peek

S = JobState
RESOURCE_ID = "5dUsBcwOhW3eCx7jvWWgcbep8Musm4rfPllWJaW9LhEqTAnuGcLNFGD3-8MOAGJnM_KcMY_fSUQbYw2t" * 2
SID = "3d66be151affbb3fc3e44c5aa78ef014"


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client)


def _old_layout(redis_client, job_id: str, created_at: float, stop_at: float, **fields) -> None:
    """What the previous version's create wrote, command by command: the small fields as JSON
    texts in the hash, the big ones as a JSON object of JSON texts, and the indexes."""
    small = {"state": "queued", "cname": "class42", "uid": "7", "created_at": created_at}
    small |= {"stop_at": stop_at, "has_callback": True, **fields}
    spec = {"cname": "class42", "labels": {"course": "math"}, "stop_at": "2030-01-01T00:00:00Z"}
    redis_client.hset(job_key(job_id), mapping={k: json.dumps(v) for k, v in small.items()})
    blob = {"spec": json.dumps(spec, separators=(",", ":"))}
    redis_client.set(data_key(job_id), json.dumps(blob, separators=(",", ":")))
    redis_client.zadd(JOBS_KEY, {job_id: created_at})
    redis_client.sadd(state_key("queued"), job_id)
    redis_client.zadd(DUE_KEY, {f"stop:{job_id}": stop_at})


def test_a_record_of_the_old_layout_reads_and_goes_to_the_end(store, redis_client):
    now = time.time()
    _old_layout(redis_client, "old1", now, now + 600, stop_early_max=5)
    before = store.get("old1")
    assert (before.state, before.cname, before.stop_at, before.stop_early_max) == (
        S.QUEUED,
        "class42",
        now + 600,
        5,
    )
    assert before.spec["labels"] == {"course": "math"} and before.has_callback
    # Reads leave it as it is; every reader of a few fields reads it too.
    assert redis_client.type(job_key("old1")) == b"hash"
    assert peek(redis_client, ["old1"], ["state", "stop_at", "app", "sid"]) == [
        {"state": "queued", "stop_at": now + 600, "app": "default", "sid": None}
    ]
    assert store.log_fields("old1") == {"cname": "class42", "sid": None}
    assert store.stop_times(["old1", "nope"]) == [now + 600, None]
    assert store.ids(S.QUEUED) == ["old1"] and store.ids() == ["old1"]

    # The first transition migrates it: one string, the data key gone, the same record.
    assert store.transition("old1", {S.QUEUED}, S.ACQUIRING, resource_id=RESOURCE_ID)[0]
    assert redis_client.type(job_key("old1")) == b"string"
    assert not redis_client.exists(data_key("old1"))
    after = store.get("old1")
    assert after.model_dump(exclude={"state", "resource_id", "history"}) == before.model_dump(
        exclude={"state", "resource_id", "history"}
    )
    store.transition("old1", {S.ACQUIRING}, S.STARTING, acquired_at=now + 1)
    store.transition("old1", {S.STARTING}, S.RECORDING, sid=SID, started_at=now + 2)
    store.transition("old1", {S.RECORDING}, S.STOPPING, stop_sent_at=now + 3)
    assert store.transition("old1", {S.STOPPING}, S.COMPLETED)[0]

    job = store.get("old1")
    assert job.state == S.COMPLETED and job.terminal
    assert (job.resource_id, job.sid, job.started_at) == (RESOURCE_ID, SID, now + 2)
    assert [h.state for h in job.history] == [
        S.ACQUIRING,
        S.STARTING,
        S.RECORDING,
        S.STOPPING,
        S.COMPLETED,
    ]
    assert redis_client.ttl(job_key("old1")) > 0  # kept for the retention, then gone
    assert redis_client.zscore(DUE_KEY, "callback:old1") is not None  # its callback is due
    assert redis_client.zscore(DUE_KEY, "stop:old1") is None
    assert not any(redis_client.sismember(state_key(s), "old1") for s in S)
    assert store.ids(S.COMPLETED) == ["old1"]


def test_an_ended_old_record_keeps_its_expiry_when_migrated(store, redis_client):
    now = time.time()
    _old_layout(redis_client, "old2", now, now + 60, state="failed")
    redis_client.srem(state_key("queued"), "old2")
    redis_client.expire(job_key("old2"), 1000)
    redis_client.expire(data_key("old2"), 1000)
    before = store.get("old2")
    assert store.migrate("old2") and not store.migrate("old2")
    assert 990 < redis_client.ttl(job_key("old2")) <= 1000
    assert store.get("old2") == before
    # A compare-and-set that does not match changes nothing, in either layout.
    assert store.transition("old2", {S.QUEUED}, S.CANCELLED) == (False, S.FAILED)


def test_a_record_with_every_field_set_reads_back_identically(store, redis_client):
    now = time.time()
    record = JobRecord(
        job_id="full",
        state=S.RECORDING,
        cname="class42",
        uid="7",
        spec={"cname": "class42", "stop_at": "2030-01-01T00:00:00.123456Z", "labels": {"a": "b"}},
        storage="s3",
        app="school",
        has_token=True,
        created_at=now,
        start_at=now + 0.5,
        stop_at=1893456000.123456,
        stop_early_max=2.5,
        resource_id="not/base64 or hex, é",
        acquired_at=now + 1,
        sid="ABCDEF",
        started_at=now + 2,
        uid_attempt=2,
        stop_reason="stop",
        stop_sent_at=now + 3,
        stop_uncertain=True,
        missing_since=now + 4,
        missing_count=3,
        start_sent_at=now + 1.5,
        sid_wait_since=now + 1.6,
        sid_provoked_at=now + 1.7,
        sid_source="ncs",
        failover_uids=["9", "10"],
        has_callback=True,
        files=[{"fileName": "a.m3u8", "key": "k/a.m3u8"}],
        uploading_status="uploaded",
        error={"code": 435, "reason": "x" * 300},
        callback_status={"delivered": True},
        merge=True,
        merged={"key": "m.mp4", "size": 10},
        history=[{"state": "acquiring", "at": 1.5}, {"state": "recording", "at": now}],  # not ms
    )
    store.create(record)
    assert store.get("full") == record
    assert store.get("full").spec == record.spec and list(store.get("full").spec) == list(
        record.spec
    )
    # The spec's stop_at is the record's, so it is not stored twice.
    assert b"2030-01-01" not in redis_client.get(job_key("full"))


def test_a_recording_job_costs_one_small_key(store, redis_client):
    now = time.time()
    spec = {"cname": "scale1", "recordingConfig": {"maxIdleTime": 3600}}
    store.create(
        JobRecord(
            job_id="a" * 32,
            state=S.QUEUED,
            cname="scale1",
            uid="1234567",
            spec=spec,
            created_at=now,
            stop_at=now + 600,
        )
    )
    job_id = "a" * 32
    store.transition(job_id, {S.QUEUED}, S.ACQUIRING)
    store.transition(job_id, {S.ACQUIRING}, S.STARTING, resource_id=RESOURCE_ID, acquired_at=now)
    store.transition(job_id, {S.STARTING}, S.RECORDING, sid=SID, started_at=now, sid_source="start")
    raw = redis_client.get(job_key(job_id))
    assert store.get(job_id).resource_id == RESOURCE_ID and store.get(job_id).sid == SID
    # 168 bytes of resourceId and 16 of sid, not 226 and 34 of JSON text; times 8 bytes each.
    assert len(raw) < 360, len(raw)
    assert jobcodec.parse(raw)["r"][:1] == b"\1" and jobcodec.parse(raw)["i"][:1] == b"\0"
    # Two keys took 1,168 bytes before (MEMORY USAGE, this job); one takes well under half.
    assert redis_client.memory_usage(job_key(job_id), samples=0) < 480

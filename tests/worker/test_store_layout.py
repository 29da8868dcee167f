"""Tier 1 on a real Redis: the job record's stored form (one string per job, worker.jobcodec),
and records the previous version wrote (a ``job:<id>`` hash and a ``jobdata:<id>`` string)
read and driven to the end by this one."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from worker import jobcodec
from worker.jobs import JobSpec
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


def test_a_recording_job_of_the_scale_benchmark_fits_the_allocators_320_byte_class(
    store, redis_client
):
    """The record of a job scale.py submits, recording (issue 12: <= 1,024 bytes of Redis per
    active job): 334 bytes took jemalloc's 384-byte class; at most 314 take its 320-byte one."""
    fields = jobcodec.decode(bytes.fromhex(OLD_RECORD_HEX))
    job_id = "b" * 32
    record = JobRecord.model_validate({**fields, "job_id": job_id})
    store.create(record)
    # Written again by the transition script (parsed and rebuilt in Lua).
    sid_fields = ("resource_id", "acquired_at", "sid", "started_at", "start_sent_at", "sid_source")
    store.transition(job_id, {S.RECORDING}, None, **{k: fields[k] for k in sid_fields})
    raw = redis_client.get(job_key(job_id))
    assert store.get(job_id) == JobRecord.model_validate({**fields, "job_id": job_id})
    assert len(raw) <= 314, len(raw)
    assert redis_client.memory_usage(job_key(job_id), samples=0) <= 424


def test_the_spec_leaves_out_the_job_id_its_key_holds(store, redis_client):
    """A caller's job_id is the first key of the stored spec (wire order) and the record's key:
    stored once. A recording job as benchmarks/deployment.py submits it then fits jemalloc's
    320-byte class (its record was 330 bytes, in the 384-byte class)."""
    now = time.time()
    job_id = "dep-000005"
    stop_at = datetime.fromtimestamp(now + 300, UTC).isoformat()  # "+00:00", as callers write
    sent = {"cname": "dep5", "recordingConfig": {"maxIdleTime": 3600}, "job_id": job_id}
    spec = JobSpec.model_validate(sent | {"stop_at": stop_at}).wire()
    assert list(spec)[:2] == ["job_id", "cname"]
    stop = JobSpec.model_validate(spec).stop_at
    assert stop is not None
    record = JobRecord(
        job_id=job_id,
        state=S.QUEUED,
        cname="dep5",
        uid="1234567",
        spec=spec,
        created_at=now,
        stop_at=stop.timestamp(),
    )
    store.create(record)
    store.transition(job_id, {S.QUEUED}, S.ACQUIRING)
    store.transition(job_id, {S.ACQUIRING}, S.STARTING, resource_id=RESOURCE_ID, acquired_at=now)
    store.transition(job_id, {S.STARTING}, S.RECORDING, sid=SID, started_at=now, sid_source="start")
    raw = redis_client.get(job_key(job_id))

    stored_spec = jobcodec.parse(raw)["p"]
    assert (stored_spec[0] - ord("0")) & 8, stored_spec[:2]  # flag 8: job_id left out
    assert store.get(job_id).spec == spec and list(store.get(job_id).spec) == list(spec)
    assert len(raw) <= 314, len(raw)
    assert redis_client.memory_usage(job_key(job_id), samples=0) <= 424
    # Only the key's own id is left out; reading it needs the key.
    with pytest.raises(ValueError, match="job_id"):
        jobcodec.decode(raw)
    other = JobRecord.model_validate(record.model_dump() | {"job_id": "another"})
    store.create(other)
    assert store.get("another").spec == spec  # its spec names dep-000005: kept as it is
    assert not (jobcodec.parse(redis_client.get(job_key("another")))["p"][0] - ord("0")) & 8


# A recording job's record as the version before this one wrote it (times as 8-byte doubles after
# a length byte, the uid as decimal text, history entries of 9 bytes): taken from a scale.py run.
OLD_RECORD_HEX = (
    "410841dac3516c9194dd420841dac3516c9bff06430841dac35169fb9b0b450841dac351919a6d0d510841da"
    "c3516c921ca463087363616c65333537681b6141dac3516c8e76c97341dac3516c949ba67241dac3516d1ed9"
    "176911009ce6b484b38e412661b10d52cd7adbfa701e3731ab26680b502f50333eab0ccd9043c40866953992"
    "4d860606b5b5b500728000a901f981b5fc38ee1f2f8188df50a79bd454458ecb05f9633b4e29d7aa6d90a8e8"
    "5d48fbf8c147aaa846e27b96fe4b9beb13d93f4fae8745004c48f7eae381d3c8582cfdcb292ce7bae8971d40"
    "d995f10aa5b0f4aaf934eccd370564eca6b07e9597e35cec7f9d75884b94d1a51c1ed28cdd8e8622e9fb6b58"
    "cf67863e54db04053b6e7d2b60258d5428bbbe92ae737d40bc49874c0961ce6bd4e01baa24aec0b31ce73210"
    "e53597e973730172750939303135373335343078057374617274"
)


def test_a_record_the_previous_version_wrote_reads_and_goes_to_the_end(store, redis_client):
    job_id = "c" * 32
    redis_client.set(job_key(job_id), bytes.fromhex(OLD_RECORD_HEX))
    redis_client.sadd(state_key("recording"), job_id)
    job = store.get(job_id)
    assert (job.state, job.cname, job.uid, job.sid_source) == (
        S.RECORDING,
        "scale357",
        "901573540",
        "start",
    )
    assert (job.created_at, job.acquired_at, job.started_at) == (
        1796031911.931338,
        1796031922.274711,
        1796031922.4374404,
    )
    assert job.stop_at == 1796032070.412906 and job.start_sent_at == 1796031922.282998
    assert job.spec["stop_at"] == "2026-11-30T09:47:50.412906Z"
    assert job.sid == "9ce6b484b38e412661b10d52cd7adbfa" and len(job.resource_id or "") == 224
    assert [(h.state, h.at) for h in job.history] == [
        (S.ACQUIRING, 1796031922.226),
        (S.STARTING, 1796031922.322),
        (S.RECORDING, 1796031924.482),
    ]
    assert peek(redis_client, [job_id], ["uid", "started_at", "sid_source"]) == [
        {"uid": "901573540", "started_at": 1796031922.4374404, "sid_source": "start"}
    ]
    moved, _ = store.transition(
        job_id,
        {S.RECORDING},
        S.STOPPING,
        stop_sent_at=1796032070.5,
        started_at=1796031922.5,
        uid="12",
    )
    assert moved
    moved, _ = store.transition(job_id, {S.STOPPING}, S.EMPTY)
    assert moved
    job = store.get(job_id)
    assert (job.state, job.started_at, job.uid, job.stop_sent_at) == (
        S.EMPTY,
        1796031922.5,
        "12",
        1796032070.5,
    )
    assert job.created_at == 1796031911.931338 and job.sid_source == "start"
    assert [h.state for h in job.history] == [
        S.ACQUIRING,
        S.STARTING,
        S.RECORDING,
        S.STOPPING,
        S.EMPTY,
    ]
    assert job.history[2].at == 1796031924.482


@pytest.mark.parametrize("uid", ["0", "7", "4294967295", "4294967296", "007", "-1", "ab", "١٢"])
@pytest.mark.parametrize("source", ["start", "dev_api", "something new"])
def test_a_value_the_compact_form_cannot_hold_keeps_the_first_form(
    store, redis_client, uid, source
):
    now = time.time()
    record = JobRecord(
        job_id="u1", state=S.QUEUED, cname="c", uid=uid, spec={}, created_at=now, stop_at=now + 9
    )
    store.create(record)
    store.transition("u1", {S.QUEUED}, S.ACQUIRING, sid_source=source)
    fields = jobcodec.parse(redis_client.get(job_key("u1")))
    compact = uid.isascii() and uid.isdigit() and str(int(uid)) == uid and int(uid) < 1 << 32
    assert ("v" in fields, "u" in fields) == (compact, not compact)
    assert ("X" in fields) == (source in jobcodec.SID_SOURCES)
    job = store.get("u1")
    assert (job.uid, job.sid_source, job.created_at, job.stop_at) == (uid, source, now, now + 9)
    # Set again under the other form: the first one goes, one value stays.
    store.transition("u1", {S.ACQUIRING}, None, uid="12", sid_source="ncs")
    fields = jobcodec.parse(redis_client.get(job_key("u1")))
    assert "u" not in fields and "x" not in fields
    assert (store.get("u1").uid, store.get("u1").sid_source) == ("12", "ncs")
    store.transition("u1", {S.ACQUIRING}, None, sid_source=None)
    assert store.get("u1").sid_source is None
    assert not {"x", "X"} & set(jobcodec.parse(redis_client.get(job_key("u1"))))

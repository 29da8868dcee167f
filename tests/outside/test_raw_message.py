"""A caller in another language: a Celery protocol-2 message built by hand as JSON (what the
Node, Go and Rust Celery clients produce) is LPUSHed onto the intake's Redis list, and the answer
is read back as JSON from the result backend key ``celery-task-meta-<id>``. The worker is a plain
``celery -A worker.celery_app worker`` without ``-Q``, as an operator would start one: it must
consume the intake by default."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from tests.support.processes import Cloudrec
from tests.support.specs import process_spec
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

INTAKE = "cloudrec"


def celery_message(task: str, args: list[Any], queue: str = INTAKE) -> tuple[str, bytes]:
    """(task id, the kombu/Redis message) exactly as docs/tasks.md shows it."""
    task_id = str(uuid.uuid4())
    body = [args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    message = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "js",
            "task": task,
            "id": task_id,
            "root_id": task_id,
            "parent_id": None,
            "group": None,
            "retries": 0,
            "eta": None,
            "expires": None,
            "timelimit": [None, None],
            "argsrepr": "(...)",
            "kwargsrepr": "{}",
            "origin": "node-service@host",
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return task_id, json.dumps(message).encode()


def send(client: redis.Redis, task: str, args: list[Any], queue: str = INTAKE) -> str:
    task_id, raw = celery_message(task, args, queue)
    client.lpush(queue, raw)
    return task_id


def result_of(client: redis.Redis, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The result document as any client reads it: plain JSON under celery-task-meta-<id>."""
    raw = wait_for(lambda: client.get(f"celery-task-meta-{task_id}"), timeout, 0.1, "a result")
    doc: dict[str, Any] = json.loads(raw)
    return doc


def test_a_hand_built_json_message_submits_and_the_job_completes(cloudrec: Cloudrec) -> None:
    client = redis.Redis.from_url(cloudrec.redis_url)
    cloudrec.start_worker(plain_celery=True)
    cloudrec.start_beat()
    cloudrec.dev.join("raw-json", "5", video={"color": "#0000FF"}, audio={"tone": 330})

    submitted = result_of(client, send(client, "recording.submit", [process_spec("raw-json")]))

    assert submitted["status"] == "SUCCESS", submitted
    job_id = submitted["result"]
    assert isinstance(job_id, str) and job_id
    store = cloudrec.runtime.store
    job = wait_for(lambda: (j := store.get(job_id)).terminal and j, 60, 0.2, "the job to end")
    assert job.state == "completed", job.status_json()
    assert job.files

    status = result_of(client, send(client, "recording.status", [job_id]))
    assert status["status"] == "SUCCESS"
    assert status["result"] == json.loads(json.dumps(store.get(job_id).status_json()))


def test_a_success_is_stored_as_three_fields_and_a_failure_as_celery_stores_it(
    cloudrec: Cloudrec,
) -> None:
    """An answer lives a day per job: a success keeps only what readers read (docs/tasks.md)."""
    client = redis.Redis.from_url(cloudrec.redis_url)
    cloudrec.start_worker(plain_celery=True)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    now_id = send(client, "recording.submit", [process_spec("raw-now")])  # sends its acquire
    ok_id = send(client, "recording.submit", [process_spec("raw-small", start_at=later)])
    failed_id = send(client, "recording.status", ["no-such-job"])

    started = result_of(client, now_id)
    answer = result_of(client, ok_id)
    failure = result_of(client, failed_id)

    assert started == {"status": "SUCCESS", "result": started["result"], "task_id": now_id}
    assert answer == {"status": "SUCCESS", "result": answer["result"], "task_id": ok_id}
    assert failure["status"] == "FAILURE" and failure["task_id"] == failed_id
    assert {"traceback", "children", "date_done"} <= failure.keys()
    stored = client.memory_usage(f"celery-task-meta-{now_id}", samples=0)
    assert stored is not None and stored <= 256, stored  # 360 with Celery's fields and children
    # Compact JSON (no blanks after "," and ":"), failures too: any JSON reader reads it.
    for task_id in (now_id, ok_id, failed_id):
        raw = client.get(f"celery-task-meta-{task_id}") or b""
        assert raw == json.dumps(json.loads(raw), separators=(",", ":")).encode(), raw


def test_errors_reach_a_non_python_caller_by_type_and_message(cloudrec: Cloudrec) -> None:
    client = redis.Redis.from_url(cloudrec.redis_url)
    worker = cloudrec.start_worker(plain_celery=True)
    bad = process_spec("raw-bad")
    bad["recordingConfig"]["maxIdleTime"] = 1

    invalid = result_of(client, send(client, "recording.submit", [bad]))
    unknown = result_of(client, send(client, "recording.status", ["no-such-job"]))
    cancel_unknown = result_of(client, send(client, "recording.cancel", ["no-such-job"]))

    assert invalid["status"] == "FAILURE"
    assert invalid["result"]["exc_type"] == "JobSpecError"
    assert invalid["result"]["exc_message"] == [
        "recordingConfig.maxIdleTime: must be between 5 and 2592000 (got 1)"
    ]
    for answer in (unknown, cancel_unknown):
        assert answer["status"] == "FAILURE"
        assert answer["result"]["exc_type"] == "JobNotFound"
        assert answer["result"]["exc_message"] == ["no-such-job"]
    assert cloudrec.runtime.store.ids() == []
    # Caller errors are declared (throws=): one line each in the worker's log, no traceback.
    log = worker.output()
    assert "JobSpecError" in log and "Traceback" not in log, log[-3000:]


def test_the_intake_serves_only_the_public_tasks(cloudrec: Cloudrec) -> None:
    client = redis.Redis.from_url(cloudrec.redis_url)
    worker = cloudrec.start_worker(plain_celery=True)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    job_id = result_of(
        client, send(client, "recording.submit", [process_spec("raw-int", start_at=later)])
    )["result"]

    send(client, "recording.stop", [job_id])  # an internal step, sent to the public queue
    wait_for(lambda: "refused recording.stop" in worker.output(), 30, 0.2, "the refusal")

    assert cloudrec.runtime.store.get(job_id).state == "queued"
    assert cloudrec.runtime.store.get(job_id).stop_reason is None

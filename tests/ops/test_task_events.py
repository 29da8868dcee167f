"""Task events from a real worker process, as a monitor (Flower, ``celery events``) receives
them from the broker: every event arrives, within about a second of its making, and a burst of
tasks' events goes out in a few messages rather than one or two events per message
(worker.consumer)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.processes import processes, start_worker_process
from tests.support.specs import process_spec
from worker.celery_app import app
from worker.queues import DEFAULT_INTAKE_QUEUE

pytestmark = pytest.mark.e2e

TASKS = 40
TASK_EVENTS = {"task-received", "task-started", "task-succeeded", "task-failed"}
# What a worker sends for a job of its own accord before it records.
WORKER_SENT = {"recording.acquire", "recording.watch"}


def test_task_events_go_out_in_batches_each_within_a_second(
    redis_url: str, env: dict[str, str], log_dir: Path
) -> None:
    tap = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    tap.psubscribe("*celeryev*")
    with processes() as procs:
        procs.append(start_worker_process(env, log_dir))
        _read(tap, 1.0)  # the worker's own events (online, heartbeats)
        for i in range(TASKS):  # a status query of a job that is not there: fails at once
            app.send_task("recording.status", args=[f"missing-{i}"], queue=DEFAULT_INTAKE_QUEUE)
        received = _read(
            tap, 15.0, until=lambda events: len([e for e in events if _task(e)]) >= 3 * TASKS
        )
    events = [(at, event) for at, batch in received for event in batch]
    task_events = [(at, e) for at, e in events if e.get("type") in TASK_EVENTS]
    assert len(task_events) == 3 * TASKS, sorted({str(e.get("type")) for _, e in events})
    messages = sum(1 for _, batch in received if any(e.get("type") in TASK_EVENTS for e in batch))
    # Before: 45 messages for these 120 events; each flush now carries up to 24.
    assert messages <= TASKS // 2, messages
    late = [round(at - e["timestamp"], 3) for at, e in task_events if at - e["timestamp"] > 1.0]
    assert late == [], late


def test_the_tasks_a_worker_sends_are_announced_in_batches(
    redis_url: str, env: dict[str, str], log_dir: Path
) -> None:
    """A job's submit sends its acquire, the acquire (with its start) sends the first watch:
    Celery announces each with a task-sent event; the worker's go out with its other events,
    in batches, not one message each."""
    tap = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    tap.psubscribe("*celeryev*")
    jobs = 20
    with processes() as procs:
        procs.append(start_worker_process(env, log_dir))
        _read(tap, 1.0)
        for i in range(jobs):
            spec = process_spec(f"sent-{i}", duration=60)
            app.send_task("recording.submit", args=[spec], queue=DEFAULT_INTAKE_QUEUE)
        received = _read(tap, 30.0, until=lambda events: _sent_by_worker(events) >= 2 * jobs)
    sent = [(at, e) for at, batch in received for e in batch if _by_worker(e)]
    # Each job's acquire and first watch (a watch that found the recording not yet running
    # sends another).
    assert len(sent) >= 2 * jobs, sorted({str(e.get("name")) for _, e in sent})
    messages = sum(1 for _, batch in received if any(_by_worker(e) for e in batch))
    # Before: one message per task-sent event (40 for 40). Batched, they go out with the
    # worker's other task events: a message every half second, or sooner when Celery's buffer
    # holds 24 events (the burst's ~200 received/started/succeeded events fill it ~8 times):
    # 8-13 messages on this machine.
    assert messages <= len(sent) // 2, (messages, len(sent))
    late = [round(at - e["timestamp"], 3) for at, e in sent if at - e["timestamp"] > 1.0]
    assert late == [], late


def _by_worker(event: dict[str, Any]) -> bool:
    return event.get("type") == "task-sent" and event.get("name") in WORKER_SENT


def _sent_by_worker(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if _by_worker(e))


def _read(tap: Any, seconds: float, until: Any = None) -> list[tuple[float, list[dict[str, Any]]]]:
    """(arrival time, events) of each message until ``until(events so far)`` or ``seconds``."""
    got: list[tuple[float, list[dict[str, Any]]]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = tap.get_message(timeout=0.1)
        if message is None:
            continue
        envelope = json.loads(message["data"])
        raw = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            raw = base64.b64decode(raw)
        body = json.loads(raw)
        got.append((time.time(), body if isinstance(body, list) else [body]))
        if until is not None and until([e for _, batch in got for e in batch]):
            break
    return got


def _task(event: dict[str, Any]) -> bool:
    return event.get("type") in TASK_EVENTS

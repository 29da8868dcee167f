"""Task events as Flower receives them: a real worker process (``-E``, as compose runs it)
publishes them in batches (worker.consumer), and every one still arrives, in time."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.processes import processes, start_worker_process
from tests.support.waiting import wait_for
from worker.celery_app import app
from worker.consumer import EVENT_FLUSH_INTERVAL

pytestmark = pytest.mark.e2e

TASKS = 40
WORKER_EVENTS = ("task-received", "task-started", "task-failed")


class EventTap:
    """Every task-event message published on the broker (kombu's fanout is Redis pub/sub), as
    a list of (arrival time, events it carried)."""

    def __init__(self, client: redis.Redis) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe("*celeryev*")
        self.messages: list[tuple[float, list[dict[str, Any]]]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.1)
            if message is not None:
                self.messages.append((time.time(), _events(message["data"])))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()


def _events(data: bytes) -> list[dict[str, Any]]:
    envelope = json.loads(data)
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    events = json.loads(body)
    return events if isinstance(events, list) else [events]


def test_a_workers_task_events_arrive_in_batches_and_all_of_them(
    env: dict[str, str], log_dir: Path, redis_client: redis.Redis
) -> None:
    tap = EventTap(redis_client)
    try:
        with processes() as procs:
            procs.append(start_worker_process(env, log_dir))
            ids = [
                app.send_task("recording.status", args=[f"no-such-job-{i}"]).id
                for i in range(TASKS)
            ]

            def worker_events() -> dict[str, set[str]]:
                seen: dict[str, set[str]] = {kind: set() for kind in WORKER_EVENTS}
                for _, events in tap.messages:
                    for event in events:
                        if event.get("type") in seen and event.get("uuid") in ids:
                            seen[event["type"]].add(event["uuid"])
                return seen

            wait_for(
                lambda: all(len(s) == TASKS for s in worker_events().values()),
                30,
                0.1,
                "every task's received, started and failed events",
            )
    finally:
        tap.close()

    carrying = [
        (at, events)
        for at, events in tap.messages
        if any(e.get("uuid") in ids and e.get("type") in WORKER_EVENTS for e in events)
    ]
    # 120 events: Celery's consumer publishes one or two per message (each event from a pool
    # thread wakes its loop, which flushes at once); batched, a message carries many.
    assert len(carrying) <= TASKS // 2, [len(events) for _, events in carrying]
    # And none waits much longer than the interval: from its creation (its timestamp, the
    # worker's clock, this machine's) to its arrival here.
    waits = [
        at - event["timestamp"]
        for at, events in carrying
        for event in events
        if event.get("uuid") in ids and event.get("type") in WORKER_EVENTS
    ]
    assert max(waits) <= EVENT_FLUSH_INTERVAL + 0.5, sorted(waits)[-5:]

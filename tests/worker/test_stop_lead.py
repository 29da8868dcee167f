"""A stop timed for a later second goes out as a message delivered ``STOP_PREPARE_LEAD`` before
that second, carrying the second itself (the step calls the service no earlier); a stop due now
goes as before. Read back from the real broker list, as a worker would receive it."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from typing import Any

import redis

import tasks.recording as tasks_module
from tasks.recording import STOP_PREPARE_LEAD, _send_stop, send_due
from tests.support.stack import make_settings
from worker.celery_app import CONTROL_QUEUE, configure
from worker.store import DueEntry


def control_messages(client: redis.Redis) -> list[dict[str, Any]]:
    """The stop messages on the control queue: their eta and kwargs."""
    out = []
    for key in client.keys(CONTROL_QUEUE + "*"):
        for raw in client.lrange(key, 0, -1):
            message = json.loads(raw)
            _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            eta = message["headers"]["eta"]
            out.append({"eta": datetime.fromisoformat(eta).timestamp() if eta else None, **kwargs})
    return out


def test_a_stop_for_a_later_second_is_delivered_ahead_with_its_second(redis_url, redis_client):
    configure(make_settings(redis_url, "http://127.0.0.1:9"))
    before = time.time()
    _send_stop("later", 2.0, None)
    (message,) = control_messages(redis_client)
    call_at = message["call_at"]
    assert before + 2.0 <= call_at <= time.time() + 2.0
    assert abs(message["eta"] - (call_at - STOP_PREPARE_LEAD)) < 0.01


def test_a_stop_due_now_goes_at_once_without_a_second(redis_url, redis_client):
    configure(make_settings(redis_url, "http://127.0.0.1:9"))
    _send_stop("now", None, None)
    (message,) = control_messages(redis_client)
    assert message == {"eta": None}


def test_a_stop_due_within_the_lead_goes_at_once_with_its_second(redis_url, redis_client):
    configure(make_settings(redis_url, "http://127.0.0.1:9"))
    _send_stop("soon", STOP_PREPARE_LEAD / 2, None)
    (message,) = control_messages(redis_client)
    assert message["eta"] is None
    assert message["call_at"] > time.time()


def test_every_stop_of_a_dispatch_round_is_timed_to_its_second_however_long_sending_takes(
    redis_url, redis_client, monkeypatch
):
    """A round sends hundreds of stops: a countdown taken once before them all made each run
    later than its second by what the sends before it took (0.35 s at p99 at 10,000 jobs)."""
    configure(make_settings(redis_url, "http://127.0.0.1:9"))
    publish = tasks_module.stop.apply_async

    def slow_publish(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = publish(*args, **kwargs)
        time.sleep(0.005)  # a busy broker connection
        return result

    monkeypatch.setattr(tasks_module.stop, "apply_async", slow_publish)
    due = time.time() + 3.0
    send_due([DueEntry("stop", f"job{i}", due) for i in range(100)])  # 0.5 s of sending
    messages = control_messages(redis_client)
    assert len(messages) == 100
    assert all(abs(m["call_at"] - due) < 0.01 for m in messages)
    assert all(abs(m["eta"] - (due - STOP_PREPARE_LEAD)) < 0.01 for m in messages)

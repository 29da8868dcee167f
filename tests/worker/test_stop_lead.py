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

from tasks.recording import STOP_PREPARE_LEAD, _send_stop
from tests.support.stack import make_settings
from worker.celery_app import CONTROL_QUEUE, configure


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

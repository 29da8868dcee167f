"""Messages as a broker gives them back after their worker died: marked redelivered.

kombu's Redis transport (and cloudrec's restorer, worker.restorer) put a message whose worker
died back on its queue with ``redelivered`` set in its headers and its delivery info; a worker
counts a delivery against the redelivery cap only then. A test that cannot kill a worker at
the right instant builds that message the same way: the task's own message, as Celery
publishes it, taken off a queue nobody consumes and pushed onto the task's queue marked.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis
from celery import Celery, Task


def send_as_redelivered(
    app: Celery, client: redis.Redis, task: Task, args: tuple[Any, ...], task_id: str, queue: str
) -> None:
    """Put ``task(*args)`` with ``task_id`` on ``queue`` as a restored (redelivered) message."""
    holding = f"test-holding-{uuid.uuid4().hex}"
    with app.connection_for_write() as conn:
        task.apply_async(args, task_id=task_id, queue=holding, connection=conn)
        channel = conn.default_channel
        lists = [k for k in client.keys(f"{holding}*") if client.type(k) == b"list"]
        assert len(lists) == 1, f"the message's list on {holding}: {lists}"
        payload = json.loads(client.rpop(lists[0]) or b"null")
        payload["headers"]["redelivered"] = True
        payload["properties"]["delivery_info"] = {"exchange": "", "routing_key": queue}
        payload["properties"]["delivery_info"]["redelivered"] = True
        priority = channel._get_message_priority(payload, reverse=False)
        client.lpush(channel._q_for_pri(queue, priority), json.dumps(payload))
        client.delete(*client.keys(f"_kombu.binding.{holding}*"))

"""Bringing back the messages of a dead worker within seconds, not a visibility timeout.

With ``task_acks_late`` a message stays in kombu's ``unacked`` hash (and its ``unacked_index``
zset, scored by when it was taken) until the worker acknowledges it. A worker SIGKILLed while
holding it never does, and the Redis transport puts it back only after ``visibility_timeout``
(300 s here). Scheduled stops do not wait for that (their due entries are leased, see
:mod:`worker.leases`); every other step, the submit of a job above all, would.

The transport cannot say which worker holds a message (its delivery tags are bare uuids), and
a message's age does not tell either: a countdown or ETA message sits unacked in a healthy
worker's memory until it is due, and a stop may legitimately take 45 s. So each worker says
what it holds:

- **held set** ``cloudrec:worker:<id>:held``: the delivery tags this worker process has taken,
  written (one pipelined round trip) the moment Celery hands it a message (``task_received``,
  in the consuming process, before any ETA wait or execution); acknowledged tags are pruned on
  the next heartbeat;
- **heartbeat** ``cloudrec:workers`` (zset: worker id -> last beat): a daemon thread of the
  consuming process beats every ``HEARTBEAT_INTERVAL`` seconds. The id is unique per process
  start, so a worker restarted under the same node name is a different worker.

The 1-second dispatcher (:func:`restore_dead_workers`) takes every worker silent for
``HEARTBEAT_TTL`` seconds as dead and puts each of its tags still in ``unacked`` back on the
queue and priority list kombu itself would restore it to, marked redelivered. One Lua script
does each: whoever removes the ``unacked`` entry pushes the message, so a message is restored at
most once however many dispatchers race, and not at all if its worker acknowledged it at the
last moment. The copy gets a new delivery tag, so that a holder that was only slow (a stalled
heartbeat) cannot, by acknowledging late, remove the entry of the worker that took the copy.
A dead worker is also reaped by one dispatcher at a time (``cloudrec:reaping:<id>``).

What a restored message re-runs is safe because every step is idempotent against the job
record (submit on the job id, acquire on the state, start under its in-flight claim, watch and
stop as compare-and-set transitions, stop under its lease).

Not covered: the instant between the transport popping a message off its queue and Celery's
``task_received`` (the same call stack, microseconds); such a message still comes back after
``visibility_timeout``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from worker.keys import WORKERS_KEY as WORKERS_KEY
from worker.keys import held_key as held_key
from worker.keys import reaping_key as reaping_key

log = logging.getLogger("cloudrec.restorer")

HEARTBEAT_INTERVAL = 1.0
# Silent this long: dead. Six beats, so a busy machine does not make a live worker look dead
# (which would only cost a duplicate delivery, never a second recording); a dead worker's
# messages come back within this plus a dispatcher tick. Short, because a lost acquire or
# start costs a short job its whole recording.
HEARTBEAT_TTL = 6.0
REAP_CLAIM_SECONDS = 30


# -- the worker side ------------------------------------------------------------------------
class Holdings:
    """What one consuming process holds, published to Redis with a heartbeat.

    Only a process that holds messages beats: the restorer looks for the messages of dead
    workers, and a worker holding nothing has nothing to restore. When the last held message is
    acknowledged, the next beat removes this worker's entries and its thread ends; the next
    message received starts it again. (So an idle worker, or one whose process lives on after
    its consumer stopped, as in the test suite, leaves nothing behind in Redis.)
    """

    def __init__(self, client: redis.Redis, worker_id: str | None = None) -> None:
        self.redis = client
        self.worker_id = worker_id or _new_worker_id()
        self._messages: dict[str, Any] = {}  # delivery tag -> kombu message
        # Held while Redis is written too: the beat that finds nothing held must not delete a
        # tag that a message received meanwhile has just added.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beating = False

    def received(self, tag: str, message: Any) -> None:
        """A message was handed to this process: say so before anything else happens to it."""
        with self._lock:
            self._messages[tag] = message
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(held_key(self.worker_id), tag)
                pipe.zadd(WORKERS_KEY, {self.worker_id: time.time()})
                pipe.execute()
            if not self._beating and not self._stop.is_set():
                self._beating = True
                threading.Thread(target=self._run, name="cloudrec-heartbeat", daemon=True).start()

    def beat(self) -> bool:
        """One heartbeat: alive now, and forget the tags that were acknowledged meanwhile.
        False once nothing is held any more (the entries are gone: no more beats needed)."""
        with self._lock:
            done = [t for t, m in self._messages.items() if getattr(m, "acknowledged", False)]
            for tag in done:
                del self._messages[tag]
            idle = not self._messages
            with self.redis.pipeline(transaction=False) as pipe:
                if idle:
                    pipe.delete(held_key(self.worker_id))
                    pipe.zrem(WORKERS_KEY, self.worker_id)
                else:
                    pipe.zadd(WORKERS_KEY, {self.worker_id: time.time()})
                    if done:
                        pipe.srem(held_key(self.worker_id), *done)
                pipe.execute()
            if idle:
                self._beating = False
            return not idle

    def close(self) -> None:
        """A clean shutdown: kombu has put back what was not acknowledged; forget this worker."""
        self._stop.set()
        with self._lock, self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(held_key(self.worker_id))
            pipe.zrem(WORKERS_KEY, self.worker_id)
            pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_INTERVAL):
            try:
                if not self.beat():
                    return
            except redis.RedisError as exc:  # the next beat tries again; the TTL has slack
                log.warning("worker heartbeat failed: %s", exc)


def _new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# -- the dispatcher side --------------------------------------------------------------------
RestoreTag = Callable[[str], bool]


def dead_workers(client: redis.Redis, now: float) -> list[str]:
    """Workers whose last heartbeat is older than ``HEARTBEAT_TTL``."""
    raw = client.zrangebyscore(WORKERS_KEY, "-inf", now - HEARTBEAT_TTL)
    return [m.decode() if isinstance(m, bytes) else str(m) for m in raw]


def restore_dead_workers(client: redis.Redis, restore_tag: RestoreTag, now: float) -> int:
    """Put back every message a dead worker held; returns how many were restored."""
    restored = 0
    for worker_id in dead_workers(client, now):
        if not client.set(reaping_key(worker_id), "1", nx=True, ex=REAP_CLAIM_SECONDS):
            continue  # another dispatcher is reaping it
        restored += _reap(client, worker_id, restore_tag)
    return restored


def _reap(client: redis.Redis, worker_id: str, restore_tag: RestoreTag) -> int:
    tags = [
        t.decode() if isinstance(t, bytes) else str(t) for t in client.smembers(held_key(worker_id))
    ]
    restored = sum(1 for tag in tags if restore_tag(tag))
    with client.pipeline(transaction=False) as pipe:
        pipe.delete(held_key(worker_id))
        pipe.zrem(WORKERS_KEY, worker_id)
        pipe.execute()
    if restored:
        log.warning(
            "restored %d message(s) of dead worker %s (of %d it held)",
            restored,
            worker_id,
            len(tags),
        )
    return restored


# KEYS: unacked hash, unacked_index zset, then the queue list(s) to push to. ARGV: delivery tag,
# the message to push. Whoever removes the hash entry owns the restore: a message is pushed back
# at most once, and not at all once its worker acknowledged it (ack removes the entry too).
_RESTORE_LUA = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 3, #KEYS do redis.call('RPUSH', KEYS[i], ARGV[2]) end
return 1
"""


def kombu_restorer(channel: Any) -> RestoreTag:
    """``restore_tag`` for a kombu Redis channel: the message goes back to the queue(s) and
    priority list kombu itself would restore it to (its bindings, its ``priority_steps``),
    marked redelivered, at the end its consumers pop first. Returns whether it was restored."""
    qos = channel.qos
    client = channel.client
    script = client.register_script(_RESTORE_LUA)

    def restore(tag: str) -> bool:
        raw = client.hget(qos.unacked_key, tag)
        if raw is None:
            return False  # acknowledged (or restored) meanwhile
        payload, exchange, routing_key = json.loads(raw)
        with contextlib.suppress(KeyError, TypeError):
            payload["headers"]["redelivered"] = True
            payload["properties"]["delivery_info"]["redelivered"] = True
            # A new tag: should the old holder be alive after all (a stalled heartbeat), its
            # late ack removes its own tag, not the unacked entry of whoever takes this copy.
            payload["properties"]["delivery_tag"] = str(uuid.uuid4())
        priority = channel._get_message_priority(payload, reverse=False)
        lists = [channel._q_for_pri(q, priority) for q in channel._lookup(exchange, routing_key)]
        keys = [qos.unacked_key, qos.unacked_index_key, *lists]
        return bool(script(keys=keys, args=[tag, json.dumps(payload)]))

    return restore


__all__ = [
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_TTL",
    "Holdings",
    "dead_workers",
    "held_key",
    "kombu_restorer",
    "restore_dead_workers",
]

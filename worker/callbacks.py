"""Completion callbacks (docs/design.md#results-and-callbacks, the spec's ``callback`` field).

When a job ends, its store transition makes a ``callback:<job id>`` entry due in the due-queue
(:mod:`worker.store`); the dispatcher sends ``recording.callback(job_id)`` on its own queue,
``cloudrec.callbacks``, whose task runs :func:`deliver`:

- ``callback.task``: the named Celery task is sent ``(job_id, summary)`` on
  ``CLOUDREC_CALLBACK_QUEUE`` (the caller's workers consume it), once;
- ``callback.webhook``: the summary is POSTed as JSON, signed per the Standard Webhooks
  specification under ``CLOUDREC_WEBHOOK_SECRET`` (``whsec_...``), through the guard of
  :mod:`worker.webhook_http` (public targets only, a total deadline of
  ``CLOUDREC_WEBHOOK_TIMEOUT``, at most a few KB of the answer read); any non-2xx answer or no
  answer is retried with exponential backoff (each wait under a minute) until delivered, or given
  up ``callback_give_up_after`` seconds after the job ended. A refused target is given up at once.

Callbacks never hold the worker slots stops need: they have their own queue, and one worker runs
at most ``CLOUDREC_CALLBACK_SLOTS`` deliveries at once (default: a quarter of its pool); a
delivery that finds no free slot is tried again later, holding none (:func:`delivery_slot`).

The outcome of each is recorded on the job (``callback_status``, shown by ``cloudrec status``),
and the due entry stays leased until both are settled, so a worker dying mid-delivery delays a
callback but never loses it. Delivery is therefore *at least once*: receivers deduplicate on
the ``webhook-id`` header, the same for every attempt of one job's callback.

The summary is the job's ``cloudrec status --json`` document: ids, state, times, files, error,
labels, and ``merged``: a job that asked for a merged MP4 (:mod:`worker.merge`) has its callbacks
wait for the merge's outcome (at most ``CLOUDREC_MERGE_CALLBACK_WAIT`` after it ended). It holds
no secret by construction (the token lives in the vault, storage keys in the settings).

Signature (Standard Webhooks): headers ``webhook-id``, ``webhook-timestamp`` (unix seconds of the
attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<raw body>">``,
keyed by the base64-decoded part of the ``whsec_`` secret. Any Standard Webhooks library
verifies it (the README shows a receiver).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from config.settings import webhook_key
from worker import webhook_http
from worker.errors import WebhookError, WebhookRefused
from worker.jobs import StoredCallback
from worker.keys import callback_slots_key
from worker.merge import callback_wait
from worker.steps import Step
from worker.store import JobRecord

if TYPE_CHECKING:
    from config import Settings
    from worker.runtime import Runtime

log = logging.getLogger("cloudrec.callbacks")

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
MAX_RETRY_WAIT = 50.0  # countdowns stay under a minute (docs/design.md#scheduling)
SLOT_HOLD_MARGIN = 15.0  # a holder's lease beyond the webhook deadline (store calls, a slow GIL)

SendTask = Callable[[str, list[Any]], None]


def summary(job: JobRecord) -> dict[str, Any]:
    """What a callback receives about a finished job (no secrets by construction)."""
    out = job.status_json()
    out.pop("callback", None)  # the receiver is the callback; its own delivery state is noise
    return out


def message_id(job: JobRecord) -> str:
    """The ``webhook-id`` of a job's callback: the same for every attempt (receivers dedupe on
    it), and a new one if the id is ever submitted again after the record was removed."""
    return f"{job.job_id}.{int(job.created_at * 1000)}"


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(key: bytes, msg_id: str, body: bytes, now: float) -> dict[str, str]:
    """The headers of one delivery attempt of ``body``."""
    timestamp = int(now)
    return {
        "Content-Type": "application/json",
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(key, msg_id, timestamp, body),
    }


def post_webhook(url: str, body: bytes, headers: dict[str, str], settings: Settings) -> int:
    """POST one signed summary under the guard. Returns the 2xx status; raises
    :class:`WebhookError` (:class:`WebhookRefused` for a target that is not allowed)."""
    return webhook_http.post(
        url, body, headers, timeout=settings.webhook_timeout, allow=settings.webhook_allow
    )


def retry_wait(attempts: int) -> float:
    """Exponential backoff with jitter after ``attempts`` failed deliveries, under a minute."""
    ceiling = min(MAX_RETRY_WAIT, 2.0**attempts)
    return random.uniform(ceiling / 2, ceiling)


def run_callbacks(
    rt: Runtime, job_id: str, send_task: SendTask, now: float | None = None
) -> float | None:
    """Deliver what is left of a finished job's callbacks.

    Returns None when nothing is left (delivered, given up, or nothing to do), else the seconds
    after which the webhook should be tried again (the caller retries; the due entry's lease is
    already pushed past that).
    """
    now = time.time() if now is None else now
    job = rt.store.find(job_id)
    if job is None or not job.terminal or not job.has_callback:
        rt.store.unschedule(Step.CALLBACK, job_id)
        return None
    wait = callback_wait(job, rt.settings, now)
    if wait is not None:
        # The summary carries the merged file: the entry waits for the merge, which makes it
        # due again when it is done (worker.merge), or for the end of the wait; nothing polls.
        rt.store.extend_due(Step.CALLBACK, job_id, now + wait)
        # A merge that recorded its outcome after our read made the entry due now, and the
        # push-out above may have landed on top of that: look again, and deliver if so.
        job = rt.store.find(job_id)
        if job is None or callback_wait(job, rt.settings, now) is not None:
            return None
    wanted = job.job_spec.callback or StoredCallback()
    status = dict(job.callback_status or {})
    body = summary(job)
    if wanted.task and "task" not in status:
        status["task"] = _send_task_callback(rt, send_task, wanted.task, job_id, body, now)
        _save(rt, job, status)
    retry_in = None
    if wanted.webhook and _pending(status.get("webhook")):
        previous = status.get("webhook")
        attempts = int(previous.get("attempts", 0)) if isinstance(previous, dict) else 0
        status["webhook"], retry_in = _webhook_attempt(
            rt, job, wanted.webhook, body, now, attempts + 1
        )
        _save(rt, job, status)
    if retry_in is not None:
        rt.store.extend_due(Step.CALLBACK, job_id, now + retry_in + rt.settings.stop_lease)
        return retry_in
    rt.store.unschedule(Step.CALLBACK, job_id)
    return None


def deliver(
    rt: Runtime, job_id: str, send_task: SendTask, *, node: str, pool_size: int, waited: int = 0
) -> float | None:
    """:func:`run_callbacks` inside one of this worker's delivery slots.

    ``node`` names the worker (its slots are shared by all its processes), ``pool_size`` is its
    concurrency and ``waited`` how many times this delivery already found no slot. Returns what
    :func:`run_callbacks` returns, or, with every slot taken, when to try again: the caller
    retries then, holding no slot meanwhile.
    """
    with delivery_slot(rt, node, slot_count(rt.settings, pool_size)) as got:
        if got:
            return run_callbacks(rt, job_id, send_task)
    wait = slot_wait(waited)
    rt.metrics.callback("delivery", "no_slot")
    # The due entry must not fire a second delivery while this one waits for a slot.
    rt.store.extend_due(Step.CALLBACK, job_id, time.time() + wait + rt.settings.stop_lease)
    return wait


def slot_count(settings: Settings, pool_size: int) -> int:
    """Deliveries one worker runs at once: the setting, else a quarter of its pool (at least 1),
    so the other three quarters are always free for stops, starts and queries."""
    return settings.callback_slots or max(1, pool_size // 4)


def slot_wait(waited: int) -> float:
    """How long a delivery that found no free slot waits: 1-2 s doubling up to 30 s, so a
    backlog of deliveries behind a slow receiver costs few wake-ups."""
    ceiling = min(30.0, 2.0 ** (waited + 1))
    return random.uniform(ceiling / 2, ceiling)


# Take a slot: drop holders whose hold lapsed (their worker died), then join if there is room.
_TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


@contextmanager
def delivery_slot(rt: Runtime, node: str, slots: int) -> Iterator[bool]:
    """Hold one of ``node``'s ``slots`` delivery slots for the block; yields whether one was
    free. Kept in Redis, so every process of a prefork worker shares them, and held for at most
    the webhook deadline and a margin, so a worker killed mid-delivery frees its slot."""
    key = callback_slots_key(node)
    holder = uuid.uuid4().hex
    now = time.time()
    hold = rt.settings.webhook_timeout + SLOT_HOLD_MARGIN
    got = bool(rt.redis.eval(_TAKE_SLOT, 1, key, now, slots, now + hold, holder, int(hold) + 60))
    try:
        yield got
    finally:
        if got:
            rt.redis.zrem(key, holder)


def _send_task_callback(
    rt: Runtime, send_task: SendTask, name: str, job_id: str, body: dict[str, Any], now: float
) -> dict[str, Any]:
    send_task(name, [job_id, body])
    rt.metrics.callback("task", "sent")
    log.info("callback task %s sent", name, extra={"job_id": job_id})
    return {"name": name, "state": "sent", "at": now}


def _pending(state: Any) -> bool:
    return not isinstance(state, dict) or state.get("state") == "pending"


def _webhook_attempt(
    rt: Runtime, job: JobRecord, url: str, body: dict[str, Any], now: float, attempts: int
) -> tuple[dict[str, Any], float | None]:
    """POST attempt number ``attempts``: the new webhook state, and when to try again (None:
    settled)."""
    secret = rt.settings.webhook_secret
    if secret is None:  # refused at submit; the setting was removed since
        return _settled("gave_up", attempts, now, error="CLOUDREC_WEBHOOK_SECRET is not set"), None
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    headers = webhook_headers(webhook_key(secret.get_secret_value()), message_id(job), raw, now)
    try:
        code = post_webhook(url, raw, headers, rt.settings)
    except WebhookRefused as exc:
        return _give_up(rt, job, exc, attempts, now), None  # never sent: trying again won't help
    except WebhookError as exc:
        ended = job.history[-1].at if job.history else job.created_at
        if now - ended >= rt.settings.callback_give_up_after:
            return _give_up(rt, job, exc, attempts, now), None
        rt.metrics.callback("webhook", "retry")
        state = _settled("pending", attempts, now, error=str(exc), code=exc.status)
        return state, retry_wait(attempts)
    rt.metrics.callback("webhook", "delivered")
    log.info("webhook delivered (HTTP %s)", code, extra={"job_id": job.job_id})
    return _settled("delivered", attempts, now, code=code), None


def _give_up(
    rt: Runtime, job: JobRecord, exc: WebhookError, attempts: int, now: float
) -> dict[str, Any]:
    rt.metrics.callback("webhook", "gave_up")
    log.warning("webhook given up: %s", exc, extra={"job_id": job.job_id})
    return _settled("gave_up", attempts, now, error=str(exc), code=exc.status)


def _settled(
    state: str, attempts: int, now: float, *, error: str | None = None, code: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"state": state, "attempts": attempts, "at": now}
    if code is not None:
        out["status"] = code
    if error is not None:
        out["error"] = error
    return out


def _save(rt: Runtime, job: JobRecord, status: dict[str, Any]) -> None:
    rt.store.transition(job.job_id, {job.state}, None, callback_status=status)

"""Completion callbacks (design.md section 4, the spec's ``callback`` field).

When a job ends, its store transition makes a ``callback:<job id>`` entry due in the due-queue
(:mod:`worker.store`); the dispatcher sends ``recording.callback(job_id)``, which runs
:func:`run_callbacks`:

- ``callback.task``: the named Celery task is sent ``(job_id, summary)`` on
  ``CLOUDREC_CALLBACK_QUEUE`` (the caller's workers consume it), once;
- ``callback.webhook``: the summary is POSTed as JSON, signed with HMAC-SHA256 under
  ``CLOUDREC_WEBHOOK_SECRET``; any non-2xx answer or no answer is retried with exponential
  backoff (each wait under a minute) until delivered, or given up ``callback_give_up_after``
  seconds after the job ended.

The outcome of each is recorded on the job (``callback_status``, shown by ``cloudrec status``),
and the due entry stays leased until both are settled, so a worker dying mid-delivery delays a
callback but never loses it. Delivery is therefore *at least once*: receivers deduplicate on
``job_id``.

The summary is the job's ``cloudrec status --json`` document: ids, state, times, files, error,
labels. It holds no secret by construction (the token lives in the vault, storage keys in the
settings).

Signature: ``X-Cloudrec-Signature: sha256=<hex>`` where ``<hex>`` is HMAC-SHA256 over
``<X-Cloudrec-Timestamp>.<raw body>``; receivers check it with :func:`verify_signature` (and
reject old timestamps to stop replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests

from worker.errors import WebhookError
from worker.store import JobRecord

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = logging.getLogger("cloudrec.callbacks")

SIGNATURE_HEADER = "X-Cloudrec-Signature"
TIMESTAMP_HEADER = "X-Cloudrec-Timestamp"
MAX_RETRY_WAIT = 50.0  # countdowns stay under a minute (design.md section 3)

SendTask = Callable[[str, list[Any]], None]


def summary(job: JobRecord) -> dict[str, Any]:
    """What a callback receives about a finished job (no secrets by construction)."""
    out = job.status_json()
    out.pop("callback", None)  # the receiver is the callback; its own delivery state is noise
    return out


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def verify_signature(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is ours over (timestamp, body): for webhook receivers and tests."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def post_webhook(url: str, body: bytes, secret: bytes, timeout: float) -> int:
    """POST one signed summary. Returns the 2xx status; raises :class:`WebhookError` otherwise.

    The one boundary where ``requests`` errors of webhooks are translated.
    """
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    try:
        response = requests.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise WebhookError(None, type(exc).__name__) from exc
    if not 200 <= response.status_code < 300:
        raise WebhookError(response.status_code, response.reason or "not a 2xx answer")
    return response.status_code


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
        rt.store.unschedule("callback", job_id)
        return None
    wanted = job.spec.get("callback") or {}
    status = dict(job.callback_status or {})
    body = summary(job)
    if wanted.get("task") and "task" not in status:
        status["task"] = _send_task_callback(rt, send_task, wanted["task"], job_id, body, now)
        _save(rt, job, status)
    retry_in = None
    if wanted.get("webhook") and _pending(status.get("webhook")):
        previous = status.get("webhook")
        attempts = int(previous.get("attempts", 0)) if isinstance(previous, dict) else 0
        status["webhook"], retry_in = _webhook_attempt(
            rt, job, wanted["webhook"], body, now, attempts + 1
        )
        _save(rt, job, status)
    if retry_in is not None:
        rt.store.extend_due("callback", job_id, now + retry_in + rt.settings.stop_lease)
        return retry_in
    rt.store.unschedule("callback", job_id)
    return None


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
    try:
        key = secret.get_secret_value().encode()
        code = post_webhook(url, raw, key, rt.settings.webhook_timeout)
    except WebhookError as exc:
        ended = job.history[-1].at if job.history else job.created_at
        if now - ended >= rt.settings.callback_give_up_after:
            rt.metrics.callback("webhook", "gave_up")
            log.warning("webhook given up: %s", exc, extra={"job_id": job.job_id})
            return _settled("gave_up", attempts, now, error=str(exc), code=exc.status), None
        rt.metrics.callback("webhook", "retry")
        state = _settled("pending", attempts, now, error=str(exc), code=exc.status)
        return state, retry_wait(attempts)
    rt.metrics.callback("webhook", "delivered")
    log.info("webhook delivered (HTTP %s)", code, extra={"job_id": job.job_id})
    return _settled("delivered", attempts, now, code=code), None


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

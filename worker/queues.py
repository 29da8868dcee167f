"""The queue layout, and cloudrec tasks stranded on queues no cloudrec worker serves.

Layout (read by :mod:`worker.celery_app`, polled in this order): ``cloudrec.control`` (stops,
the dispatcher), ``cloudrec.recording`` (the steps of jobs under way), the public intake
(``CLOUDREC_INTAKE_QUEUE``, default ``cloudrec``), where callers send the public tasks, then
``cloudrec.callbacks`` (completion deliveries), ``cloudrec.merge`` (merged MP4s, long work that
must never delay anything else).

A caller that forgets ``queue="cloudrec"`` (a plain ``send_task``, another language's Celery
client with its defaults) puts ``recording.submit`` on Celery's default queue ``celery``, where it
waits forever: cloudrec's workers do not consume it (on a shared broker they would take the
caller's own tasks). :func:`find_stranded` finds such messages so that ``cloudrec health`` and
the metrics can say so, naming the queue and the fix.

Reading is bounded: a few list lengths and at most ``sample`` messages per list (the oldest,
which have waited longest), whatever the backlog. Kombu's Redis transport keeps one list per
queue and priority: the queue's name for priority 0 and ``<name>\\x06\\x16<p>`` for the others.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import redis

from config import Settings

CONTROL_QUEUE = "cloudrec.control"
RECORDING_QUEUE = "cloudrec.recording"
CALLBACKS_QUEUE = "cloudrec.callbacks"  # completion deliveries (worker.callbacks)
MERGE_QUEUE = "cloudrec.merge"  # merged MP4s of finished jobs (worker.merge), polled last
DEFAULT_INTAKE_QUEUE = "cloudrec"
CELERY_DEFAULT_QUEUE = "celery"  # where a send_task without a queue (or route) lands
# The tasks callers may send to the intake; nothing else is served from it.
PUBLIC_TASKS = ("recording.submit", "recording.status", "recording.cancel", "recording.stop_now")

PRIORITY_SEP = "\x06\x16"
TASK_PREFIX = "recording."
SAMPLE = 100  # messages read per priority list, at most


def intake_queues(settings: Settings) -> list[str]:
    """The queues callers' public tasks are taken from (the intake, and ``celery`` if opted in)."""
    queues = [settings.intake_queue]
    if settings.intake_default_queue and CELERY_DEFAULT_QUEUE not in queues:
        queues.append(CELERY_DEFAULT_QUEUE)
    return queues


def queue_layout(settings: Settings) -> list[str]:
    """Every queue a cloudrec worker serves, in the order it polls them."""
    return [CONTROL_QUEUE, RECORDING_QUEUE, *intake_queues(settings), CALLBACKS_QUEUE, MERGE_QUEUE]


@dataclass(frozen=True)
class Stranded:
    """Cloudrec task messages waiting on a queue that no cloudrec worker serves."""

    queue: str
    count: int  # cloudrec messages among those read
    tasks: tuple[str, ...]  # their task names, sorted, without repeats
    partial: bool  # the lists held more messages than were read: count is a lower bound
    intake: str  # where they should have been sent

    def describe(self) -> str:
        """One line: the queue, how many, and the fix."""
        count = f"{self.count}+" if self.partial else str(self.count)
        return (
            f"{count} cloudrec task message(s) ({', '.join(self.tasks)}) waiting on queue "
            f"{self.queue!r}, which no cloudrec worker serves: send them to the intake queue "
            f"{self.intake!r} (send_task(..., queue={self.intake!r})), or move them there"
        )


def watched_queues(settings: Settings) -> list[str]:
    """Queues where a caller's cloudrec tasks may land by mistake and no worker serves them:
    Celery's default queue, and the documented intake name when the intake was renamed."""
    served = set(queue_layout(settings))
    candidates = [CELERY_DEFAULT_QUEUE, DEFAULT_INTAKE_QUEUE]
    return [q for q in dict.fromkeys(candidates) if q not in served]


def priority_keys(queue: str) -> list[str]:
    """The Redis lists of one queue: priority 0 under its own name, then each priority step."""
    return [queue] + [f"{queue}{PRIORITY_SEP}{p}" for p in range(1, 10)]


def find_stranded(
    client: redis.Redis, settings: Settings, *, sample: int = SAMPLE
) -> list[Stranded]:
    """Every watched queue with cloudrec task messages waiting on it (none: an empty list)."""
    found = [_scan_queue(client, q, settings, sample) for q in watched_queues(settings)]
    return [s for s in found if s.count]


def stranded_counts(client: redis.Redis, settings: Settings) -> dict[str, int]:
    """Cloudrec messages per watched queue, zeros included (a gauge for every queue)."""
    counts = {q: 0 for q in watched_queues(settings)}
    for stranded in find_stranded(client, settings):
        counts[stranded.queue] = stranded.count
    return counts


def _scan_queue(client: redis.Redis, queue: str, settings: Settings, sample: int) -> Stranded:
    keys = priority_keys(queue)
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.llen(key)
        lengths = [int(n) for n in pipe.execute()]
    waiting = [(key, n) for key, n in zip(keys, lengths, strict=True) if n]
    with client.pipeline(transaction=False) as pipe:
        for key, _ in waiting:
            pipe.lrange(key, -sample, -1)  # the oldest: LPUSH in, BRPOP out
        batches = pipe.execute() if waiting else []
    names = [n for batch in batches for raw in batch if (n := cloudrec_task(raw)) is not None]
    return Stranded(
        queue=queue,
        count=len(names),
        tasks=tuple(sorted(set(names))),
        partial=any(n > sample for _, n in waiting),
        intake=intake_queues(settings)[0],
    )


def cloudrec_task(raw: bytes | str) -> str | None:
    """The task name of a kombu message if it is a cloudrec task (``recording.*``), else None.

    Protocol 2 (every current client) names the task in the headers; protocol 1 in the body.
    """
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    name = _header_task(message) or _body_task(message)
    return name if isinstance(name, str) and name.startswith(TASK_PREFIX) else None


def _header_task(message: dict[str, Any]) -> Any:
    headers = message.get("headers")
    return headers.get("task") if isinstance(headers, dict) else None


def _body_task(message: dict[str, Any]) -> Any:
    body = message.get("body")
    if not isinstance(body, str):
        return None
    try:
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded.get("task") if isinstance(decoded, dict) else None

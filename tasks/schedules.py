"""Celery tasks for scheduled (recurring) recordings fired by celery beat.

``recording.fire_schedule(name)`` is what each redbeat entry sends; its only argument is the
schedule name (Flower shows task arguments). The logic is in :mod:`worker.schedules`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Task
from celery.signals import before_task_publish
from kombu.exceptions import OperationalError

from tasks.recording import submit_and_start
from worker.celery_app import app, runtime
from worker.errors import NotDurable
from worker.runtime import Runtime
from worker.schedules import FIRE_TASK, FIRED_AT_HEADER, ScheduleBook, fired_at_header

log = logging.getLogger("cloudrec.schedules")


def schedule_book(rt: Runtime) -> ScheduleBook:
    return ScheduleBook(rt.redis, app, rt.settings, rt.vault)


@app.task(
    name=FIRE_TASK,
    bind=True,
    ignore_result=True,
    # Redis briefly away, or no replica confirmed the job yet (NotDurable, Redis Sentinel): try
    # again (the retry keeps the firing's header, so the same job id).
    autoretry_for=(redis.RedisError, OperationalError, NotDurable),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=8,
)
def fire_schedule(self: Task, name: str) -> str | None:
    """Submit this firing's job (id ``<name>:<slot>``); returns the job id, or None."""
    rt = runtime()
    job = schedule_book(rt).fire(
        name, _fired_at(self, name), lambda s: submit_and_start(rt, s, minted=True)
    )
    return job.job_id if job is not None else None


def _fired_at(task: Task, name: str) -> float:
    stamped = getattr(task.request, FIRED_AT_HEADER, None)
    if stamped is None:
        # Not sent through this app (no header): a redelivery of it would get another slot.
        log.warning(
            "schedule %s: firing without a beat timestamp; using now",
            name,
            extra={"schedule": name},
        )
        return time.time()
    return float(stamped)


@before_task_publish.connect(weak=False, dispatch_uid="cloudrec-stamp-firing")
def _stamp_firing(
    sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any
) -> None:
    # Runs in the process that sends the firing (beat): the slot comes from this moment, so
    # a redelivered or late-running firing still maps to the same job id.
    if sender == FIRE_TASK:
        fired_at_header(headers)

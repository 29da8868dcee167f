"""The client's errors, mapped from what the worker stored as a task's failure.

The worker's result (Celery's JSON result format) names the exception by type and arguments:
``{"exc_type": "JobSpecError", "exc_message": ["field: rule"], ...}``. Celery turns that into an
exception instance of a class made up on the spot (the worker's own classes are not installed
here); :func:`from_task_failure` maps it by its type name to one of these.
"""

from __future__ import annotations

from typing import Any


class CloudrecError(Exception):
    """Base of every error this client raises."""


class JobSpecError(CloudrecError, ValueError):
    """The spec broke a rule; the message names each field and its rule. Nothing was stored."""


class JobNotFound(CloudrecError, KeyError):
    """No job with this id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id

    def __str__(self) -> str:
        return f"no job with id {self.job_id!r}"


class NoAnswer(CloudrecError):
    """No answer in time: no cloudrec worker took the task from the queue (or none is up)."""


class WaitTimeout(CloudrecError):
    """``wait`` gave up before the job ended; ``status`` is the last status seen."""

    def __init__(self, job_id: str, timeout: float, status: Any) -> None:
        state = getattr(status, "state", "?")
        super().__init__(f"job {job_id!r} not terminal after {timeout:g} s (state {state})")
        self.job_id = job_id
        self.status = status


class TaskFailed(CloudrecError):
    """The task failed otherwise; ``exc_type`` and ``message`` are the worker's."""

    def __init__(self, task: str, exc_type: str, message: str) -> None:
        super().__init__(f"{task} failed: {exc_type}: {message}")
        self.task = task
        self.exc_type = exc_type
        self.message = message


def from_task_failure(task: str, exc: BaseException) -> CloudrecError:
    """The client error for a task's failure (``exc`` as Celery rebuilt it from the result)."""
    kind = type(exc).__name__
    args = [str(a) for a in getattr(exc, "args", ())]
    first = args[0] if args else ""
    if kind == "JobSpecError":
        return JobSpecError(first)
    if kind == "JobNotFound":
        return JobNotFound(first)
    return TaskFailed(task, kind, "; ".join(args))

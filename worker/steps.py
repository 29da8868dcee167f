"""The step vocabulary: every task cloudrec runs, and the one table of how each is run.

A :class:`Step` names one thing the task layer can do for a job (or for the whole worker:
the dispatcher, the reconciler). :data:`STEPS` says, for each, its Celery task name (stable:
callers and Flower rely on it), its queue, its message priority, how many failed API attempts
it gets before the job fails, and how long a claimed due entry of it stays claimed. Routing
(:mod:`worker.celery_app`), dispatch and retries (:mod:`tasks.recording`) all read this table.

:class:`StopReason` names why a job is being stopped (stored as the job's ``stop_reason``).

Both are :class:`~enum.StrEnum`: the stored values (due-entry actions, ``stop_reason``, metric
labels) are the same plain strings as always.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from worker.queues import CALLBACKS_QUEUE, CONTROL_QUEUE, MERGE_QUEUE, RECORDING_QUEUE


class Step(enum.StrEnum):
    """A task of cloudrec's (its Celery name is ``recording.<value>``)."""

    # the public tasks, which callers send (docs/tasks.md is their contract)
    SUBMIT = "submit"
    STATUS = "status"
    CANCEL = "cancel"
    STOP_NOW = "stop_now"
    # a job's steps (worker.recording)
    ACQUIRE = "acquire"
    START = "start"
    WATCH = "watch"
    STOP = "stop"
    CALLBACK = "callback"
    MERGE = "merge"  # one merged MP4 of a finished job (worker.merge)
    # the beat's periodic tasks
    DISPATCH = "dispatch"
    RECONCILE = "reconcile"


class StopReason(enum.StrEnum):
    """Why a job is stopped (its ``stop_reason``); no reason means its deadline."""

    DEADLINE = "deadline"  # the job's stop time came
    STOP = "stop"  # ``cloudrec stop`` / ``recording.stop_now``: stop now, end completed
    CANCEL = "cancel"  # ``cloudrec cancel``: never start, or stop now and end cancelled
    ERROR = "error"  # a step failed for good with a recording (maybe) running
    START_TIMEOUT = "start_timeout"  # the recorder never confirmed it started
    SID_UNKNOWN = "sid_unknown"  # a start's answer was lost and its sid could not be found


INTAKE = None  # a public task's queue: the caller-configured intake (CLOUDREC_INTAKE_QUEUE)


@dataclass(frozen=True)
class StepSpec:
    """How one step is run."""

    queue: str | None  # None: the intake queue (a setting)
    priority: int  # Redis transport: 0 is served first (see worker.celery_app)
    attempts: int | None = None  # failed API attempts before the job fails (None: no API call)
    lease: float | None = None  # seconds a claimed due entry stays claimed (None: not due-driven)


# Priorities: work on a job already under way jumps ahead of new jobs; stops and the dispatcher
# come first of all (their queue is polled first); start and watch share priority 0 with them on
# the recording queue, so that they are served before intake messages (callers send priority 0).
# Leases: a claimed start or callback may wait behind a backlog of new jobs in the recording
# queue; its due entry comes back only after this long (a lost one is also re-driven by the
# reconciler). A stop goes to the control queue, where nothing waits: its lease is the setting
# CLOUDREC_STOP_LEASE. A stop never gives up.
STEPS: dict[Step, StepSpec] = {
    Step.SUBMIT: StepSpec(INTAKE, 6),
    Step.STATUS: StepSpec(INTAKE, 0),
    Step.CANCEL: StepSpec(INTAKE, 0),
    Step.STOP_NOW: StepSpec(INTAKE, 0),
    Step.ACQUIRE: StepSpec(RECORDING_QUEUE, 6, attempts=8),
    Step.START: StepSpec(RECORDING_QUEUE, 0, attempts=8, lease=300.0),
    Step.WATCH: StepSpec(RECORDING_QUEUE, 0, attempts=20),
    Step.STOP: StepSpec(CONTROL_QUEUE, 0, attempts=10_000),
    Step.CALLBACK: StepSpec(CALLBACKS_QUEUE, 6, lease=120.0),
    # A merge in progress keeps its lease alive on a heartbeat (worker.leases); this is how
    # long a claimed one may wait in its queue behind others before it is sent again.
    Step.MERGE: StepSpec(MERGE_QUEUE, 6, lease=600.0),
    Step.DISPATCH: StepSpec(CONTROL_QUEUE, 0),
    # Not on the control queue: a round over 10,000 jobs takes a second of CPU, and that second
    # belongs to the stops.
    Step.RECONCILE: StepSpec(RECORDING_QUEUE, 9),
}


def task_name(step: Step) -> str:
    """The step's Celery task name (stable: callers and Flower rely on it)."""
    return f"recording.{step.value}"


def priority(step: Step) -> int:
    return STEPS[step].priority


def attempts(step: Step) -> int:
    """Failed API attempts the step gets before its job fails."""
    limit = STEPS[step].attempts
    if limit is None:
        raise ValueError(f"step {step} makes no API call")
    return limit


def due_leases() -> dict[str, float]:
    """Per due-entry action, how long a claimed entry stays claimed (others: the stop lease)."""
    return {s.value: spec.lease for s, spec in STEPS.items() if spec.lease is not None}


PUBLIC_STEPS = tuple(s for s, spec in STEPS.items() if spec.queue is INTAKE)

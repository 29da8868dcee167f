"""The job state machine (docs/design.md#the-job).

::

    queued ──> acquiring ──> starting ──> recording ──> stopping ──> completed
      │            │  ^          │  │          │            ├──────> empty      (stop said 435)
      │            │  └──────────┘  │          │            ├──────> idle_exit  (recorder had left)
      │            │  (re-acquire)  │          └──> idle_exit├──────> cancelled  (cancel while live)
      └────────────┴────────────────┴──> cancelled / failed └──────> failed

Every move is a compare-and-set in Redis (:mod:`worker.store`); a move this table does not allow
is a bug and raises. Losing a race (the state already moved on) is "someone else did it".
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    QUEUED = "queued"
    ACQUIRING = "acquiring"
    STARTING = "starting"
    RECORDING = "recording"
    STOPPING = "stopping"
    COMPLETED = "completed"
    EMPTY = "empty"
    IDLE_EXIT = "idle_exit"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {JobState.COMPLETED, JobState.EMPTY, JobState.IDLE_EXIT, JobState.FAILED, JobState.CANCELLED}
)
ACTIVE_STATES = frozenset(JobState) - TERMINAL_STATES

# States in which a recording may exist at the service (a sid was, or may be about to be, issued).
LIVE_STATES = frozenset({JobState.STARTING, JobState.RECORDING, JobState.STOPPING})

_S = JobState
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.QUEUED: frozenset({_S.ACQUIRING, _S.FAILED, _S.CANCELLED}),
    _S.ACQUIRING: frozenset({_S.STARTING, _S.FAILED, _S.CANCELLED}),
    _S.STARTING: frozenset(
        {_S.ACQUIRING, _S.RECORDING, _S.STOPPING, _S.IDLE_EXIT, _S.FAILED, _S.CANCELLED}
    ),
    _S.RECORDING: frozenset({_S.STOPPING, _S.IDLE_EXIT, _S.FAILED}),
    _S.STOPPING: frozenset({_S.COMPLETED, _S.EMPTY, _S.IDLE_EXIT, _S.FAILED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.EMPTY: frozenset(),
    _S.IDLE_EXIT: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A programming error: code asked for a move the state machine forbids."""


def sources_for(target: JobState) -> frozenset[JobState]:
    """Every state from which ``target`` may be entered."""
    return frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets)


def check_transition(sources: frozenset[JobState], target: JobState) -> None:
    """Raise :class:`IllegalTransition` unless every source may move to ``target``."""
    bad = sorted(s for s in sources if target not in ALLOWED_TRANSITIONS[s])
    if bad:
        raise IllegalTransition(f"{', '.join(bad)} -> {target} is not a legal transition")

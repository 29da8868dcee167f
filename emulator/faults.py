"""Fault injection, set at run time through ``PUT /dev/faults`` (docs/design.md#emulator).

What can go wrong with the real service, on demand:

* ``errors``: answer matching calls with a given status and body (5xx/62, 206/65, 429...),
  for the next ``count`` calls, at a ``rate`` (reproducible with ``seed``), or always;
* ``latency``: answer matching calls late. ``when: "before"`` delays before the call is
  handled; ``when: "after"`` handles it, then delays the answer, which is what a client
  timeout looks like from the client (the call took effect, the answer never came);
* ``notFoundSeconds`` (from ``notFoundAfter`` seconds after the PUT): an HA-style window in
  which query/update/updateLayout/stop of existing tasks answer 404 "failed to find worker";
  with ``failover``, the tasks live when the window opens also fail over for real (a gap in
  the recording, then ``bak<n>_`` files and event 12, as ``POST /dev/recordings/{sid}/failover``
  does for one task);
* ``startNotFoundSeconds``: every task answers 404 during its first seconds
  (docs/service/api-contract.md#status-values);
* ``uploadFailures`` / ``uploadFailureRate`` / ``uploadLatency``: storage uploads fail (the
  file goes to the backup area) or are slow;
* ``ncsDuplicateRate``: notifications are delivered twice, the copy later (out of order);
  ``ncsDropRate``: notifications are lost (never posted, as when NCS gives up);
  ``ncsDelayRate`` / ``ncsDelaySeconds``: notifications are held back, so later ones overtake
  them (reordered).

``PUT`` replaces the whole setting; ``GET`` shows what is left of it (remaining counts, the
seconds left before and in the 404 window).

Example::

    {"errors": [{"operations": ["start"], "status": 500, "code": 62,
                 "reason": "request timeout", "count": 2}],
     "latency": [{"operations": ["query"], "seconds": 12, "when": "after", "count": 1}],
     "notFoundSeconds": 10, "notFoundAfter": 5,
     "uploadFailures": 1, "seed": 7}
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emulator.errors import ApiError

Operation = Literal["acquire", "start", "query", "update", "updateLayout", "stop"]
TASK_OPERATIONS: tuple[Operation, ...] = ("query", "update", "updateLayout", "stop")
Seconds = Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Selector(_Strict):
    """Which calls a fault hits: ``operations`` (None: every REST operation), then ``count``
    (only the next N matching calls) or ``rate`` (each matching call with this probability);
    neither: every matching call."""

    operations: list[Operation] | None = None
    count: Annotated[int, Field(ge=1)] | None = None
    rate: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _count_or_rate(self) -> _Selector:
        if self.count is not None and self.rate is not None:
            raise ValueError('give "count" or "rate", not both')
        return self

    def matches(self, operation: Operation) -> bool:
        return self.operations is None or operation in self.operations


class ErrorFault(_Selector):
    """Answer matching calls with ``status`` and a service body (``code``/``reason``) or a
    gateway body (``message``)."""

    status: Annotated[int, Field(ge=200, le=599)]
    code: int | None = None
    reason: str | None = None
    message: str | None = None

    @model_validator(mode="after")
    def _has_body(self) -> ErrorFault:
        if self.code is None and self.message is None:
            raise ValueError('give "code" (and "reason") or "message"')
        return self

    def body(self) -> dict[str, Any]:
        if self.code is not None:
            return {"code": self.code, "reason": self.reason or ""}
        return {"message": self.message}


class LatencyFault(_Selector):
    """Delay matching calls by ``seconds``: ``before`` handling them, or ``after`` (the call
    takes effect; a client whose timeout is shorter never sees the answer)."""

    seconds: Seconds
    when: Literal["before", "after"] = "before"


class FaultSettings(_Strict):
    errors: list[ErrorFault] = Field(default_factory=list)
    latency: list[LatencyFault] = Field(default_factory=list)
    # For notFoundSeconds from notFoundAfter seconds after the PUT, these operations on
    # existing tasks answer 404 "failed to find worker", as during an HA failover
    # (docs/service/errors.md#not-found).
    notFoundSeconds: Seconds = 0
    notFoundAfter: Seconds = 0
    notFoundOperations: list[Operation] = Field(default_factory=lambda: list(TASK_OPERATIONS))
    # The window is a real HA failover of every task live when it opens
    # (docs/service/files.md#failover): the recording pauses for the window, then goes on in bak<n>_
    # files with a new uid.
    failover: bool = False
    # Each task answers 404 for this long after its start (docs/service/errors.md#not-found
    # "straight after start").
    startNotFoundSeconds: Seconds = 0
    uploadFailures: Annotated[int, Field(ge=0)] = 0  # the next N uploads fail
    uploadFailureRate: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0
    uploadLatency: Seconds = 0  # added to every upload
    # Each delivered notification is delivered once more, a little later
    # (docs/service/ncs.md#transport: NCS may duplicate and reorder; receivers deduplicate on
    # noticeId).
    ncsDuplicateRate: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0
    # Each notification is lost with this probability (docs/service/behaviour.md#monitoring: NCS is
    # not 100% reliable).
    ncsDropRate: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0
    # Each notification is held back ncsDelaySeconds with this probability: later ones overtake.
    ncsDelayRate: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0
    ncsDelaySeconds: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False)] = 1.0
    seed: int | None = None  # for reproducible rates


class FailoverRequest(_Strict):
    """``POST /dev/recordings/{sid}/failover``: the task migrates to a new server for
    ``seconds`` (404 "failed to find worker", nothing recorded), then records ``bak<n>_``
    files with a new uid (docs/service/files.md#failover, docs/service/behaviour.md#identity). The
    real migration takes up to about 90 s."""

    seconds: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = 3.0


class _Counted:
    """A selector's remaining count, consumed under the injector's lock."""

    def __init__(self, selector: _Selector) -> None:
        self.selector = selector
        self.remaining = selector.count

    def hit(self, operation: Operation, rng: random.Random) -> bool:
        if not self.selector.matches(operation):
            return False
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
            return True
        rate = self.selector.rate
        return rate is None or rng.random() < rate


class FaultInjector:
    """Thread-safe holder of the current :class:`FaultSettings`.

    Each kind of fault draws from its own random stream seeded from ``seed``, so the sequence
    of decisions for API calls does not depend on how many uploads happened in between.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._generation = 0
        self.configure(FaultSettings())

    def configure(self, settings: FaultSettings) -> None:
        with self._lock:
            self._settings = settings
            self._errors = [_Counted(e) for e in settings.errors]
            self._latency = [_Counted(f) for f in settings.latency]
            now = self._clock()
            self._generation += 1  # each PUT opens a new window, failed over once
            self._not_found_from = now + settings.notFoundAfter
            self._not_found_until = self._not_found_from + settings.notFoundSeconds
            self._upload_failures = settings.uploadFailures
            seed = settings.seed
            self._error_rng = random.Random(None if seed is None else f"{seed}:errors")
            self._latency_rng = random.Random(None if seed is None else f"{seed}:latency")
            self._upload_rng = random.Random(None if seed is None else f"{seed}:uploads")
            self._ncs_rng = random.Random(None if seed is None else f"{seed}:ncs")

    def describe(self) -> dict[str, Any]:
        with self._lock:
            data = self._settings.model_dump(mode="json")
            for kind, counted in (("errors", self._errors), ("latency", self._latency)):
                for item, state in zip(data[kind], counted, strict=True):
                    item["count"] = state.remaining
            now = self._clock()
            data["notFoundAfter"] = max(0.0, self._not_found_from - now)
            window_start = max(now, self._not_found_from)
            data["notFoundSeconds"] = max(0.0, self._not_found_until - window_start)
            data["uploadFailures"] = self._upload_failures
            return data

    def error_for(self, operation: Operation) -> ApiError | None:
        """The injected error for this call, if any (consumes one count)."""
        with self._lock:
            for state in self._errors:
                if state.hit(operation, self._error_rng):
                    fault = state.selector
                    assert isinstance(fault, ErrorFault)
                    return ApiError(fault.status, fault.body())
            return None

    def latency_for(self, operation: Operation, when: Literal["before", "after"]) -> float:
        """Seconds to delay this call at ``when`` (consumes counts of the faults that hit)."""
        with self._lock:
            total = 0.0
            for state in self._latency:
                fault = state.selector
                assert isinstance(fault, LatencyFault)
                if fault.when == when and state.hit(operation, self._latency_rng):
                    total += fault.seconds
            return total

    def not_found(self, operation: Operation) -> bool:
        """Whether the HA-style 404 window is open for this operation now."""
        with self._lock:
            now = self._clock()
            return (
                operation in self._settings.notFoundOperations
                and self._not_found_from <= now < self._not_found_until
            )

    def failover_window(self) -> tuple[int, float] | None:
        """With ``failover`` set and the 404 window open now: (an id of this window, seconds
        left in it), so that the service fails its tasks over once per window."""
        with self._lock:
            now = self._clock()
            if not self._settings.failover or not (
                self._not_found_from <= now < self._not_found_until
            ):
                return None
            return self._generation, self._not_found_until - now

    @property
    def start_not_found_seconds(self) -> float:
        with self._lock:
            return self._settings.startNotFoundSeconds

    def upload_fails(self) -> bool:
        with self._lock:
            if self._upload_failures > 0:
                self._upload_failures -= 1
                return True
            rate = self._settings.uploadFailureRate
            return rate > 0 and self._upload_rng.random() < rate

    @property
    def upload_latency(self) -> float:
        with self._lock:
            return self._settings.uploadLatency

    def ncs_drop(self) -> bool:
        """Whether to lose this notification."""
        with self._lock:
            rate = self._settings.ncsDropRate
            return rate > 0 and self._ncs_rng.random() < rate

    def ncs_delay(self) -> float:
        """Seconds to hold this notification back (0: send it in its turn)."""
        with self._lock:
            rate = self._settings.ncsDelayRate
            if rate > 0 and self._ncs_rng.random() < rate:
                return self._settings.ncsDelaySeconds
            return 0.0

    def ncs_duplicate(self) -> bool:
        """Whether to deliver this notification a second time."""
        with self._lock:
            rate = self._settings.ncsDuplicateRate
            return rate > 0 and self._ncs_rng.random() < rate

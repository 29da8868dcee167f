"""cloudrec's one error tree.

Every failure a caller or a task can see is one of these classes. Third-party errors
(``requests``, ``redis``, ``pydantic``) are translated into them at exactly one boundary each
(:mod:`worker.client` for HTTP, :mod:`worker.webhook_http` for webhooks,
:mod:`worker.jobs` for spec validation) with ``raise ... from``.

::

    CloudrecError
    ├── JobSpecError              invalid job spec: names the field and the rule (nothing was sent)
    ├── JobNotFound               no job record with that id
    ├── RateLimitWait             the shared API budget is spent: try again after ``retry_after``
    ├── NotDurable                no Redis replica confirmed a submit in time: not acknowledged
    ├── WebhookError              a completion webhook was not delivered (:mod:`worker.callbacks`)
    │   └── WebhookRefused        its target is not allowed (not public, credentials): never sent
    └── ApiError                  the recording API failed; carries operation, status, code, reason,
        │                         request id and the :class:`Action` the worker takes
        ├── TransportError        no HTTP answer (connect error, timeout): RETRY
        ├── RetryableApiError     5xx, 206/65, 429 and unclassified answers: RETRY with backoff
        ├── ReacquireError        433, 432, 1001, 1003, 502 on start: ACQUIRE a new resource
        ├── TaskConflict          53: ACQUIRE again with another recorder uid
        ├── PermanentApiError     400/2, 8, 401, 1013, 1028, 109/110, no route: fail the job (FAIL)
        ├── WorkerNotFound        404 "failed to find worker": the task is gone or mid-failover
        └── outcomes that end a step, not the job (TERMINAL):
            ├── AlreadyStarted    201/7: start already happened for this resource
            ├── EmptyRecording    206/435 on stop: nobody published, no files
            └── AlreadyStopping   400/49: a stop is already under way

Classification follows docs/service/errors.md#classification and lives in :func:`classify_api_error`
only.
"""

from __future__ import annotations

import enum
from typing import Any

from contract.codes import ErrorCode


class Action(enum.Enum):
    """What the worker does about an API failure."""

    RETRY = "retry"  # same request again, exponential backoff with jitter
    ACQUIRE = "acquire"  # start over with a new resource (and maybe a new uid)
    FAIL = "fail"  # permanent: the request is wrong; fail the job with the code and reason
    TERMINAL = "terminal"  # not an error for the job: the step has a definite outcome
    AMBIGUOUS = "ambiguous"  # 404 on a known task: retry inside the failover window, else gone


class CloudrecError(Exception):
    """Base of every error cloudrec raises on purpose."""


class LocatorUnavailable(CloudrecError):
    """The list of the service's recordings (a ``worker.locator.RecordingLocator``) cannot be
    had: the emulator's dev API did not answer, or refused."""


class JobSpecError(CloudrecError, ValueError):
    """A job spec broke a rule. ``str(err)`` names each field and its rule."""


class JobNotFound(CloudrecError, KeyError):
    """No job record with this id."""

    def __str__(self) -> str:
        return f"no job with id {self.args[0]!r}" if self.args else "job not found"


class RateLimitWait(CloudrecError):
    """The shared API budget for this second is spent; the call was not made.

    ``priority`` names the limiter priority that had to wait (``stop``, ``start``, ...);
    ``app`` the app whose budget it was (each App ID has its own).
    """

    def __init__(self, retry_after: float, priority: str = "", app: str = "default") -> None:
        super().__init__(f"API rate limit budget spent; retry in {retry_after:.2f} s")
        self.retry_after = retry_after
        self.priority = priority
        self.app = app


class NotDurable(CloudrecError):
    """A submit was written to the Redis master but not confirmed by the replicas it must wait
    for (``CLOUDREC_REDIS_WAIT_REPLICAS``, Redis ``WAIT``) in time, or its record was gone once
    a failover had moved the master: the job is not acknowledged. Submitting the same spec
    (with its ``job_id``) again is safe: it returns the job once a replica holds it."""


class WebhookError(CloudrecError):
    """A completion webhook POST failed: no answer, or a non-2xx status.

    Carries the HTTP ``status`` (None without an answer) and a short ``reason``; never the
    signature, the signing key or the body.
    """

    def __init__(self, status: int | None, reason: str) -> None:
        shown = f"HTTP {status}: {reason}" if status is not None else reason
        super().__init__(f"webhook not delivered: {shown}")
        self.status = status
        self.reason = reason


class WebhookRefused(WebhookError):
    """A webhook target the policy refuses (:mod:`worker.webhook_http`): a non-public address
    not in CLOUDREC_WEBHOOK_ALLOW, a URL with credentials. Permanent: nothing was sent."""

    def __init__(self, rule: str) -> None:
        super().__init__(None, f"refused: {rule}")
        self.rule = rule


class MergeError(CloudrecError):
    """A job's files could not be merged into one MP4 (:mod:`worker.merge`): the files are not
    in its storage, cannot be read or written there, or cannot be joined without re-encoding.
    Recorded on the job (``merged.error``); the job's own state is not changed by it. Never
    carries a storage credential."""


class ApiError(CloudrecError):
    """A call to the recording API failed. Never carries credentials or tokens.

    ``app`` names the app profile whose call it was (set by the client that made it).
    """

    action: Action = Action.RETRY
    app: str = "default"

    def __init__(
        self,
        operation: str,
        *,
        status: int | None = None,
        code: int | None = None,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.operation = operation
        self.status = status
        self.code = code
        self.reason = reason
        self.request_id = request_id
        super().__init__(self._describe())

    def _describe(self) -> str:
        details = [
            f"HTTP {self.status}" if self.status is not None else None,
            f"code {self.code}" if self.code is not None else None,
            repr(self.reason) if self.reason else None,
            f"request id {self.request_id}" if self.request_id else None,
        ]
        shown = ", ".join(d for d in details if d)
        return f"{self.operation} failed" + (f": {shown}" if shown else "")

    @property
    def retryable(self) -> bool:
        return self.action is Action.RETRY

    def as_record(self) -> dict[str, Any]:
        """The error as stored on a job record (no secrets by construction)."""
        return {
            "operation": self.operation,
            "status": self.status,
            "code": self.code,
            "reason": self.reason,
            "request_id": self.request_id,
            "kind": type(self).__name__,
        }


class TransportError(ApiError):
    """No HTTP answer: connection refused or reset, DNS failure, timeout."""

    action = Action.RETRY


class RetryableApiError(ApiError):
    """A transient service-side failure: 5xx, 206/65, 429, or an unclassified answer."""

    action = Action.RETRY


class RateLimitedByService(RetryableApiError):
    """429 from the service itself: our shared limiter let too much through, back off longer."""


class ReacquireError(ApiError):
    """The resource cannot be used (expired, mismatched, unparsable, no worker): acquire again."""

    action = Action.ACQUIRE


class TaskConflict(ApiError):
    """53: a task with this cname+uid already runs; acquire again with another recorder uid."""

    action = Action.ACQUIRE


class PermanentApiError(ApiError):
    """The request itself is wrong (bad parameter, credentials, route, token): do not retry."""

    action = Action.FAIL


class WorkerNotFound(ApiError):
    """404 "failed to find worker": the task exited, never started, or is mid-failover."""

    action = Action.AMBIGUOUS


class AlreadyStarted(ApiError):
    """201/7: start was already accepted for this resource."""

    action = Action.TERMINAL


class EmptyRecording(ApiError):
    """206/435 on stop: nobody published, so there are no files. The session is over."""

    action = Action.TERMINAL


class AlreadyStopping(ApiError):
    """400/49: the task is already exiting (duplicate stop, kicked, idle exit)."""

    action = Action.TERMINAL


# Codes that mean "this resource is unusable, get a new one"
# (docs/service/errors.md#classification).
_REACQUIRE_CODES = frozenset(
    {
        ErrorCode.PARAMETER_MISMATCH,
        ErrorCode.RESOURCE_EXPIRED,
        ErrorCode.RESOURCE_UNPARSABLE,
        ErrorCode.RESOURCE_MISMATCH,
    }
)
# Codes that mean "the request is wrong" whatever the HTTP status (docs/service/errors.md#codes,
# docs/service/errors.md#classification).
_PERMANENT_CODES = frozenset(
    {
        ErrorCode.INVALID_PARAMETER,
        ErrorCode.BAD_REQUEST_HEADER,
        ErrorCode.TOKEN_EXPIRED,
        ErrorCode.TOKEN_INVALID,
        ErrorCode.INVALID_APPID,
        ErrorCode.INVALID_CHANNEL_NAME,
        ErrorCode.NO_ACTIVE_STATUS,
        ErrorCode.VENDOR_OVERLOAD,
        ErrorCode.INVALID_CHANNEL_NAME_LEGACY,
        ErrorCode.INVALID_LAYOUT,
    }
)


def classify_api_error(
    operation: str,
    status: int,
    body: dict[str, Any] | None,
    request_id: str | None = None,
) -> ApiError:
    """Map one non-200 answer to its class (docs/service/errors.md#classification). The only
    classifier there is."""
    body = body or {}
    code = _int_or_none(body.get("code"))
    reason = body.get("reason") or body.get("message")
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "reason": str(reason) if reason is not None else None,
        "request_id": request_id,
    }
    cls = _error_class(operation, status, code, has_code="code" in body)
    return cls(operation, **kwargs)


def _error_class(
    operation: str, status: int, code: int | None, *, has_code: bool
) -> type[ApiError]:
    if status == 201 and code == ErrorCode.ALREADY_STARTED:
        return AlreadyStarted
    if status == 206:
        if code == ErrorCode.NO_RECORDED_DATA and operation == "stop":
            return EmptyRecording
        return RetryableApiError  # 65 "request not completed" and other in-progress answers
    if status == 429:
        return RateLimitedByService
    if status == 404:
        # A gateway 404 has no code: the URL or method is wrong, which no retry fixes.
        return WorkerNotFound if has_code else PermanentApiError
    if code == ErrorCode.INVALID_OPERATION:
        return AlreadyStopping
    if code == ErrorCode.TASK_CONFLICT:
        return TaskConflict
    if code in _REACQUIRE_CODES:
        return ReacquireError
    if code == ErrorCode.WORKER_ALLOCATION_FAILED and operation == "start":
        return ReacquireError  # "Failed to allocate worker": new acquire + start
    if status == 401:
        return PermanentApiError
    if status >= 500:
        return RetryableApiError  # includes 62 request timeout and acquire 500/501/504
    if status >= 400 and (code in _PERMANENT_CODES or not has_code):
        return PermanentApiError
    if 400 <= status < 500:
        return PermanentApiError
    return RetryableApiError


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

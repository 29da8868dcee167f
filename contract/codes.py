"""The numbers the service answers with: recording status values and error codes.

docs/service/api-contract.md#status-values (``serverResponse.status`` of query, also event 3's
``status``) and 8 (error codes).
"""

from __future__ import annotations

from enum import IntEnum


class RecordingStatus(IntEnum):
    """``serverResponse.status`` values (docs/service/api-contract.md#status-values)."""

    NOT_STARTED = 0
    INITIALIZED = 1
    STARTING = 2
    PARTIALLY_READY = 3
    READY = 4
    IN_PROGRESS = 5
    STOP_REQUESTED = 6
    STOPPED = 7
    EXITED = 8
    EXITED_ABNORMALLY = 20


# The recorder is running: a start is confirmed.
RUNNING = frozenset({RecordingStatus.READY, RecordingStatus.IN_PROGRESS})
# The recorder left without an error (a stop, or maxIdleTime with nobody in the channel).
LEFT = frozenset({RecordingStatus.STOP_REQUESTED, RecordingStatus.STOPPED, RecordingStatus.EXITED})
# The recorder is gone, one way or the other.
ENDED = LEFT | {RecordingStatus.EXITED_ABNORMALLY}


class ErrorCode(IntEnum):
    """The ``code`` of a service-level error body (docs/service/errors.md#codes). A gateway error
    has no code (docs/service/errors.md#body-shapes)."""

    INVALID_PARAMETER = 2
    ALREADY_STARTED = 7  # with HTTP 201
    BAD_REQUEST_HEADER = 8  # wrong Content-Type or route, or a body that is not JSON
    INVALID_OPERATION = 49  # a repeated stop, or the task is already exiting
    UPLOAD_TIMEOUT = 50  # with HTTP 206: a synchronous stop's uploads outlast 20 s
    START_TIMEOUT = 52
    TASK_CONFLICT = 53  # already recording with the same cname+uid
    REQUEST_TIMEOUT = 62  # on acquire: cloud recording not enabled for the App ID
    NOT_COMPLETED = 65  # network jitter: retry with the same resourceId
    TOKEN_EXPIRED = 109
    TOKEN_INVALID = 110
    INVALID_APPID = 400
    INVALID_CHANNEL_NAME = 401
    WORKER_NOT_FOUND = 404
    NO_ACTIVE_STATUS = 405
    VENDOR_OVERLOAD = 406
    PARAMETER_MISMATCH = 432  # appid, cname or uid does not match the resourceId
    RESOURCE_EXPIRED = 433  # not started within 5 minutes of acquire
    NO_RECORDED_DATA = 435  # with HTTP 206, on stop: nobody sent a stream
    INTERNAL_ERROR = 500
    SERVICE_EXITING = 501
    WORKER_ALLOCATION_FAILED = 502  # on start: "Failed to allocate worker"
    ALLOCATE_TIMEOUT = 504
    RESOURCE_UNPARSABLE = 1001
    RESOURCE_MISMATCH = 1003  # App ID or sid does not match the resourceId
    INVALID_CHANNEL_NAME_LEGACY = 1013
    INVALID_LAYOUT = 1028  # an invalid updateLayout body

"""Tier 1: every status/code of docs/service/errors.md#classification lands in its class and
action."""

from __future__ import annotations

import pytest

from worker.errors import (
    Action,
    AlreadyStarted,
    AlreadyStopping,
    EmptyRecording,
    PermanentApiError,
    RateLimitedByService,
    ReacquireError,
    RetryableApiError,
    TaskConflict,
    WorkerNotFound,
    classify_api_error,
)


@pytest.mark.parametrize(
    ("operation", "status", "body", "cls", "action"),
    [
        ("start", 201, {"code": 7, "reason": "already started"}, AlreadyStarted, Action.TERMINAL),
        (
            "query",
            206,
            {"code": 65, "reason": "request not completed"},
            RetryableApiError,
            Action.RETRY,
        ),
        ("stop", 206, {"code": 435, "reason": "no recorded data"}, EmptyRecording, Action.TERMINAL),
        ("stop", 206, {"code": 65}, RetryableApiError, Action.RETRY),
        ("start", 400, {"code": 2, "reason": "bad maxIdleTime"}, PermanentApiError, Action.FAIL),
        ("start", 400, {"code": 8}, PermanentApiError, Action.FAIL),
        (
            "stop",
            400,
            {"code": 49, "reason": "invalid operation"},
            AlreadyStopping,
            Action.TERMINAL,
        ),
        ("start", 400, {"code": 53, "reason": "task conflict"}, TaskConflict, Action.ACQUIRE),
        ("start", 400, {"code": 433, "reason": "resource expired"}, ReacquireError, Action.ACQUIRE),
        ("start", 400, {"code": 432}, ReacquireError, Action.ACQUIRE),
        ("start", 400, {"code": 1001}, ReacquireError, Action.ACQUIRE),
        ("query", 400, {"code": 1003}, ReacquireError, Action.ACQUIRE),
        (
            "start",
            500,
            {"code": 502, "reason": "Failed to allocate worker"},
            ReacquireError,
            Action.ACQUIRE,
        ),
        ("acquire", 500, {"code": 501}, RetryableApiError, Action.RETRY),
        ("acquire", 500, {"code": 504}, RetryableApiError, Action.RETRY),
        ("start", 500, {"code": 62}, RetryableApiError, Action.RETRY),
        ("query", 504, {"code": 62}, RetryableApiError, Action.RETRY),
        ("stop", 503, None, RetryableApiError, Action.RETRY),
        ("start", 429, {"message": "API rate limit exceeded"}, RateLimitedByService, Action.RETRY),
        (
            "query",
            404,
            {"code": 404, "reason": "failed to find worker"},
            WorkerNotFound,
            Action.AMBIGUOUS,
        ),
        (
            "query",
            404,
            {"message": "no Route matched with those values"},
            PermanentApiError,
            Action.FAIL,
        ),
        (
            "acquire",
            401,
            {"message": "Invalid authentication credentials"},
            PermanentApiError,
            Action.FAIL,
        ),
        (
            "acquire",
            400,
            {"code": 401, "reason": "invalid_channel_name"},
            PermanentApiError,
            Action.FAIL,
        ),
        (
            "acquire",
            400,
            {"code": 406, "reason": "vendor_over_load"},
            PermanentApiError,
            Action.FAIL,
        ),
        ("start", 400, {"code": 110}, PermanentApiError, Action.FAIL),
    ],
)
def test_classification(operation, status, body, cls, action):
    err = classify_api_error(operation, status, body, request_id="rid-1")
    assert type(err) is cls
    assert err.action is action
    assert err.status == status
    assert err.request_id == "rid-1"


def test_message_names_operation_status_code_reason_and_request_id():
    err = classify_api_error("start", 400, {"code": 2, "reason": "maxIdleTime"}, "abc")
    assert str(err) == "start failed: HTTP 400, code 2, 'maxIdleTime', request id abc"
    assert err.as_record() == {
        "operation": "start",
        "status": 400,
        "code": 2,
        "reason": "maxIdleTime",
        "request_id": "abc",
        "kind": "PermanentApiError",
    }


def test_string_codes_are_read_as_numbers():
    assert isinstance(classify_api_error("start", 400, {"code": "53"}), TaskConflict)

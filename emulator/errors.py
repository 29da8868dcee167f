"""The real service's error bodies (docs/service/api-contract.md#start-answers,
docs/service/errors.md, docs/service/api-contract.md#stop), as one exception type.

Service-level errors carry ``{"code", "reason"}``; gateway-level errors carry ``{"message"}``
and no ``code`` (docs/service/errors.md#body-shapes). The service raises :class:`ApiError`; the HTTP
layer turns it into the response unchanged.
"""

from __future__ import annotations

from typing import Any

from contract.codes import ErrorCode


class ApiError(Exception):
    """An error answer: HTTP ``status`` and the JSON ``body`` the real service sends."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def service_error(status: int, code: int, reason: str, **extra: Any) -> ApiError:
    return ApiError(status, {"code": int(code), "reason": reason, **extra})


def gateway_error(status: int, message: str) -> ApiError:
    return ApiError(status, {"message": message})


# Gateway level (docs/service/errors.md#body-shapes)
def unauthorized() -> ApiError:
    return gateway_error(401, "Unauthorized")


def invalid_credentials() -> ApiError:
    return gateway_error(401, "Invalid authentication credentials")


def no_route() -> ApiError:
    return gateway_error(404, "no Route matched with those values")


def rate_limited() -> ApiError:
    return gateway_error(429, "API rate limit exceeded")


# Service level
def bad_request_header(reason: str) -> ApiError:
    """Legacy code 8: wrong Content-Type, or a body that is not JSON
    (docs/service/errors.md#codes)."""
    return service_error(400, ErrorCode.BAD_REQUEST_HEADER, reason)


def invalid_parameter(reason: str) -> ApiError:
    """Code 2: the reason names the field and the rule."""
    return service_error(400, ErrorCode.INVALID_PARAMETER, reason)


def invalid_appid() -> ApiError:
    return service_error(400, ErrorCode.INVALID_APPID, "invalid_appid")


def invalid_channel_name() -> ApiError:
    return service_error(400, ErrorCode.INVALID_CHANNEL_NAME, "invalid_channel_name")


def resource_unparsable() -> ApiError:
    return service_error(400, ErrorCode.RESOURCE_UNPARSABLE, "resourceId could not be parsed")


def parameter_mismatch() -> ApiError:
    return service_error(
        400, ErrorCode.PARAMETER_MISMATCH, "parameter mismatch: appid, cname or uid does not match"
    )


def resource_expired() -> ApiError:
    return service_error(400, ErrorCode.RESOURCE_EXPIRED, "resource expired")


def already_started(resource_id: str) -> ApiError:
    return service_error(201, ErrorCode.ALREADY_STARTED, "already started", resourceId=resource_id)


def task_conflict() -> ApiError:
    return service_error(400, ErrorCode.TASK_CONFLICT, "task conflict")


def worker_not_found() -> ApiError:
    return service_error(404, ErrorCode.WORKER_NOT_FOUND, "failed to find worker")


def invalid_operation() -> ApiError:
    return service_error(400, ErrorCode.INVALID_OPERATION, "invalid operation")


def no_recorded_data() -> ApiError:
    return service_error(206, ErrorCode.NO_RECORDED_DATA, "no recorded data")


def internal_error() -> ApiError:
    return service_error(500, ErrorCode.INTERNAL_ERROR, "internal_error")


def upload_timeout(**echo: Any) -> ApiError:
    """A synchronous stop whose uploads outlast the service's 20 s
    (docs/service/api-contract.md#stop, code 50). The recording still finishes and uploads; a later
    query shows it."""
    return service_error(206, ErrorCode.UPLOAD_TIMEOUT, "upload timeout", **echo)

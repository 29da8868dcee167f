"""The Cloud Recording REST routes (docs/service/api-contract.md#endpoints) and the gateway steps
every one of them runs.

Each route authenticates, checks the app id and the QPS limit, applies the injected faults,
reads the JSON body, and hands it to the :class:`~emulator.service.RecordingService` on a
worker thread. The app (``emulator.app``) keeps its :class:`Gateway` in ``app.state``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from contract import routes
from emulator import errors
from emulator.config import EmulatorApp, EmulatorConfig
from emulator.faults import Operation
from emulator.limits import JsonTooDeep, load_json
from emulator.ratelimit import SlidingWindowLimiter
from emulator.service import ApiResult, RecordingService

router = APIRouter()

API_LOG_LIMIT = 100_000


class Gateway:
    """The gateway steps of every REST call."""

    def __init__(self, config: EmulatorConfig, service: RecordingService) -> None:
        self.config = config
        self.service = service
        self.limiter = SlidingWindowLimiter(
            config.qps, rates={app.app_id: app.qps for app in config.apps}
        )
        # Every REST call that passed the auth checks, for GET /dev/api-requests (the last
        # API_LOG_LIMIT): when each operation reached the service, and whether the rate limit
        # let it in.
        self.api_log: deque[dict[str, Any]] = deque(maxlen=API_LOG_LIMIT)

    def authenticate(self, request: Request, appid: str | None = None) -> None:
        """HTTP Basic with the credentials of ``appid`` (``EmulatorConfig.app``); without an
        App ID (the NCS IP route), those of any app served."""
        if appid is not None:
            expected = [self.config.app(appid)]
        else:
            expected = [self.config.app(""), *self.config.apps]
        header = request.headers.get("authorization")
        if not header:
            raise errors.unauthorized()
        if not header.startswith("Basic "):
            raise errors.invalid_credentials()
        try:  # normalise the base64 (padding, whitespace) before comparing
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            raise errors.invalid_credentials() from None
        given = b"Basic " + base64.b64encode(decoded)
        matches = [hmac.compare_digest(given, _basic(app)) for app in expected]
        if not any(matches):
            raise errors.invalid_credentials()

    def check_appid(self, appid: str) -> None:
        allowed = self.config.app_ids | {app.app_id for app in self.config.apps}
        if not appid.strip() or (self.config.app_ids and appid not in allowed):
            raise errors.invalid_appid()

    async def call(
        self,
        request: Request,
        appid: str,
        operation: Operation,
        handler: Callable[[Any], ApiResult],
        *,
        with_body: bool = True,
    ) -> JSONResponse:
        self.authenticate(request, appid)
        self.check_appid(appid)
        admitted = self.limiter.allow(appid)
        self.api_log.append(
            {"operation": operation, "at": time.time(), "appId": appid, "admitted": admitted}
            | {k: v for k, v in request.path_params.items() if k in ("resourceid", "sid")}
        )
        if not admitted:
            raise errors.rate_limited()
        faults = self.service.faults
        delay = faults.latency_for(operation, "before")
        if delay:
            await anyio.sleep(delay)
        injected = faults.error_for(operation)
        if injected is not None:
            raise injected
        body = await _api_body(request) if with_body else None
        try:
            status, payload = await anyio.to_thread.run_sync(handler, body)
        finally:
            # "after": the call took effect; its answer (or error) comes late, if ever.
            delay = faults.latency_for(operation, "after")
            if delay:
                await anyio.sleep(delay)
        return JSONResponse(payload, status_code=status)


def _basic(app: EmulatorApp) -> bytes:
    return b"Basic " + base64.b64encode(f"{app.customer_id}:{app.customer_secret}".encode())


async def _api_body(request: Request) -> Any:
    """The JSON body, or 400 code 8 for a wrong Content-Type or a body that is not JSON."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise errors.bad_request_header(
            f"Content-Type must be application/json (got {content_type or 'none'!r})"
        )
    raw = await request.body()
    try:
        return load_json(raw)
    except JsonTooDeep as exc:
        raise errors.bad_request_header(str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.bad_request_header("body is not valid JSON") from None


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _service(request: Request) -> RecordingService:
    service: RecordingService = request.app.state.service
    return service


@router.post(routes.ACQUIRE)
async def acquire(request: Request, appid: str) -> JSONResponse:
    svc = _service(request)
    return await _gateway(request).call(request, appid, "acquire", lambda b: svc.acquire(appid, b))


@router.post(routes.START)
async def start(request: Request, appid: str, resourceid: str, mode: str) -> JSONResponse:
    svc = _service(request)
    return await _gateway(request).call(
        request, appid, "start", lambda b: svc.start(appid, resourceid, mode, b)
    )


@router.get(routes.QUERY)
async def query(request: Request, appid: str, resourceid: str, sid: str, mode: str) -> JSONResponse:
    svc = _service(request)
    return await _gateway(request).call(
        request,
        appid,
        "query",
        lambda _b: svc.query(appid, resourceid, sid, mode),
        with_body=False,
    )


@router.post(routes.UPDATE)
async def update(
    request: Request, appid: str, resourceid: str, sid: str, mode: str
) -> JSONResponse:
    svc = _service(request)
    return await _gateway(request).call(
        request, appid, "update", lambda b: svc.update(appid, resourceid, sid, mode, b)
    )


@router.post(routes.UPDATE_LAYOUT)
async def update_layout(
    request: Request, appid: str, resourceid: str, sid: str, mode: str
) -> JSONResponse:
    svc = _service(request)
    return await _gateway(request).call(
        request,
        appid,
        "updateLayout",
        lambda b: svc.update_layout(appid, resourceid, sid, mode, b),
    )


@router.post(routes.STOP)
async def stop(request: Request, appid: str, resourceid: str, sid: str, mode: str) -> JSONResponse:
    svc = _service(request)
    return await _gateway(request).call(
        request, appid, "stop", lambda b: svc.stop(appid, resourceid, sid, mode, b)
    )


@router.get(routes.NCS_IP)
async def ncs_ip(request: Request) -> JSONResponse:
    """The addresses notifications come from (docs/service/api-contract.md#endpoints,
    docs/service/ncs.md#transport): this emulator's host."""
    gateway = _gateway(request)
    gateway.authenticate(request)
    return JSONResponse({"data": {"service": {"hosts": [{"primaryIP": gateway.config.host}]}}})

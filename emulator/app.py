"""The emulator's HTTP app: the Cloud Recording REST paths (docs/service/api-contract.md#endpoints)
and the dev API.

Routes only: each REST route runs the gateway steps (auth, app id, QPS, injected faults,
Content-Type and JSON) and hands the parsed body to :class:`RecordingService`. Every answer,
errors included, is a JSON body the real service could send, with an ``X-Request-Id`` header;
FastAPI's own 422/500 bodies never reach a client.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator import errors
from emulator.channels import MEDIA_CONTEXT, ChannelError, JoinRequest, PatchRequest
from emulator.config import EmulatorConfig
from emulator.devauth import DevTokenMiddleware
from emulator.errors import ApiError
from emulator.faults import FailoverRequest, FaultSettings, Operation
from emulator.limits import BodyLimitMiddleware, JsonTooDeep, load_json
from emulator.media.access import MediaDirs
from emulator.openapi import install_openapi
from emulator.ratelimit import SlidingWindowLimiter
from emulator.service import ApiResult, RecordingService
from worker.api_models import channel_name_problem, describe_validation_error, uid_problem

log = logging.getLogger(__name__)

BASE = "/v1/apps/{appid}/cloud_recording"
TASK = BASE + "/resourceid/{resourceid}/sid/{sid}/mode/{mode}"
REQUEST_ID = "X-Request-Id"
_DESCRIPTION = (
    "The Cloud Recording REST API in composite (mix) mode, as the real service answers it "
    "(HTTP Basic auth; JSON bodies; errors as {code, reason} or, at the gateway, {message}), "
    "plus the emulator's dev API (/dev/...: simulated channels, recordings, faults, events)."
)


class RequestIdMiddleware:
    """Adds ``X-Request-Id`` to every response and turns any unhandled exception into
    ``500 {"code":500,"reason":"internal_error"}`` (logged), never a stack trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "request %s %s failed (request id %s)",
                scope.get("method"),
                scope.get("path"),
                request_id,
            )
            if started:
                raise
            response = JSONResponse(errors.internal_error().body, status_code=500)
            await response(scope, receive, send_with_id)


class DevRequestLog:
    """Remembers who called the dev API (method, path, User-Agent; the last ``LIMIT``), shown
    by ``GET /dev/requests``: a test asks it whether a worker in real-service mode used the
    dev API, which the real service does not have."""

    LIMIT = 10_000

    def __init__(self, app: ASGIApp, entries: deque[dict[str, str]]) -> None:
        self.app = app
        self.entries = entries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/dev/") and path != "/dev/requests":
            headers = dict(scope.get("headers", []))
            agent = headers.get(b"user-agent", b"").decode("latin-1")
            self.entries.append({"method": scope["method"], "path": path, "userAgent": agent})
        await self.app(scope, receive, send)


class _Gateway:
    """The gateway steps of every REST call."""

    def __init__(self, config: EmulatorConfig, service: RecordingService) -> None:
        self.config = config
        self.service = service
        self.limiter = SlidingWindowLimiter(config.qps)
        expected = f"{config.customer_id}:{config.customer_secret}".encode()
        self._expected = b"Basic " + base64.b64encode(expected)

    def authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise errors.unauthorized()
        if not header.startswith("Basic "):
            raise errors.invalid_credentials()
        try:  # normalise the base64 (padding, whitespace) before comparing
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            raise errors.invalid_credentials() from None
        if not hmac.compare_digest(b"Basic " + base64.b64encode(decoded), self._expected):
            raise errors.invalid_credentials()

    def check_appid(self, appid: str) -> None:
        if not appid.strip() or (self.config.app_ids and appid not in self.config.app_ids):
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
        self.authenticate(request)
        self.check_appid(appid)
        if not self.limiter.allow(appid):
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


async def _dev_body(
    request: Request, model: type[BaseModel], context: dict[str, Any] | None = None
) -> Any:
    raw = await request.body()
    try:
        data = load_json(raw) if raw.strip() else {}
    except JsonTooDeep as exc:
        raise errors.bad_request_header(str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.bad_request_header("body is not valid JSON") from None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise errors.invalid_parameter(describe_validation_error(exc)) from None


def _dev_cname(cname: str) -> str:
    problem = channel_name_problem(cname)
    if problem:
        raise errors.invalid_parameter(f"cname: {problem}")
    return cname


def _dev_uid(uid: str) -> str:
    problem = uid_problem(uid)
    if problem:
        raise errors.invalid_parameter(f"uid: {problem}")
    return uid


def create_app(config: EmulatorConfig, service: RecordingService | None = None) -> FastAPI:
    """The emulator as an ASGI app. Its lifespan starts and stops the service's clock."""
    svc = service or RecordingService(config)
    gateway = _Gateway(config, svc)
    media = {MEDIA_CONTEXT: MediaDirs.of(config.media_dirs)}  # where users' files may come from

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        svc.start_background()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(svc.close)

    app = FastAPI(
        title="cloudrec emulator",
        description=_DESCRIPTION,
        version="1",
        lifespan=lifespan,
        docs_url="/dev/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = svc
    app.state.config = config
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    if config.dev_token:
        app.add_middleware(DevTokenMiddleware, token=config.dev_token)
    # Outside the token check: a dev API call is logged even when it is refused.
    dev_requests: deque[dict[str, str]] = deque(maxlen=DevRequestLog.LIMIT)
    app.add_middleware(DevRequestLog, entries=dev_requests)
    app.add_middleware(RequestIdMiddleware)  # added last: outermost, so every answer has an id
    _install_error_handlers(app)
    install_openapi(app)

    # -- REST (docs/service/api-contract.md#endpoints) ---------------------------------------------

    @app.post(BASE + "/acquire")
    async def acquire(request: Request, appid: str) -> JSONResponse:
        return await gateway.call(request, appid, "acquire", lambda b: svc.acquire(appid, b))

    @app.post(BASE + "/resourceid/{resourceid}/mode/{mode}/start")
    async def start(request: Request, appid: str, resourceid: str, mode: str) -> JSONResponse:
        return await gateway.call(
            request, appid, "start", lambda b: svc.start(appid, resourceid, mode, b)
        )

    @app.get(TASK + "/query")
    async def query(
        request: Request, appid: str, resourceid: str, sid: str, mode: str
    ) -> JSONResponse:
        return await gateway.call(
            request,
            appid,
            "query",
            lambda _b: svc.query(appid, resourceid, sid, mode),
            with_body=False,
        )

    @app.post(TASK + "/update")
    async def update(
        request: Request, appid: str, resourceid: str, sid: str, mode: str
    ) -> JSONResponse:
        return await gateway.call(
            request, appid, "update", lambda b: svc.update(appid, resourceid, sid, mode, b)
        )

    @app.post(TASK + "/updateLayout")
    async def update_layout(
        request: Request, appid: str, resourceid: str, sid: str, mode: str
    ) -> JSONResponse:
        return await gateway.call(
            request,
            appid,
            "updateLayout",
            lambda b: svc.update_layout(appid, resourceid, sid, mode, b),
        )

    @app.post(TASK + "/stop")
    async def stop(
        request: Request, appid: str, resourceid: str, sid: str, mode: str
    ) -> JSONResponse:
        return await gateway.call(
            request, appid, "stop", lambda b: svc.stop(appid, resourceid, sid, mode, b)
        )

    @app.get("/v1/ncs/ip")
    async def ncs_ip(request: Request) -> JSONResponse:
        """The addresses notifications come from (docs/service/api-contract.md#endpoints,
        docs/service/ncs.md#transport): this emulator's host."""
        gateway.authenticate(request)
        return JSONResponse({"data": {"service": {"hosts": [{"primaryIP": config.host}]}}})

    # -- dev API (docs/design.md#fixed-interfaces): no auth, no rate limit -------------------------

    @app.get("/dev/channels")
    async def list_channels() -> JSONResponse:
        names = svc.channels.channel_names()
        return JSONResponse([svc.channels.describe(name) for name in names])

    @app.get("/dev/channels/{cname}")
    async def show_channel(cname: str) -> JSONResponse:
        return JSONResponse(svc.channels.describe(_dev_cname(cname)))

    @app.post("/dev/channels/{cname}/users")
    async def join(request: Request, cname: str) -> JSONResponse:
        body: JoinRequest = await _dev_body(request, JoinRequest, media)
        user = svc.channels.join(_dev_cname(cname), body)
        return JSONResponse({"cname": cname, **user.to_json()}, status_code=201)

    @app.delete("/dev/channels/{cname}/users/{uid}")
    async def leave(cname: str, uid: str) -> JSONResponse:
        svc.channels.leave(_dev_cname(cname), _dev_uid(uid))
        return JSONResponse(svc.channels.describe(cname))

    @app.patch("/dev/channels/{cname}/users/{uid}")
    async def patch_user(request: Request, cname: str, uid: str) -> JSONResponse:
        body: PatchRequest = await _dev_body(request, PatchRequest, media)
        user = svc.channels.patch(_dev_cname(cname), _dev_uid(uid), body)
        return JSONResponse({"cname": cname, **user.to_json()})

    @app.get("/dev/recordings")
    # ?live=true|false and ?resourceId=...: a caller that scans for live recordings (the
    # worker's reconciler) gets what runs, not the whole history.
    async def recordings(live: bool | None = None, resourceId: str | None = None) -> JSONResponse:
        return JSONResponse(svc.recordings(live=live, resource_id=resourceId))

    @app.get("/dev/recordings/{sid}")
    async def recording(sid: str) -> JSONResponse:
        found = svc.recording(sid)
        if found is None:
            return JSONResponse({"message": f"no recording with sid {sid!r}"}, status_code=404)
        return JSONResponse(found)

    @app.post("/dev/recordings/{sid}/failover")
    async def failover(request: Request, sid: str) -> JSONResponse:
        """HA failover of a live recording (docs/service/files.md#failover): 404 and no recording
        for ``seconds``, then event 12 (new uid) and bak<n>_ files. 409 if it is not live or already
        migrating."""
        body: FailoverRequest = await _dev_body(request, FailoverRequest)
        found = svc.failover(sid, body.seconds)
        if found is None:
            return JSONResponse({"message": f"no recording with sid {sid!r}"}, status_code=404)
        return JSONResponse(found)

    @app.get("/dev/events")
    async def events(sid: str | None = None) -> JSONResponse:
        """The notification events (docs/service/ncs.md) in the order they happened; ``?sid=``
        filters."""
        return JSONResponse(svc.events.events(sid))

    @app.post("/dev/reset")
    async def reset() -> JSONResponse:
        """Back to a fresh emulator: live recordings finish; resources, recordings, channels,
        events and faults are forgotten (files in storage stay)."""
        await anyio.to_thread.run_sync(svc.reset)
        return JSONResponse({"reset": True})

    @app.get("/dev/ncs")
    async def ncs() -> JSONResponse:
        """Delivery of the events to ``ncs_url``: attempts, delivered, failed, pending."""
        return JSONResponse(svc.events.delivery())

    @app.get("/dev/requests")
    async def requests_log() -> JSONResponse:
        """Who called the dev API (method, path, User-Agent), oldest first (the last 10,000)."""
        return JSONResponse({"requests": list(dev_requests)})

    @app.get("/dev/faults")
    async def get_faults() -> JSONResponse:
        return JSONResponse(svc.faults.describe())

    @app.put("/dev/faults")
    async def put_faults(request: Request) -> JSONResponse:
        settings: FaultSettings = await _dev_body(request, FaultSettings)
        svc.faults.configure(settings)
        return JSONResponse(svc.faults.describe())

    return app


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body, status_code=exc.status)

    async def channel_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ChannelError)
        return JSONResponse({"message": exc.message}, status_code=exc.status)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        # unknown route or method (docs/service/errors.md#body-shapes)
        if exc.status_code in (404, 405):
            return JSONResponse(errors.no_route().body, status_code=404)
        return JSONResponse({"message": str(exc.detail)}, status_code=exc.status_code)

    async def request_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        reason = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse(errors.invalid_parameter(reason).body, status_code=400)

    handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[JSONResponse]]] = {
        ApiError: api_error,
        ChannelError: channel_error,
        StarletteHTTPException: http_error,
        RequestValidationError: request_validation,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)

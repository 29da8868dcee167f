"""The emulator's HTTP app: wires the REST routes (``emulator.rest_routes``,
docs/service/api-contract.md#endpoints) and the dev API (``emulator.dev_routes``) to a
:class:`RecordingService`.

Every answer, errors included, is a JSON body the real service could send, with an
``X-Request-Id`` header; FastAPI's own 422/500 bodies never reach a client (the error handlers
and the middleware here see to that).
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contract import routes
from emulator import dev_routes, errors, rest_routes
from emulator.channels import MEDIA_CONTEXT, ChannelError
from emulator.config import EmulatorConfig
from emulator.dev_routes import DevRequestLog
from emulator.devauth import DevTokenMiddleware
from emulator.errors import ApiError
from emulator.limits import BodyLimitMiddleware
from emulator.media.access import MediaDirs
from emulator.openapi import install_openapi
from emulator.rest_routes import Gateway
from emulator.service import RecordingService

log = logging.getLogger(__name__)

REQUEST_ID = routes.REQUEST_ID_HEADER
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


def create_app(config: EmulatorConfig, service: RecordingService | None = None) -> FastAPI:
    """The emulator as an ASGI app. Its lifespan starts and stops the service's clock."""
    svc = service or RecordingService(config)

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
    app.state.gateway = Gateway(config, svc)
    # where users' files may come from (the dev API's join and patch validate against it)
    app.state.media_context = {MEDIA_CONTEXT: MediaDirs.of(config.media_dirs)}
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    if config.dev_token:
        app.add_middleware(DevTokenMiddleware, token=config.dev_token)
    # Outside the token check: a dev API call is logged even when it is refused.
    app.state.dev_requests = deque(maxlen=DevRequestLog.LIMIT)
    app.add_middleware(DevRequestLog, entries=app.state.dev_requests)
    app.add_middleware(RequestIdMiddleware)  # added last: outermost, so every answer has an id
    _install_error_handlers(app)
    install_openapi(app)

    app.include_router(rest_routes.router)
    app.include_router(dev_routes.router)
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

"""The emulator's dev API (``/dev/...``, docs/design.md#fixed-interfaces): simulated channels and
users, recordings, HA failover, events, NCS delivery, faults, reset. No auth (beyond the optional
dev token of ``emulator.devauth``) and no rate limit. The routes find the service and the media
context in ``app.state``, where ``emulator.app.create_app`` puts them."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from contract.models import channel_name_problem, describe_validation_error, uid_problem
from emulator import errors
from emulator.channels import JoinRequest, PatchRequest
from emulator.faults import FailoverRequest, FaultSettings
from emulator.limits import JsonTooDeep, load_json
from emulator.service import RecordingService

router = APIRouter()


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


def _service(request: Request) -> RecordingService:
    service: RecordingService = request.app.state.service
    return service


def _media(request: Request) -> dict[str, Any]:
    """The validation context of users' media: where their files may come from."""
    media: dict[str, Any] = request.app.state.media_context
    return media


def _no_recording(sid: str) -> JSONResponse:
    return JSONResponse({"message": f"no recording with sid {sid!r}"}, status_code=404)


@router.get("/dev/channels")
async def list_channels(request: Request) -> JSONResponse:
    channels = _service(request).channels
    return JSONResponse([channels.describe(name) for name in channels.channel_names()])


@router.get("/dev/channels/{cname}")
async def show_channel(request: Request, cname: str) -> JSONResponse:
    return JSONResponse(_service(request).channels.describe(_dev_cname(cname)))


@router.post("/dev/channels/{cname}/users")
async def join(request: Request, cname: str) -> JSONResponse:
    body: JoinRequest = await _dev_body(request, JoinRequest, _media(request))
    user = _service(request).channels.join(_dev_cname(cname), body)
    return JSONResponse({"cname": cname, **user.to_json()}, status_code=201)


@router.delete("/dev/channels/{cname}/users/{uid}")
async def leave(request: Request, cname: str, uid: str) -> JSONResponse:
    channels = _service(request).channels
    channels.leave(_dev_cname(cname), _dev_uid(uid))
    return JSONResponse(channels.describe(cname))


@router.patch("/dev/channels/{cname}/users/{uid}")
async def patch_user(request: Request, cname: str, uid: str) -> JSONResponse:
    body: PatchRequest = await _dev_body(request, PatchRequest, _media(request))
    user = _service(request).channels.patch(_dev_cname(cname), _dev_uid(uid), body)
    return JSONResponse({"cname": cname, **user.to_json()})


@router.get("/dev/recordings")
# ?live=true|false and ?resourceId=...: a caller that scans for live recordings (the
# worker's reconciler) gets what runs, not the whole history.
async def recordings(
    request: Request, live: bool | None = None, resourceId: str | None = None
) -> JSONResponse:
    return JSONResponse(_service(request).recordings(live=live, resource_id=resourceId))


@router.get("/dev/recordings/{sid}")
async def recording(request: Request, sid: str) -> JSONResponse:
    found = _service(request).recording(sid)
    return _no_recording(sid) if found is None else JSONResponse(found)


@router.post("/dev/recordings/{sid}/failover")
async def failover(request: Request, sid: str) -> JSONResponse:
    """HA failover of a live recording (docs/service/files.md#failover): 404 and no recording for
    ``seconds``, then event 12 (new uid) and bak<n>_ files. 409 if it is not live or already
    migrating."""
    body: FailoverRequest = await _dev_body(request, FailoverRequest)
    found = _service(request).failover(sid, body.seconds)
    return _no_recording(sid) if found is None else JSONResponse(found)


@router.get("/dev/events")
async def events(request: Request, sid: str | None = None) -> JSONResponse:
    """The notification events (docs/service/ncs.md) in the order they happened; ``?sid=``
    filters."""
    return JSONResponse(_service(request).events.events(sid))


@router.post("/dev/reset")
async def reset(request: Request) -> JSONResponse:
    """Back to a fresh emulator: live recordings finish; resources, recordings, channels,
    events and faults are forgotten (files in storage stay)."""
    await anyio.to_thread.run_sync(_service(request).reset)
    return JSONResponse({"reset": True})


class DevRequestLog:
    """Remembers who called the dev API (method, path, User-Agent; the last ``LIMIT``), shown
    by ``GET /dev/requests``: a test asks it whether a worker in real-service mode used the
    dev API, which the real service does not have. ASGI middleware; ``create_app`` installs it
    outside the dev token check, so a refused call is logged too."""

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


@router.get("/dev/requests")
async def requests_log(request: Request) -> JSONResponse:
    """Who called the dev API (method, path, User-Agent), oldest first (the last 10,000)."""
    entries: deque[dict[str, str]] = request.app.state.dev_requests
    return JSONResponse({"requests": list(entries)})


@router.get("/dev/api-requests")
async def api_requests(request: Request) -> JSONResponse:
    """Every REST call that passed the auth checks, oldest first (the last 100,000):
    ``operation``, ``at`` (unix seconds, when it reached the service), ``appId``, ``admitted``
    (false: refused by the rate limit, 429), and ``resourceid``/``sid`` from the path."""
    return JSONResponse({"requests": list(request.app.state.gateway.api_log)})


@router.get("/dev/ncs")
async def ncs(request: Request) -> JSONResponse:
    """Delivery of the events to ``ncs_url``: attempts, delivered, failed, pending."""
    return JSONResponse(_service(request).events.delivery())


@router.get("/dev/faults")
async def get_faults(request: Request) -> JSONResponse:
    return JSONResponse(_service(request).faults.describe())


@router.put("/dev/faults")
async def put_faults(request: Request) -> JSONResponse:
    settings: FaultSettings = await _dev_body(request, FaultSettings)
    faults = _service(request).faults
    faults.configure(settings)
    return JSONResponse(faults.describe())

"""The REST client for the cloud recording API (docs/service/api-contract.md), composite ("mix")
mode.

One :class:`RecordingApiClient` per process: a ``requests.Session`` with HTTP Basic auth, explicit
connect/read timeouts, and the shared rate limiter in front of every call. This module is the one
boundary where ``requests`` exceptions and non-200 answers become :mod:`worker.errors` classes;
nothing above it sees a third-party error. Request bodies are built from the pydantic models of
:mod:`contract.models` and serialized with ``to_wire`` (the only place secrets are revealed,
and only into the request body, never into a log line or an exception).

Every call, answered or not, produces one log line (operation, HTTP status, API code, request
id, cname, sid; the job id comes from the log context of the task) and one call of the
``on_api_call`` hook (the Prometheus counter of API calls by operation, status and code).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from pydantic import BaseModel, ValidationError

from config import DEFAULT_APP, Settings
from contract import routes
from contract.models import (
    AcquireClientRequest,
    AcquireResponse,
    LayoutUpdate,
    QueryResponse,
    StartClientRequest,
    StartResponse,
    StopClientRequest,
    StopResponse,
    UpdateClientRequest,
    to_wire,
)
from worker.errors import (
    ApiError,
    PermanentApiError,
    RateLimitedByService,
    RetryableApiError,
    TransportError,
    classify_api_error,
)
from worker.limiter import Priority

log = logging.getLogger("cloudrec.api")

ResponseT = TypeVar("ResponseT", bound=BaseModel)
# How many times a stop refused with 429 is sent again within the same call (each through the
# limiter, which raises RateLimitWait instead when the wait would be long).
STOP_429_RESENDS = 3
STOP_429_PAUSE = 0.02
AcquireSlot = Callable[[Priority], None]
# Gives back the slot of this thread's last call: the service refused it with 429, uncounted.
RefundSlot = Callable[[], None]
# (operation, HTTP status or None when nothing answered, API code or None). Must not raise.
ApiCallHook = Callable[[str, int | None, int | None], None]


def _no_limit(_: Priority) -> None:
    return None


def _not_counted(operation: str, status: int | None, code: int | None) -> None:
    return None


def _no_refund() -> None:
    return None


class RecordingApiClient:
    """Typed calls to acquire, start, query, update, updateLayout and stop, for one app."""

    def __init__(
        self,
        settings: Settings,
        *,
        app: str = DEFAULT_APP,
        acquire_slot: AcquireSlot = _no_limit,
        refund_slot: RefundSlot = _no_refund,
        session: requests.Session | None = None,
        on_api_call: ApiCallHook = _not_counted,
    ) -> None:
        """``app`` names the app profile (App ID in the paths, its customer's Basic auth);
        ``acquire_slot`` must be that App ID's limiter; ``on_api_call`` sees every call's
        outcome (e.g. ``Metrics.api_call``)."""
        profile = settings.app_profile(app)
        self.app = app
        self._root = settings.api_base_url.rstrip("/")
        self._app_id = profile.app_id
        self._timeout = (settings.api_connect_timeout, settings.api_read_timeout)
        self._stop_timeout = (settings.api_connect_timeout, settings.api_stop_read_timeout)
        self._acquire_slot = acquire_slot
        self._refund_slot = refund_slot
        self._on_api_call = on_api_call
        self._session = environment_once(session or requests.Session(), self._root)
        self._session.auth = (profile.customer_id, profile.customer_secret.get_secret_value())
        self._session.headers["Content-Type"] = "application/json;charset=utf-8"

    def close(self) -> None:
        self._session.close()

    # -- the six operations ------------------------------------------------------------------
    def acquire(self, cname: str, uid: str, request: AcquireClientRequest) -> AcquireResponse:
        body = _envelope(cname, uid, request)
        return self._call(
            "acquire",
            "POST",
            self._path(routes.ACQUIRE),
            body,
            AcquireResponse,
            Priority.START,
            _Ids(cname),
        )

    def start(
        self, resource_id: str, cname: str, uid: str, request: StartClientRequest
    ) -> StartResponse:
        path = self._path(routes.START, resourceid=resource_id)
        body = _envelope(cname, uid, request)
        return self._call("start", "POST", path, body, StartResponse, Priority.START, _Ids(cname))

    def query(self, resource_id: str, sid: str) -> QueryResponse:
        path = self._path(routes.QUERY, resourceid=resource_id, sid=sid)
        return self._call(
            "query", "GET", path, None, QueryResponse, Priority.QUERY, _Ids(None, sid)
        )

    def update(
        self, resource_id: str, sid: str, cname: str, uid: str, request: UpdateClientRequest
    ) -> dict[str, Any]:
        path = self._path(routes.UPDATE, resourceid=resource_id, sid=sid)
        body = _envelope(cname, uid, request)
        return self._call_raw("update", "POST", path, body, Priority.UPDATE, _Ids(cname, sid))

    def update_layout(
        self, resource_id: str, sid: str, cname: str, uid: str, layout: LayoutUpdate
    ) -> dict[str, Any]:
        """Replace the whole layout (omitted fields go back to their defaults,
        docs/service/api-contract.md#updatelayout)."""
        path = self._path(routes.UPDATE_LAYOUT, resourceid=resource_id, sid=sid)
        body = _envelope(cname, uid, layout)
        return self._call_raw("updateLayout", "POST", path, body, Priority.UPDATE, _Ids(cname, sid))

    def stop(
        self, resource_id: str, sid: str, cname: str, uid: str, *, async_stop: bool = False
    ) -> StopResponse:
        path = self._path(routes.STOP, resourceid=resource_id, sid=sid)
        body = _envelope(cname, uid, StopClientRequest(async_stop=async_stop))
        return self._call("stop", "POST", path, body, StopResponse, Priority.STOP, _Ids(cname, sid))

    # -- plumbing -----------------------------------------------------------------------------
    def _path(self, route: str, **ids: str) -> str:
        """A REST path of :mod:`contract.routes`, filled in for this app, in mix mode."""
        return route.format(appid=self._app_id, mode=routes.MODE_MIX, **ids)

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        model: type[ResponseT],
        priority: Priority,
        ids: _Ids,
    ) -> ResponseT:
        payload = self._call_raw(operation, method, path, body, priority, ids)
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            # A 200 we cannot read is a service fault, not ours: retry it.
            raise RetryableApiError(
                operation, status=200, reason=f"unreadable response: {exc.error_count()} errors"
            ) from exc

    def _call_raw(
        self,
        operation: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        priority: Priority,
        ids: _Ids,
    ) -> dict[str, Any]:
        # A stop refused with 429 was not counted by the service: it goes again at once, through
        # the limiter (a few times), rather than through a task retry 0.25-0.5 s later. Stops
        # in a crunch are paced at the budget, so a 429 there is a call that reached the
        # service's window a hair early, and the slot it gave back must not stay empty.
        resends = STOP_429_RESENDS if priority is Priority.STOP else 0
        while True:
            try:
                return self._send_once(operation, method, path, body, priority, ids)
            except RateLimitedByService:
                if resends == 0:
                    raise
                resends -= 1
                time.sleep(STOP_429_PAUSE)  # lets the service's window slide past the jitter

    def _send_once(
        self,
        operation: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        priority: Priority,
        ids: _Ids,
    ) -> dict[str, Any]:
        self._acquire_slot(priority)
        timeout = self._stop_timeout if operation == "stop" else self._timeout
        try:
            # Never follow a redirect: requests would re-send the body (storage keys, token) to
            # wherever the Location points, and re-send it again and again on a 307 loop.
            response = self._session.request(
                method, self._root + path, json=body, timeout=timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            self._record_no_answer(operation, ids, type(exc).__name__)
            # The exception text may quote the URL, never the auth header or the body.
            error: ApiError = TransportError(operation, reason=type(exc).__name__)
            error.app = self.app
            raise error from exc
        request_id = response.headers.get(routes.REQUEST_ID_HEADER)
        payload = _json_or_none(response)
        self._record_answer(operation, ids, response.status_code, payload, request_id)
        if response.status_code == 429:
            self._refund_slot()
        if response.status_code == 200 and payload is not None:
            return payload
        error = _to_error(operation, response.status_code, payload, request_id)
        error.app = self.app
        raise error

    def _record_answer(
        self,
        operation: str,
        ids: _Ids,
        status: int,
        payload: dict[str, Any] | None,
        request_id: str | None,
    ) -> None:
        """The one log line and metric of an answered call. Only ids, never a body."""
        code = _int_or_none((payload or {}).get("code"))
        sid = (payload or {}).get("sid") if operation == "start" else ids.sid
        log.log(
            logging.INFO if status == 200 else logging.WARNING,
            "api %s -> %s%s",
            operation,
            status,
            f" code {code}" if code is not None else "",
            extra={
                "operation": operation,
                "status": status,
                "api_code": code,
                "request_id": request_id,
                "cname": ids.cname,
                "sid": sid if isinstance(sid, str) else None,
            },
        )
        self._on_api_call(operation, status, code)

    def _record_no_answer(self, operation: str, ids: _Ids, error: str) -> None:
        log.warning(
            "api %s -> no answer (%s)",
            operation,
            error,
            extra={"operation": operation, "cname": ids.cname, "sid": ids.sid},
        )
        self._on_api_call(operation, None, None)


@dataclass(frozen=True)
class _Ids:
    """What identifies a call's recording in its log line (never anything secret)."""

    cname: str | None = None
    sid: str | None = None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _envelope(cname: str, uid: str, request: BaseModel) -> dict[str, Any]:
    return {"cname": cname, "uid": uid, "clientRequest": to_wire(request)}


def environment_once(session: requests.Session, root: str) -> requests.Session:
    """Have ``session`` read the environment (``HTTPS_PROXY``/``NO_PROXY``,
    ``REQUESTS_CA_BUNDLE``) once, now, for the API's root URL, rather than on every request:
    requests does the latter by default (``trust_env``), and parsing the proxy settings was an
    eighth of a worker's CPU (benchmarks/README.md). Every call goes to the same host, so the
    answer is the same."""
    if not session.trust_env:
        return session
    env = session.merge_environment_settings(root, {}, None, None, None)
    session.proxies.update(env["proxies"])
    session.verify = env["verify"]
    session.trust_env = False
    return session


def _json_or_none(response: requests.Response) -> dict[str, Any] | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _to_error(
    operation: str, status: int, payload: dict[str, Any] | None, request_id: str | None
) -> ApiError:
    if status == 200:
        return RetryableApiError(operation, status=200, reason="response body is not JSON")
    if 300 <= status < 400:
        # The API never redirects; one that does is misconfigured or hostile: do not retry.
        return PermanentApiError(
            operation, status=status, reason="redirect refused", request_id=request_id
        )
    return classify_api_error(operation, status, payload, request_id)

"""The REST client for the cloud recording API (docs/service/api-contract.md), composite ("mix")
mode.

One :class:`RecordingApiClient` per app and process: a pool of HTTP connections (urllib3, see
:func:`http_pool`) with HTTP Basic auth, explicit connect/read timeouts, and the shared rate
limiter in front of every call. This module is the one boundary where urllib3's exceptions and
non-200 answers become :mod:`worker.errors` classes; nothing above it sees a third-party error.
Request bodies are built from the pydantic models of :mod:`contract.models` and serialized with
``to_wire`` (the only place secrets are revealed, and only into the request body and the auth
header, never into a log line or an exception).

Every call, answered or not, produces one log line (operation, HTTP status, API code, request
id, cname, sid; the job id comes from the log context of the task) and one call of the
``on_api_call`` hook (the Prometheus counter of API calls by operation, status and code).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import certifi
import requests.utils
import urllib3
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
        http: urllib3.PoolManager | None = None,
        on_api_call: ApiCallHook = _not_counted,
    ) -> None:
        """``app`` names the app profile (App ID in the paths, its customer's Basic auth);
        ``acquire_slot`` must be that App ID's limiter; ``on_api_call`` sees every call's
        outcome (e.g. ``Metrics.api_call``)."""
        profile = settings.app_profile(app)
        self.app = app
        self._root = settings.api_base_url.rstrip("/")
        self._app_id = profile.app_id
        self._timeout = urllib3.Timeout(
            connect=settings.api_connect_timeout, read=settings.api_read_timeout
        )
        self._stop_timeout = urllib3.Timeout(
            connect=settings.api_connect_timeout, read=settings.api_stop_read_timeout
        )
        self._acquire_slot = acquire_slot
        self._refund_slot = refund_slot
        self._on_api_call = on_api_call
        self._http = http or http_pool(self._root)
        self._headers = urllib3.make_headers(
            basic_auth=f"{profile.customer_id}:{profile.customer_secret.get_secret_value()}"
        ) | {"Content-Type": "application/json;charset=utf-8", "Accept": "application/json"}

    def close(self) -> None:
        self._http.clear()

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
        data = None if body is None else json.dumps(body, allow_nan=False).encode()
        try:
            # Never follow a redirect (it would re-send the body, storage keys and token, to
            # wherever the Location points) and never retry here: retries are the tasks'.
            response = self._http.request(
                method,
                self._root + path,
                body=data,
                headers=self._headers,
                timeout=timeout,
                redirect=False,
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            self._record_no_answer(operation, ids, type(exc).__name__)
            # The exception text may quote the URL, never the auth header or the body.
            error: ApiError = TransportError(operation, reason=type(exc).__name__)
            error.app = self.app
            raise error from exc
        request_id = response.headers.get(routes.REQUEST_ID_HEADER)
        payload = _json_or_none(response.data)
        self._record_answer(operation, ids, response.status, payload, request_id)
        if response.status == 429:
            self._refund_slot()
        if response.status == 200 and payload is not None:
            return payload
        error = _to_error(operation, response.status, payload, request_id)
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


# HTTP connections kept per host: a threads worker runs up to this many API calls at once.
HTTP_POOL_SIZE = 64


def http_pool(root: str, pool_size: int = HTTP_POOL_SIZE) -> urllib3.PoolManager:
    """The connections to the API's root URL, with the environment read once, now: a proxy
    from ``HTTPS_PROXY``/``HTTP_PROXY`` unless ``NO_PROXY`` names the host (requests' rules),
    the CA bundle from ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (else certifi's).

    urllib3 rather than requests: every call goes to the same host with the same headers, and
    requests' per-call work (merging session settings, cookies, hooks, its adapter) was 8.7%
    of the workers' samples over the stops of ``benchmarks/deployment.py`` (py-spy ``--gil``)."""
    ca_certs = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    options: dict[str, Any] = {"maxsize": pool_size, "ca_certs": ca_certs or certifi.where()}
    proxies = requests.utils.get_environ_proxies(root)
    scheme = root.split("://", 1)[0].lower()
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy:
        return urllib3.ProxyManager(proxy, num_pools=4, **options)
    return urllib3.PoolManager(num_pools=4, **options)


def _json_or_none(data: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(data)
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

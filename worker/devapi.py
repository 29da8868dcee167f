"""A small client for the emulator's dev API (docs/design.md#fixed-interfaces): simulated channels
and users, the list of recordings, fault injection. Used by the CLI, the demo and the tests.

The worker uses the dev API for one thing only, and only when ``Settings.dev_api`` allows (never
in real-service mode, ``CLOUDREC_DEV_API=false``): as its :class:`~worker.locator.RecordingLocator`
(:class:`DevApiLocator`, chosen by :func:`locator_for`). Nothing else in the worker imports this
module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests

from config import Settings
from worker.errors import CloudrecError, LocatorUnavailable
from worker.locator import KnownRecording, RecordingLocator


class DevApiError(CloudrecError):
    """The emulator's dev API refused a request or could not be reached."""


class DevApiClient:
    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        token: str | None = None,
        *,
        user_agent: str = "cloudrec-devapi",
    ) -> None:
        """``token``: the emulator's dev token (CLOUDREC_DEV_TOKEN), needed beyond loopback."""
        self._base = base_url.rstrip("/") + "/dev"
        self._timeout = timeout
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        # The emulator logs who called its dev API (GET /dev/requests): tests tell themselves
        # apart from the worker by this.
        self._session.headers["User-Agent"] = user_agent

    def join(
        self,
        cname: str,
        uid: str,
        *,
        role: str = "host",
        video: dict[str, Any] | None = None,
        audio: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {"uid": uid, "role": role, "video": video, "audio": audio}
        return self._object("POST", f"/channels/{cname}/users", body)

    def leave(self, cname: str, uid: str) -> dict[str, Any]:
        return self._object("DELETE", f"/channels/{cname}/users/{uid}")

    def publish(
        self, cname: str, uid: str, *, video: bool | None = None, audio: bool | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in {"video": video, "audio": audio}.items() if v is not None}
        return self._object("PATCH", f"/channels/{cname}/users/{uid}", body)

    def channel(self, cname: str) -> dict[str, Any]:
        return self._object("GET", f"/channels/{cname}")

    def _object(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        result = self._request(method, path, body)
        return result if isinstance(result, dict) else {"result": result}

    def recordings(
        self, *, live: bool | None = None, resource_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The emulator's recordings: all (the default), only live (``live=True``) or ended
        ones, or the one ``resource_id`` started."""
        params = {"live": None if live is None else str(live).lower(), "resourceId": resource_id}
        result = self._request("GET", "/recordings", params=params)
        return result if isinstance(result, list) else list(result.get("recordings", []))

    def events(self, sid: str | None = None) -> list[dict[str, Any]]:
        """Notification events in the order the emulator emitted them (all, or one sid's)."""
        result = self._request("GET", "/events" + (f"?sid={sid}" if sid else ""))
        return result if isinstance(result, list) else list(result.get("events", []))

    def ncs(self) -> dict[str, Any]:
        """Delivery counters of the notification webhook."""
        return self._object("GET", "/ncs")

    def reset(self) -> dict[str, Any]:
        """Finish live recordings and forget all state but the files."""
        return self._object("POST", "/reset")

    def requests_log(self) -> list[dict[str, Any]]:
        """Who called the dev API: method, path, User-Agent (``GET /dev/requests``)."""
        result = self._request("GET", "/requests")
        return list(result.get("requests", [])) if isinstance(result, dict) else []

    def api_requests(self) -> list[dict[str, Any]]:
        """Every REST call the emulator took, with when and whether the rate limit let it in
        (``GET /dev/api-requests``)."""
        result = self._request("GET", "/api-requests")
        return list(result.get("requests", [])) if isinstance(result, dict) else []

    def set_faults(self, faults: dict[str, Any]) -> dict[str, Any]:
        return self._object("PUT", "/faults", faults)

    def failover(self, sid: str, seconds: float = 3.0) -> dict[str, Any]:
        """Move a live recording to a "new server" (HA failover, docs/service/files.md#failover):
        its calls answer 404 for ``seconds``, then it records on in ``bak<n>_`` files."""
        return self._object("POST", f"/recordings/{sid}/failover", {"seconds": seconds})

    def _request(  # JSON of any shape
        self, method: str, path: str, body: Any = None, params: dict[str, str | None] | None = None
    ) -> Any:
        try:
            response = self._session.request(
                method, self._base + path, json=body, params=params, timeout=self._timeout
            )
        except requests.RequestException as exc:
            raise DevApiError(
                f"emulator at {self._base} is not reachable ({type(exc).__name__})"
            ) from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {"reason": response.text[:200]}
        if response.status_code >= 400:
            detail = payload.get("reason") or payload.get("message") or payload
            raise DevApiError(f"{method} {path}: HTTP {response.status_code}: {detail}")
        return payload

    def close(self) -> None:
        self._session.close()


# -- the dev API as a recording locator ------------------------------------------------------------
class DevApiLocator:
    """The emulator's ``GET /dev/recordings`` as a :class:`RecordingLocator`."""

    def __init__(self, base_url: str, timeout: float = 10.0, token: str | None = None) -> None:
        self._dev = DevApiClient(base_url, timeout=timeout, token=token)

    def recordings(
        self, *, live_only: bool = False, resource_id: str | None = None
    ) -> list[KnownRecording]:
        """Raises :class:`LocatorUnavailable` when the dev API cannot be reached."""
        try:
            items = self._dev.recordings(live=True if live_only else None, resource_id=resource_id)
        except DevApiError as exc:
            raise LocatorUnavailable(str(exc)) from exc
        return [_known(item) for item in items if isinstance(item, dict)]


def _known(item: dict[str, Any]) -> KnownRecording:
    return KnownRecording(
        sid=str(item.get("sid", "")),
        resource_id=str(item.get("resourceId", "")),
        app_id=item.get("appId"),
        cname=str(item.get("cname", "")),
        uid=str(item.get("uid", "")),
        live=bool(item.get("live")),
        started_at=_epoch(item.get("startedAt")),
    )


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def locator_for(settings: Settings) -> RecordingLocator | None:
    """The dev API when it should be used: ``Settings.dev_api``, or, when that is unset,
    whether the API base URL answers ``GET /dev/recordings`` (the emulator does)."""
    if settings.dev_api is False:
        return None
    locator = DevApiLocator(settings.api_base_url, token=settings.dev_token_value)
    if settings.dev_api:
        return locator
    probe = DevApiLocator(settings.api_base_url, timeout=3.0, token=settings.dev_token_value)
    try:
        probe.recordings(live_only=True)
    except LocatorUnavailable:
        return None
    return locator

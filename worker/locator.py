"""Finding recordings on the service's side, whoever started them (a :class:`RecordingLocator`).

The real service has no such call: there, a job's own resourceId and sid are its only handle.
The emulator's dev API (``GET /dev/recordings``) does, and the reconciler uses it to find the
recordings whose job lost track of them, the start step to find a lost start's sid.
:func:`locator_for` decides once per process whether the API base URL offers it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from config import Settings
from worker.devapi import DevApiClient, DevApiError

log = logging.getLogger("cloudrec.reconcile")


@dataclass(frozen=True)
class KnownRecording:
    """A recording as the service's side lists it (the emulator's ``GET /dev/recordings``)."""

    sid: str
    resource_id: str
    app_id: str | None
    cname: str
    uid: str
    live: bool
    started_at: float | None  # epoch seconds


class RecordingLocator(Protocol):
    """Lists every recording the service holds, whoever started it. The real service has no
    such call (there, a job's own resourceId and sid are the only handle); the emulator's dev
    API does, and it is what finds recordings whose job lost track of them."""

    def recordings(
        self, *, live_only: bool = False, resource_id: str | None = None
    ) -> list[KnownRecording]: ...


# -- the dev API as a recording locator ------------------------------------------------------------
class DevApiLocator:
    """The emulator's ``GET /dev/recordings`` as a :class:`RecordingLocator`."""

    def __init__(self, base_url: str, timeout: float = 10.0, token: str | None = None) -> None:
        self._dev = DevApiClient(base_url, timeout=timeout, token=token)

    def recordings(
        self, *, live_only: bool = False, resource_id: str | None = None
    ) -> list[KnownRecording]:
        """Raises :class:`DevApiError` when the dev API cannot be reached."""
        items = self._dev.recordings(live=True if live_only else None, resource_id=resource_id)
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
    except DevApiError:
        return None
    return locator


def sid_of_resource(locator: RecordingLocator, resource_id: str) -> str | None:
    """The sid a resource started, as the locator tells (None if it cannot)."""
    try:
        found = locator.recordings(resource_id=resource_id)
        return next((r.sid for r in found if r.resource_id == resource_id), None)
    except DevApiError as exc:
        log.warning("cannot look up the sid of a started resource: %s", exc)
        return None

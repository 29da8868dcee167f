"""Finding recordings on the service's side, whoever started them: the :class:`RecordingLocator`
port the reconciler and the start step depend on.

The real service has no such call: there, a job's own resourceId and sid are its only handle,
and no locator exists. The emulator's dev API has one (``worker.devapi.DevApiLocator``, chosen
by ``worker.devapi.locator_for`` when ``Settings.dev_api`` allows); it finds the recordings whose
job lost track of them, and the sid of a start whose answer was lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from worker.errors import LocatorUnavailable

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
    ) -> list[KnownRecording]:
        """Raises :class:`LocatorUnavailable` when the list cannot be had."""
        ...


def sid_of_resource(locator: RecordingLocator, resource_id: str) -> str | None:
    """The sid a resource started, as the locator tells (None if it cannot)."""
    try:
        found = locator.recordings(resource_id=resource_id)
    except LocatorUnavailable as exc:
        log.warning("cannot look up the sid of a started resource: %s", exc)
        return None
    return next((r.sid for r in found if r.resource_id == resource_id), None)

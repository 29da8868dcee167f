"""The Cloud Recording emulator: the same REST API as the real service, simulated channels and
users, a real compositor (``emulator.media``), storage back-ends, fault injection and
notification events. See docs/design.md#emulator.

Modules, top-down: ``server`` (uvicorn), ``app`` (wires the routers, middleware, error
handlers), ``rest_routes`` (the REST API and its gateway steps), ``dev_routes`` (the dev API),
``openapi`` (its description); ``service`` (the facade the routes call), ``operations`` (the
REST operations, typed answers), ``housekeeping`` (the clock), ``driver`` (recorder threads),
``lifecycle`` (exits, uploads' events), ``failover`` (HA failover), ``listing`` (file lists,
dev views), ``registry`` (resources, tasks, the lock); ``subscription`` (who is recorded),
``channels`` (simulated users), ``uploads`` (a recording's uploader and backup area),
``storage`` (local, S3 back-ends), ``events`` (NCS events and their delivery), ``faults``,
``ratelimit``, ``limits``, ``devauth``, ``errors``, ``config``; ``contract`` (the REST models
shared with the worker: the only import of ``worker``); ``media`` (the compositor).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.app import create_app
    from emulator.config import EmulatorConfig
    from emulator.server import EmulatorServer, serve, serve_in_thread
    from emulator.service import RecordingService

# Imported on first use: `cloudrec render` needs only emulator.media, and importing the HTTP
# app (FastAPI, uvicorn, boto3) would cost it a third of a second of start-up.
_EXPORTS = {
    "create_app": "emulator.app",
    "EmulatorConfig": "emulator.config",
    "EmulatorServer": "emulator.server",
    "serve": "emulator.server",
    "serve_in_thread": "emulator.server",
    "RecordingService": "emulator.service",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'emulator' has no attribute {name!r}")


__all__ = [
    "EmulatorConfig",
    "EmulatorServer",
    "RecordingService",
    "create_app",
    "serve",
    "serve_in_thread",
]

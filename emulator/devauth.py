"""The dev API's token, and the rule that an emulator reachable from other hosts needs one.

The dev API (``/dev/...``) drives simulated channels, reads recordings, injects faults and
resets the emulator: harmless on loopback, where only the machine's own users reach it, and an
open door anywhere else. So an emulator bound to anything but loopback refuses to start without
a token (``--dev-token`` or ``CLOUDREC_DEV_TOKEN``), and with a token every ``/dev/`` request
must carry ``Authorization: Bearer <token>``. The REST API keeps its own Basic auth.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

DEV_PREFIX = "/dev/"


class DevTokenMissing(ValueError):
    """The emulator would listen beyond loopback with an open dev API."""


def is_loopback(host: str) -> bool:
    """True if every address ``host`` names is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%", 1)[0]).is_loopback for a in addresses
    )


def check_exposure(host: str, dev_token: str | None) -> None:
    """Refuse to serve the dev API without a token on a non-loopback address."""
    if not dev_token and not is_loopback(host):
        raise DevTokenMissing(
            f"the emulator listens on {host}, beyond loopback: give the dev API a token "
            "(--dev-token or CLOUDREC_DEV_TOKEN) or bind to 127.0.0.1"
        )


class DevTokenMiddleware:
    """401 for a ``/dev/`` request without ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(DEV_PREFIX):
            given = dict(scope.get("headers", [])).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                response = JSONResponse(
                    {"message": "the dev API needs Authorization: Bearer <dev token>"},
                    status_code=401,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

"""Who may see the page, and where it may listen.

HTTP basic auth with ``CLOUDREC_WEB_USER`` / ``CLOUDREC_WEB_PASSWORD``, compared in constant time.
Without a password the page is open, so it listens on a loopback address only: any other
address is refused until a password is set (recordings and channel names are private).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from config import Settings

REALM = "cloudrec"
LOCALHOST_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost; anything else (0.0.0.0, a name) is not."""
    name = host.strip().strip("[]").lower()
    if name in LOCALHOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def password_of(settings: Settings) -> str | None:
    password = settings.web_password.get_secret_value() if settings.web_password else ""
    return password or None


def listen_problem(host: str, settings: Settings) -> str | None:
    """Why the page must not listen on ``host`` with these settings; None when it may."""
    if is_loopback(host) or password_of(settings) is not None:
        return None
    return (
        f"refusing to listen on {host!r} without a password: beyond loopback the page needs "
        "basic auth; set CLOUDREC_WEB_PASSWORD (and CLOUDREC_WEB_USER, default 'cloudrec')"
    )


def credentials_match(header: str | None, user: str, password: str) -> bool:
    """Whether an ``Authorization`` header carries ``user:password`` (constant-time compare)."""
    given_user, given_password = _basic(header)
    # Both compared every time: the answer's timing tells nothing about which one was wrong.
    same_user = hmac.compare_digest(given_user.encode(), user.encode())
    same_password = hmac.compare_digest(given_password.encode(), password.encode())
    return same_user and same_password


def _basic(header: str | None) -> tuple[str, str]:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return "", ""
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else ("", "")


class BasicAuth:
    """ASGI middleware: every request needs the credentials (when a password is set)."""

    def __init__(self, app: ASGIApp, user: str, password: str) -> None:
        self.app = app
        self.user = user
        self.password = password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        header = headers.get(b"authorization", b"").decode("latin-1") or None
        if credentials_match(header, self.user, self.password):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode()),
                    (b"content-type", b"text/plain; charset=utf-8"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"401: credentials required\n"})

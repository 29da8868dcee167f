"""Size limits of the emulator's HTTP surface: request bodies and JSON nesting.

Both the REST API and the dev API read JSON bodies. Without a limit a 64 MB body is read whole
into memory before anything looks at it, and JSON nested 200,000 deep overflows the parser's
recursion (a 500). The body limit is enforced before the body is read (``Content-Length``) and
while it streams in (chunked bodies); the depth limit right after parsing.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024
# The deepest field of a real request (clientRequest.recordingConfig.transcodingConfig.
# layoutConfig[i].x) is 6 levels down; 32 leaves room and refuses only what no client sends.
MAX_JSON_DEPTH = 32


class JsonTooDeep(ValueError):
    """The JSON nests deeper than :data:`MAX_JSON_DEPTH`."""

    def __init__(self) -> None:
        super().__init__(f"body is nested deeper than {MAX_JSON_DEPTH} levels")


def load_json(raw: bytes) -> Any:
    """Parse ``raw``; :class:`JsonTooDeep` if it nests too deep, ValueError if it is not JSON."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise JsonTooDeep() from None
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise JsonTooDeep()
        if isinstance(value, dict):
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value)
    return data


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimitMiddleware:
    """413 for a body over ``max_bytes``: at once if ``Content-Length`` says so (nothing is
    read), else as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            too_large = BodyTooLarge(self.max_bytes)
            response = JSONResponse({"message": too_large.detail}, status_code=413)
            await response(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return counted


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

"""``cloudrec ncs``: the HTTP endpoint Agora's NCS posts Cloud Recording notifications to.

One route, ``POST /``. The contract (docs/service/ncs.md#transport) is "200 with a JSON body within
10 s, else we resend", so the handler only checks and stores: it reads at most
``Settings.ncs_max_body`` bytes, verifies ``Agora-Signature-V2`` (HMAC-SHA256) and
``Agora-Signature`` (HMAC-SHA1) of the raw body with ``CLOUDREC_NCS_SECRET`` (or the NCS secret of
another app profile: the post belongs to the app whose secret verifies it), keeps the event in the
:class:`worker.ncs.NcsLedger` (one Redis script, milliseconds) and answers. It never calls the
recording API; the job machine reads the ledger.

Answers: 200 ``{"ok": true, "duplicate": bool}`` (also for a product other than Cloud
Recording, which is ignored: NCS must not resend it); 401 unsigned or wrongly signed; 413 body
too large; 400 not an NCS envelope (the field is named); 503 Redis unavailable (NCS resends).
``GET /health`` answers 200 for load balancers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from config import Settings
from contract.ncs import PRODUCT_CLOUD_RECORDING
from worker.metrics import Metrics
from worker.ncs import (
    Envelope,
    EnvelopeError,
    NcsLedger,
    signature_problem,
)
from worker.redis_conn import redis_client

log = logging.getLogger("cloudrec.ncs")

DEFAULT_PORT = 8710
REDIS_TIMEOUT = 3.0  # seconds: a slow Redis must not make NCS wait past its 10 s


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def ncs_secrets(settings: Settings) -> dict[str, str]:
    """Each app's NCS secret by app name (apps without one receive nothing). Raises
    ValueError naming CLOUDREC_NCS_SECRET when no app has one."""
    secrets = {
        name: app.ncs_secret.get_secret_value()
        for name, app in settings.app_profiles().items()
        if app.ncs_secret is not None and app.ncs_secret.get_secret_value()
    }
    if not secrets:
        raise ValueError(
            "CLOUDREC_NCS_SECRET (or CLOUDREC_APPS__<NAME>__NCS_SECRET): required to receive "
            "NCS notifications (the secret set for the NCS webhook in Agora's console)"
        )
    return secrets


def verify(body: bytes, headers: Mapping[str, str], secrets: dict[str, str]) -> tuple[str, str]:
    """("app name", "") for the app whose NCS secret signed the post, else ("", why not).

    An NCS notification does not name its App ID: each project signs with its own secret,
    so the post belongs to the app whose secret verifies it.
    """
    problems = set()
    for app, secret in secrets.items():
        problem = signature_problem(body, headers, secret)
        if problem is None:
            return app, ""
        problems.add(problem)
    return "", "unsigned" if problems == {"unsigned"} else "bad signature"


def build_app(settings: Settings, client: redis.Redis | None = None) -> Starlette:
    """The receiver's ASGI app. Refuses to build without an NCS secret (:func:`ncs_secrets`)."""
    secrets = ncs_secrets(settings)
    client = client or redis_client(
        settings, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )
    ledger = NcsLedger(client, settings.ncs_ttl)
    metrics = Metrics(client)
    limit = settings.ncs_max_body

    def refuse(status: int, reason: str, detail: str) -> JSONResponse:
        metrics.ncs_rejected(reason)
        log.warning("ncs: refused a post: %s", detail)
        return JSONResponse({"ok": False, "error": detail}, status_code=status)

    async def receive(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, limit)
        except _TooLarge:
            return refuse(413, "too_large", f"body: larger than {limit} bytes")
        app, problem = verify(body, request.headers, secrets)
        if problem:
            return refuse(401, problem.replace(" ", "_"), problem)
        try:
            envelope = Envelope.parse(_json(body))
        except EnvelopeError as exc:
            return refuse(400, "bad_envelope", str(exc))
        if envelope.product_id != PRODUCT_CLOUD_RECORDING:
            return JSONResponse({"ok": True, "ignored": "not a Cloud Recording notification"})
        try:
            outcome = await run_in_threadpool(ledger.record, envelope)
        except redis.RedisError as exc:
            log.error("ncs: cannot store event %s: %s", envelope.notice_id, exc)
            return JSONResponse({"ok": False, "error": "store unavailable"}, status_code=503)
        duplicate = outcome == 0
        await run_in_threadpool(
            metrics.ncs_event, envelope.event_type, "duplicate" if duplicate else "stored", app
        )
        log.info(
            "ncs: event %s of %s (app %s)%s",
            envelope.event_type,
            envelope.sid,
            app,
            " (duplicate)" if duplicate else "",
            extra={"sid": envelope.sid, "cname": envelope.cname},
        )
        return JSONResponse({"ok": True, "duplicate": duplicate})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/", receive, methods=["POST"]), Route("/health", health, methods=["GET"])]
    )


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        raise EnvelopeError("body: not JSON") from None


def serve(settings: Settings, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run the receiver until interrupted."""
    import uvicorn

    app = build_app(settings)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


class ReceiverThread:
    """The receiver served in a background thread (tests, benchmarks, ``cloudrec demo``-like
    setups). ``url`` is where to point NCS (``cloudrec emulator --ncs-url``)."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket
        import threading

        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self._socket.listen(128)  # connections wait in the backlog until the server is up
        self.url = f"http://{host}:{self._socket.getsockname()[1]}/"
        config = uvicorn.Config(
            build_app(settings), log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()

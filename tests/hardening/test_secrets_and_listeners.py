"""Issue 10 item 7: a Redis password never shows, listeners bind to loopback, no redirects.

Each test replays the original attack: ``repr(Settings())`` with a password in
``CLOUDREC_REDIS_URL``, a log line that quotes it, ``cloudrec metrics`` with no ``--host``, and
an API base URL whose server answers 307 to another server, which must receive nothing.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from config import Settings
from contract.models import (
    RecordingConfig,
    RecordingFileConfig,
    StartClientRequest,
    StorageConfig,
)
from tests.support.ports import free_port
from tests.support.processes import cloudrec_env, processes, spawn
from tests.support.waiting import wait_for
from worker.client import RecordingApiClient
from worker.errors import PermanentApiError
from worker.logs import settings_secrets, setup_logging

PASSWORD = "hunter2-redis-pass"
STORAGE_SECRET = "storage-secret-key-xyz"


def test_repr_and_str_of_settings_hide_the_redis_password(monkeypatch):
    monkeypatch.setenv("CLOUDREC_REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:6379/0")
    monkeypatch.setenv("CLOUDREC_API_BASE_URL", f"http://user:{PASSWORD}x@127.0.0.1:8700")
    monkeypatch.setenv("CLOUDREC_STORAGE__S3__ENDPOINT", f"https://k:{PASSWORD}y@s3.example")
    settings = Settings()
    assert settings.redis_url.endswith(f"{PASSWORD}@127.0.0.1:6379/0")  # still usable
    for text in (repr(settings), str(settings), repr(settings.storage)):
        assert PASSWORD not in text
    assert "redis://:***@127.0.0.1:6379/0" in repr(settings)
    assert "http://user:***@127.0.0.1:8700" in repr(settings)


def test_log_lines_never_carry_the_redis_password():
    settings = Settings(redis_url=f"redis://default:{PASSWORD}@127.0.0.1:6379/0")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        setup_logging(json_lines=True, secrets=settings_secrets(settings))
        root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
        logging.getLogger("cloudrec.test").error("cannot reach %s", settings.redis_url)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    line = stream.getvalue()
    assert "cannot reach redis://default:***@127.0.0.1" in line
    assert PASSWORD not in line


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on ``port`` (from /proc, as ``ss`` reads)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(address)
    return found


def test_metrics_exporter_listens_on_loopback_by_default(redis_url, tmp_path):
    port = free_port()
    env = cloudrec_env(redis_url, "http://127.0.0.1:1")
    with processes() as started:
        started.append(spawn("metrics", ["metrics", "--port", str(port)], env, tmp_path))
        addresses = wait_for(lambda: _listening_addresses(port), 30, 0.2, "the exporter")
    # 0100007F is 127.0.0.1 in /proc's little-endian hex; 00000000 would be 0.0.0.0.
    assert addresses == {"0100007F"}, addresses


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with ``answer`` and records what it received."""

    answer: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")
    received: list[bytes]

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.received.append(self.rfile.read(length) + self.headers.as_bytes())
        status, headers, body = self.answer
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _any

    def log_message(self, *args: object) -> None:
        pass


def _serve(answer: tuple[int, dict[str, str], bytes]) -> tuple[ThreadingHTTPServer, list[bytes]]:
    received: list[bytes] = []
    handler = type("H", (_Recorder,), {"answer": answer, "received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


@pytest.fixture
def redirect_pair() -> Iterator[tuple[str, list[bytes], list[bytes]]]:
    thief, stolen = _serve((200, {}, b'{"resourceId": "r"}'))
    thief_url = f"http://localhost:{thief.server_address[1]}/steal"
    front, asked = _serve((307, {"Location": thief_url}, b""))
    yield f"http://127.0.0.1:{front.server_address[1]}", asked, stolen
    for server in (front, thief):
        server.shutdown()
        server.server_close()


def _start_request() -> StartClientRequest:
    return StartClientRequest(
        recordingConfig=RecordingConfig.model_validate({"maxIdleTime": 30}),
        recordingFileConfig=RecordingFileConfig(avFileType=["hls"]),
        storageConfig=StorageConfig(
            vendor=1, region=0, bucket="b", accessKey="ak", secretKey=STORAGE_SECRET
        ),
    )


def test_api_client_never_follows_a_redirect(redirect_pair):
    base, asked, stolen = redirect_pair
    settings = Settings(api_base_url=base, customer_secret="customer-secret-abc")
    client = RecordingApiClient(settings)
    try:
        with pytest.raises(PermanentApiError) as caught:
            client.start("rid", "c1", "7", _start_request())
    finally:
        client.close()
    assert len(asked) == 1  # the request reached the configured server once
    assert STORAGE_SECRET.encode() in asked[0]  # the body with the storage key went there
    assert stolen == []  # and nothing went where the 307 pointed
    assert caught.value.status == 307
    assert "redirect" in str(caught.value)

"""Issue 10 item 4 (emulator): request bodies and JSON depth are bounded on the REST API and the
dev API. The attacks: a 64 MB body (the dev API parsed it), JSON nested 200,000 deep (a 500 from
both ``POST .../acquire`` and ``PUT /dev/faults``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from emulator import EmulatorConfig, EmulatorServer, serve_in_thread

AUTH = ("demo", "demo-secret")
JSON = {"Content-Type": "application/json"}
ACQUIRE = "/v1/apps/app/cloud_recording/acquire"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    server = serve_in_thread(
        EmulatorConfig(port=0, qps=0, storage_dir=Path(tmp_path_factory.mktemp("storage")))
    )
    yield server
    server.stop()


def _post(emulator: EmulatorServer, method: str, path: str, body: object) -> requests.Response:
    return requests.request(
        method, emulator.base_url + path, data=body, auth=AUTH, headers=JSON, timeout=30
    )


@pytest.mark.parametrize(("method", "path"), [("POST", ACQUIRE), ("PUT", "/dev/faults")])
def test_json_nested_200000_deep_is_a_400_naming_the_problem(emulator, method, path):
    deep = b'{"a":' * 100_000 + b"[" * 100_000 + b"]" * 100_000 + b"}" * 100_000
    response = _post(emulator, method, path, deep)
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "body is nested deeper than 32 levels"


@pytest.mark.parametrize(("method", "path"), [("POST", ACQUIRE), ("PUT", "/dev/faults")])
def test_a_body_over_1_mb_is_refused(emulator, method, path):
    response = _post(emulator, method, path, b" " * (MB + 1))
    assert response.status_code == 413
    assert response.json() == {"message": f"request body larger than {MB} bytes"}
    assert _post(emulator, method, path, b"{}" + b" " * (MB - 2)).status_code != 413


@pytest.mark.parametrize(("method", "path"), [("POST", ACQUIRE), ("PUT", "/dev/faults")])
def test_a_64_mb_body_is_refused_before_it_is_sent(emulator, method, path):
    """Only the headers go out: the 413 must come back without the server reading a byte."""
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {64 * MB}\r\n\r\n".encode()
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413 "), head


def test_a_chunked_64_mb_body_without_length_is_refused(emulator):
    """No Content-Length: the body is counted as it streams and refused once past 1 MB (the
    rest is discarded by the server, never buffered)."""

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * MB

    response = requests.put(emulator.base_url + "/dev/faults", data=chunks(), timeout=60)
    assert response.status_code == 413
    assert requests.get(emulator.base_url + "/dev/faults", timeout=10).status_code == 200

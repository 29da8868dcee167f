"""Fixtures: the emulator served in a thread on a free loopback port, called with requests."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator import EmulatorConfig, EmulatorServer, serve_in_thread
from tests.support.waiting import wait_for

AUTH = ("demo", "demo-secret")
APP = "test-app"

# Small and fast: a 160x120 canvas, 0.5 s slices, 0.5 s startup, short lingers.
FAST = EmulatorConfig(
    port=0,
    qps=0,
    startup_seconds=0.5,
    slice_seconds=0.5,
    exit_linger_seconds=1.0,
    tick_seconds=0.05,
)

STORAGE: dict[str, Any] = {
    "vendor": 1,
    "region": 0,
    "bucket": "bucket",
    "accessKey": "ak",
    "secretKey": "sk",
    "fileNamePrefix": ["dir1", "dir2"],
}


def start_request(
    *,
    files: list[str] | None = None,
    max_idle: int = 30,
    storage: dict[str, Any] | None = None,
    **recording: Any,
) -> dict[str, Any]:
    """A composite start clientRequest with a small canvas."""
    return {
        "recordingConfig": {
            "maxIdleTime": max_idle,
            "transcodingConfig": {"width": 160, "height": 120, "fps": 15, "bitrate": 200},
            **recording,
        },
        "recordingFileConfig": {"avFileType": files or ["hls"]},
        "storageConfig": copy.deepcopy(storage or STORAGE),
    }


class Api:
    """A thin test client for the REST and dev APIs (plain requests: what goes on the wire)."""

    def __init__(self, server: EmulatorServer, appid: str = APP) -> None:
        self.server = server
        self.base = server.base_url
        self.appid = appid
        self.http = requests.Session()

    def url(self, path: str) -> str:
        return f"{self.base}/v1/apps/{self.appid}/cloud_recording{path}"

    def post(self, path: str, body: Any, **kw: Any) -> requests.Response:
        kw.setdefault("auth", AUTH)
        return self.http.post(self.url(path), json=body, timeout=60, **kw)

    def acquire(self, cname: str, uid: str, client: dict[str, Any] | None = None) -> str:
        r = self.post("/acquire", {"cname": cname, "uid": uid, "clientRequest": client or {}})
        assert r.status_code == 200, r.text
        return str(r.json()["resourceId"])

    def start_raw(
        self, rid: str, cname: str, uid: str, client: dict[str, Any], mode: str = "mix"
    ) -> requests.Response:
        body = {"cname": cname, "uid": uid, "clientRequest": client}
        return self.post(f"/resourceid/{rid}/mode/{mode}/start", body)

    def start(self, cname: str, uid: str, client: dict[str, Any] | None = None) -> tuple[str, str]:
        """acquire + start; returns (resourceId, sid)."""
        rid = self.acquire(cname, uid)
        r = self.start_raw(rid, cname, uid, client or start_request())
        assert r.status_code == 200, r.text
        return rid, str(r.json()["sid"])

    def task(self, rid: str, sid: str, op: str, mode: str = "mix") -> str:
        return f"/resourceid/{rid}/sid/{sid}/mode/{mode}/{op}"

    def query(self, rid: str, sid: str) -> requests.Response:
        return self.http.get(self.url(self.task(rid, sid, "query")), auth=AUTH, timeout=30)

    def stop(
        self, rid: str, sid: str, cname: str, uid: str, async_stop: bool | None = None
    ) -> requests.Response:
        client = {} if async_stop is None else {"async_stop": async_stop}
        body = {"cname": cname, "uid": uid, "clientRequest": client}
        return self.post(self.task(rid, sid, "stop"), body)

    def update(
        self, rid: str, sid: str, cname: str, uid: str, client: dict[str, Any]
    ) -> requests.Response:
        body = {"cname": cname, "uid": uid, "clientRequest": client}
        return self.post(self.task(rid, sid, "update"), body)

    def update_layout(
        self, rid: str, sid: str, cname: str, uid: str, client: dict[str, Any]
    ) -> requests.Response:
        body = {"cname": cname, "uid": uid, "clientRequest": client}
        return self.post(self.task(rid, sid, "updateLayout"), body)

    # dev API
    def join(self, cname: str, uid: str | int, **body: Any) -> requests.Response:
        return self.http.post(
            f"{self.base}/dev/channels/{cname}/users", json={"uid": uid, **body}, timeout=10
        )

    def leave(self, cname: str, uid: str) -> requests.Response:
        return self.http.delete(f"{self.base}/dev/channels/{cname}/users/{uid}", timeout=10)

    def patch(self, cname: str, uid: str, **body: Any) -> requests.Response:
        return self.http.patch(
            f"{self.base}/dev/channels/{cname}/users/{uid}", json=body, timeout=10
        )

    def channel(self, cname: str) -> dict[str, Any]:
        r = self.http.get(f"{self.base}/dev/channels/{cname}", timeout=10)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def recording(self, sid: str) -> dict[str, Any]:
        rows = self.http.get(f"{self.base}/dev/recordings", timeout=10).json()
        matches = [row for row in rows if row["sid"] == sid]
        assert len(matches) == 1, rows
        return dict(matches[0])

    def put_faults(self, settings: dict[str, Any]) -> requests.Response:
        return self.http.put(f"{self.base}/dev/faults", json=settings, timeout=10)

    def events(self, sid: str | None = None) -> list[dict[str, Any]]:
        params = {"sid": sid} if sid else None
        r = self.http.get(f"{self.base}/dev/events", params=params, timeout=10)
        assert r.status_code == 200, r.text
        return list(r.json())

    def wait_exited(self, sid: str, timeout: float = 10) -> dict[str, Any]:
        """The /dev/recordings row of ``sid`` once it has exited (status 8 or 20)."""
        return wait_for(
            lambda: (lambda row: row if row["status"] in (8, 20) else None)(self.recording(sid)),
            timeout,
            what=f"recording {sid} to exit",
        )


EmulatorFactory = Callable[..., Api]


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[EmulatorFactory]:
    """Start emulators with FAST settings plus overrides; all are stopped after the test."""
    servers: list[EmulatorServer] = []

    def make(**overrides: Any) -> Api:
        config = replace(FAST, storage_dir=tmp_path / f"storage{len(servers)}", **overrides)
        server = serve_in_thread(config)
        servers.append(server)
        return Api(server)

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """One FAST emulator per test module, reset before each test that uses ``api``: starting
    and stopping a server costs ~0.2 s, which hundreds of small tests would pay each."""
    server = serve_in_thread(replace(FAST, storage_dir=tmp_path_factory.mktemp("emulator")))
    yield server
    server.stop()


@pytest.fixture
def api(shared_emulator: EmulatorServer) -> Iterator[Api]:
    """The module's emulator, fresh: nothing recorded, no channels, no faults, no files."""
    r = requests.post(f"{shared_emulator.base_url}/dev/reset", timeout=60)
    assert r.status_code == 200, r.text
    storage = shared_emulator.config.storage_dir
    shutil.rmtree(storage)
    storage.mkdir()
    client = Api(shared_emulator)
    yield client
    client.http.close()

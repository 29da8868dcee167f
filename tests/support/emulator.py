"""The emulator as the tests use it: configurations (one fast base and its variants), serving it in
a thread, start-request bodies, and ``Api``, a thin client over plain requests for the REST and
dev APIs (what goes on the wire)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

from emulator import EmulatorConfig, EmulatorServer, serve_in_thread
from tests.support.waiting import wait_for
from worker.devapi import DevApiClient

AUTH = ("demo", "demo-secret")
APP = "test-app"

# Small and fast: 0.5 s slices, 0.5 s startup, short lingers (the emulator's own tests).
FAST = EmulatorConfig(
    port=0,
    qps=0,
    startup_seconds=0.5,
    slice_seconds=0.5,
    exit_linger_seconds=1.0,
    tick_seconds=0.05,
)
# The worker's logic tests, which drive the steps directly: 1 s slices.
STEP_EMULATOR = replace(FAST, slice_seconds=1.0)
# Recordings run by real worker processes: a slower clock, as the processes need time to start.
PROCESS_EMULATOR = replace(
    FAST, startup_seconds=1.0, slice_seconds=2.0, exit_linger_seconds=3.0, tick_seconds=0.2
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


@contextmanager
def serving(config: EmulatorConfig) -> Iterator[EmulatorServer]:
    """The emulator served in a thread on a free loopback port, stopped afterwards."""
    server = serve_in_thread(config)
    try:
        yield server
    finally:
        server.stop()


def start_emulator(storage_dir: Path) -> EmulatorServer:
    """An emulator for real worker processes (stop it yourself)."""
    return serve_in_thread(replace(PROCESS_EMULATOR, storage_dir=storage_dir))


def live_recordings(dev: DevApiClient, cname: str | None = None) -> list[dict[str, Any]]:
    return [r for r in dev.recordings() if r["live"] and (cname is None or r["cname"] == cname)]


def recordings_of(dev: DevApiClient, cname: str) -> list[dict[str, Any]]:
    return [r for r in dev.recordings() if r["cname"] == cname]

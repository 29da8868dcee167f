"""Raw HTTP against the emulator, with bodies exactly as Agora documents them.

Nothing of cloudrec's client or models is used here: requests, JSON literals from the spec
(docs/service/api-contract.md) and the emulator served on a loopback port.
What the tests prove holds for any program that speaks the documented API.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

from emulator import EmulatorServer, serve_in_thread
from tests.support.emulator import FAST
from tests.support.waiting import wait_for

AUTH = ("demo", "demo-secret")
APP = "contract-app"
DROP = object()  # a key taken out of the body
JSON = "application/json"
# what the Go client sends (docs/service/api-contract.md#authentication)
JSON_UTF8 = "application/json;charset=utf-8"

# docs/service/api-contract.md#start, the composite start body, verbatim but for the token.
START_BODY: dict[str, Any] = {
    "cname": "httpClient463224",
    "uid": "527841",
    "clientRequest": {
        "token": "rtc-token-for-527841",
        "recordingConfig": {
            "channelType": 0,
            "streamTypes": 2,
            "audioProfile": 1,
            "videoStreamType": 0,
            "maxIdleTime": 300,
            "transcodingConfig": {
                "width": 360,
                "height": 640,
                "fps": 15,
                "bitrate": 500,
                "mixedVideoLayout": 1,
                "backgroundColor": "#FF0000",
            },
            "subscribeAudioUids": ["#allstream#"],
            "subscribeVideoUids": ["#allstream#"],
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "storageConfig": {
            "vendor": 1,
            "region": 0,
            "bucket": "b",
            "accessKey": "ak",
            "secretKey": "sk",
            "fileNamePrefix": ["dir1", "dir2"],
        },
    },
}

# Fast clock: short startup and slices, so each recording takes about a second.
CONFIG = replace(FAST, startup_seconds=0.3)


def serve(storage_dir: Path) -> EmulatorServer:
    return serve_in_thread(replace(CONFIG, storage_dir=storage_dir))


def patched(body: dict[str, Any], changes: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """A deep copy of ``body`` with each path set to its value (``DROP`` removes the key)."""
    out = copy.deepcopy(body)
    for path, value in changes.items():
        target = out
        for key in path[:-1]:
            target = target[key]
        if value is DROP:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = copy.deepcopy(value)
    return out


class Agora:
    """The documented REST calls (docs/service/api-contract.md#endpoints) over plain requests."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.http = requests.Session()

    def _url(self, path: str) -> str:
        return f"{self.base}/v1/apps/{APP}/cloud_recording{path}"

    def post(self, path: str, body: Any, content_type: str = JSON) -> requests.Response:
        return self.http.post(
            self._url(path),
            data=json.dumps(body),
            headers={"Content-Type": content_type},
            auth=AUTH,
            timeout=60,
        )

    def acquire(self, body: dict[str, Any], content_type: str = JSON) -> requests.Response:
        return self.post("/acquire", body, content_type)

    def start(self, rid: str, body: dict[str, Any], content_type: str = JSON) -> requests.Response:
        return self.post(f"/resourceid/{rid}/mode/mix/start", body, content_type)

    def task_path(self, rid: str, sid: str, op: str) -> str:
        return f"/resourceid/{rid}/sid/{sid}/mode/mix/{op}"

    def query(self, rid: str, sid: str, **kw: Any) -> requests.Response:
        return self.http.get(self._url(self.task_path(rid, sid, "query")), auth=AUTH, **kw)

    def update(self, rid: str, sid: str, body: dict[str, Any]) -> requests.Response:
        return self.post(self.task_path(rid, sid, "update"), body)

    def update_layout(self, rid: str, sid: str, body: dict[str, Any]) -> requests.Response:
        return self.post(self.task_path(rid, sid, "updateLayout"), body)

    def stop(
        self, rid: str, sid: str, body: dict[str, Any], content_type: str = JSON
    ) -> requests.Response:
        return self.post(self.task_path(rid, sid, "stop"), body, content_type)

    # -- the dev API: a simulated user who publishes in the channel ----------------------

    def publisher(self, cname: str, uid: str) -> None:
        r = self.http.post(
            f"{self.base}/dev/channels/{cname}/users",
            json={"uid": uid, "video": {"color": "#00FF00"}, "audio": {"tone": 440}},
            timeout=10,
        )
        assert r.status_code == 201, r.text

    # -- steps of a whole recording ---------------------------------------------------------

    def acquired(self, cname: str, uid: str) -> str:
        r = self.acquire({"cname": cname, "uid": uid, "clientRequest": {}})
        assert r.status_code == 200, r.text
        return str(r.json()["resourceId"])

    def started(self, body: dict[str, Any], content_type: str = JSON) -> tuple[str, str]:
        """acquire + start with ``body``; asserts start answers 200. Returns (rid, sid)."""
        rid = self.acquired(body["cname"], body["uid"])
        r = self.start(rid, body, content_type)
        assert r.status_code == 200, r.text
        sid = str(r.json()["sid"])
        assert len(sid) == 32
        return rid, sid

    def running(self, rid: str, sid: str) -> dict[str, Any]:
        """Query until the recording runs with its first file (status 5 and a file list)."""

        def ready() -> dict[str, Any] | None:
            r = self.query(rid, sid, timeout=10)
            assert r.status_code == 200, r.text
            server = dict(r.json()["serverResponse"])
            return server if server["status"] == 5 and server.get("fileList") else None

        return wait_for(ready, 20, what=f"recording {sid} to run")

    def stopped(self, rid: str, sid: str, cname: str, uid: str) -> dict[str, Any]:
        r = self.stop(rid, sid, {"cname": cname, "uid": uid, "clientRequest": {}})
        assert r.status_code == 200, r.text
        return dict(r.json()["serverResponse"])

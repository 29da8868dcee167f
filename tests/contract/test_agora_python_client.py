"""Agora's own Python REST client (PyPI ``agora-rest-client``,
docs/service/api-contract.md#official-clients) records against the emulator, in a process of its own
that imports nothing of cloudrec.

The client builds its bodies its own way: ``"token": ""`` for a channel without App
Certificate, ``avFileType`` always ``["hls","mp4"]``, the ``unsubscribe*`` spelling, an update
without ``streamSubscribe`` sends ``clientRequest: {}``. Its one piece of setup that cannot
work here is where it sends requests: it resolves ``api-us-west-1.agora.io`` /
``api-us-west-1.sd-rtn.com`` in a background thread and builds ``https://<host>`` URLs. With no
DNS or internet on a test machine, the script gives its Domain the emulator's host (a Domain
that already has a logger does not start the resolver thread) and its URL builder the
``http://`` scheme; every request body and header is the client's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator import EmulatorServer

from .agora_http import APP, AUTH, serve

CNAME = "pyclient"
RECORDER = "7777"

SCRIPT = textwrap.dedent(
    """
    import json
    import logging
    import sys
    import time

    from agora_rest_client.core.domain import Domain, EndpointRegion
    from agora_rest_client.services.cloud_recording.v1 import api_start
    from agora_rest_client.services.cloud_recording.v1.mix_recording import (
        api_start as mix_start,
        api_update,
        api_update_layout,
    )
    from agora_rest_client.services.cloud_recording.v1.mix_recording.mix_recording_client import (
        MixRecordingClient,
    )

    host, app_id, customer_id, secret, cname, uid = sys.argv[1:7]

    # The only patch: where requests go (no DNS here; the emulator speaks http).
    domain = Domain(EndpointRegion.US.value)
    domain.set_logger(logging.getLogger("agora-domain"))  # run() then starts no resolver
    domain._domain_list = [host]
    client = (
        MixRecordingClient.new_builder()
        .with_app_id(app_id)
        .with_credential_basic_auth(customer_id, secret)
        .with_domain(domain)
        .with_http_timeout_seconds(30)
        .build()
    )
    client.get_api_url = lambda host, url, service_region=None: "http://%s%s" % (host, url)

    def out(step, response):
        print(json.dumps({"step": step, **{k: v for k, v in vars(response).items()}}), flush=True)

    acquired = client.acquire(cname, uid, resource_expired_hour=1)
    out("acquire", acquired)
    storage = mix_start.StorageConfig(
        vendor=1, region=0, bucket="bucket", accessKey="ak", secretKey="sk",
        fileNamePrefix=["pyclient"],
    )
    recording = mix_start.RecordingConfig(
        channelType=0,
        streamTypes=2,
        maxIdleTime=30,
        transcodingConfig=api_start.TranscodingConfig(
            width=160, height=120, fps=15, bitrate=200, mixedVideoLayout=1,
        ),
        unsubscribeAudioUids=["999"],
    )
    # A channel without App Certificate: the token is the empty string.
    started = client.start(acquired.resourceId, cname, uid, "", storage, recording_config=recording)
    out("start", started)
    rid, sid = acquired.resourceId, started.sid
    for _ in range(200):
        queried = client.query(rid, sid)
        if queried.serverResponse.get("status") == 5 and queried.serverResponse.get("fileList"):
            break
        time.sleep(0.1)
    out("query", queried)
    out("update", client.update(rid, sid, cname, uid))
    subscribe = api_update.StreamSubscribe(
        audioUidList=api_update.AudioUidList(subscribeAudioUids=["#allstream#"])
    )
    out("update2", client.update(rid, sid, cname, uid, stream_subscribe=subscribe))
    layout = [api_update_layout.LayoutConfig(x_axis=0, y_axis=0, width=1, height=1)]
    out(
        "updateLayout",
        client.update_layout(
            rid, sid, cname, uid, mixed_video_layout=3, background_color="#FF0000",
            layout_config=layout,
        ),
    )
    time.sleep(1.0)
    out("stop", client.stop(rid, sid, cname, uid))
    """
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorServer]:
    emulator = serve(tmp_path / "storage")
    yield emulator
    emulator.stop()


def _run_client(server: EmulatorServer, tmp_path: Path) -> dict[str, dict[str, Any]]:
    script = tmp_path / "agora_client.py"
    script.write_text(SCRIPT)
    host = f"{server.config.host}:{server.port}"
    done = subprocess.run(
        [sys.executable, "-I", str(script), host, APP, *AUTH, CNAME, RECORDER],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {step.pop("step"): step for step in steps}


def test_agora_python_client_records_with_an_empty_token(
    server: EmulatorServer, tmp_path: Path
) -> None:
    r = requests.post(
        f"{server.base_url}/dev/channels/{CNAME}/users",
        json={"uid": "1", "video": {"color": "#00FF00"}, "audio": {"tone": 440}},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    steps = _run_client(server, tmp_path)
    sid = steps["start"]["sid"]
    assert len(sid) == 32 and steps["start"].get("code") is None
    assert steps["query"]["serverResponse"]["status"] == 5
    for step in ("update", "update2", "updateLayout"):
        assert steps[step]["sid"] == sid, steps[step]
    stopped = steps["stop"]["serverResponse"]
    assert stopped["uploadingStatus"] == "uploaded"
    assert stopped["fileListMode"] == "json"  # the client always asks for ["hls","mp4"]
    names = {entry["fileName"] for entry in stopped["fileList"]}
    assert f"{sid}_{CNAME}.m3u8" in names
    assert any(name.endswith(".mp4") for name in names)
    stored = Path(server.config.storage_dir)
    for name in names:
        assert list(stored.rglob(f"pyclient/{name}")), name

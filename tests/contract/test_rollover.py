"""The emulator's MP4 rollover setting reaches the compositor: a recording longer than
``mp4_max_seconds`` is split into ``_0.mp4``, ``_1.mp4``, ... and stop lists them all."""

from __future__ import annotations

import time
from pathlib import Path

from config import Settings
from contract.models import AcquireClientRequest, file_names
from emulator import EmulatorConfig, serve_in_thread
from tests.support.mediacheck import probe
from tests.support.waiting import wait_for
from worker.client import RecordingApiClient
from worker.devapi import DevApiClient

from .test_client import SECRET, _start_request


def test_mp4_rolls_over_at_the_configured_duration(tmp_path: Path) -> None:
    server = serve_in_thread(
        EmulatorConfig(
            port=0,
            storage_dir=tmp_path,
            customer_secret=SECRET,
            startup_seconds=0.2,
            slice_seconds=1.0,
            mp4_max_seconds=2.0,
            qps=0,
        )
    )
    try:
        api = RecordingApiClient(Settings(api_base_url=server.base_url, customer_secret=SECRET))
        DevApiClient(server.base_url).join("roll", "1", video={"color": "#FF00FF"}, audio=None)
        rid = api.acquire("roll", "5", AcquireClientRequest()).resourceId
        sid = api.start(rid, "roll", "5", _start_request()).sid
        wait_for(lambda: api.query(rid, sid).serverResponse.fileList, 10, what="first slice")
        time.sleep(4.5)  # record long enough for at least two rollovers
        stopped = api.stop(rid, sid, "roll", "5")
    finally:
        server.stop()
    assert stopped.serverResponse is not None
    mp4s = sorted(n for n in file_names(stopped.serverResponse.fileList) if n.endswith(".mp4"))
    assert mp4s[:3] == [f"{sid}_roll_{i}.mp4" for i in range(3)], mp4s
    for name in mp4s[:-1]:  # every closed file holds about mp4_max_seconds of media
        assert 1.9 <= probe(tmp_path / "b" / "x" / name).duration <= 3.1

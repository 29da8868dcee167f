"""``--recorder-processes``: the live recorders run in worker processes; the files are the same
as in-process, and a worker that dies fails its recordings (status 20) instead of hanging."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import av

from tests.support.emulator import Api, EmulatorFactory, start_request
from tests.support.mediadecode import RED, close_to, decode_video, rect_color
from tests.support.waiting import wait_for


def test_a_recording_in_a_worker_process_writes_every_frame(
    make_emulator: EmulatorFactory,
) -> None:
    api: Api = make_emulator(recorder_processes=1)
    workers = multiprocessing.active_children()
    assert workers, "the pool's worker process is started with the emulator"
    api.join("room", "1", video={"color": "#FF0000"}, audio={"tone": 440})
    rid, sid = api.start("room", "7", start_request(files=["hls", "mp4"]))
    wait_for(lambda: api.recording(sid)["realtime"]["frames"] >= 20, what="frames composed")
    assert api.stop(rid, sid, "room", "7").status_code == 200
    shown = api.recording(sid)
    composed = shown["realtime"]["frames"]
    (mp4,) = [Path(f["location"]) for f in shown["files"] if f["kind"] == "mp4"]
    video = decode_video(mp4)
    assert len(video.frames) == composed
    assert close_to(rect_color(video.frames[-1], 60, 40, 40, 40), RED)
    slices = [Path(f["location"]) for f in shown["files"] if f["kind"] == "ts"]
    in_slices = 0
    for path in slices:
        with av.open(str(path)) as container:
            in_slices += sum(1 for _ in container.decode(video=0))
    assert in_slices == composed


def test_a_dead_worker_fails_its_recording(make_emulator: EmulatorFactory) -> None:
    api: Api = make_emulator(recorder_processes=1)
    api.join("room", "1", video={"color": "#00FF00"})
    _, sid = api.start("room", "7", start_request())
    wait_for(lambda: api.recording(sid)["realtime"]["frames"] >= 5, what="frames composed")
    (worker,) = multiprocessing.active_children()
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    row = wait_for(
        lambda: (lambda r: r if r["status"] == 20 or r["error"] else None)(api.recording(sid)),
        what="the recording failed",
    )
    assert row["error"] == "compositing failed: RecorderProcessError"

"""``cloudrec record --merge`` as a user runs it, from outside: an emulator process whose MP4s roll
over every 2 s (``cloudrec emulator --mp4-rollover 2``), a worker and beat in real-service mode,
and the command's own JSON saying where the merged file is; the file decoded."""

from __future__ import annotations

import json
from pathlib import Path

import av

from tests.support.ports import free_port
from tests.support.processes import (
    cloudrec_env,
    processes,
    run_cli,
    spawn,
    start_beat_process,
    start_worker_process,
    wait_http,
)
from tests.support.waiting import wait_for
from worker.devapi import DevApiClient


def test_record_merge_wait_json_reports_one_playable_file(redis_url: str, tmp_path: Path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    storage = tmp_path / "storage"
    env = cloudrec_env(
        redis_url,
        base,
        CLOUDREC_DEV_API="false",
        CLOUDREC_STORAGE__DEFAULT__LOCAL_DIR=str(storage),
    )
    emulator = [
        "emulator",
        "--port",
        str(port),
        "--storage-dir",
        str(storage),
        "--slice-seconds",
        "1",
        "--mp4-rollover",
        "2",
        "--qps",
        "0",
    ]
    with processes() as procs:
        procs.append(spawn("emulator", emulator, env, tmp_path))
        wait_http(f"{base}/dev/recordings")
        procs.append(start_worker_process(env, tmp_path))
        procs.append(start_beat_process(env, tmp_path))
        DevApiClient(base).join("clim", "1", video={"color": "#00FF00"}, audio={"tone": 440})
        argv = ["record", "clim", "--duration", "6", "--files", "hls,mp4", "--size", "160x120"]
        argv += ["--fps", "15", "--prefix", "cli/run", "--merge", "--wait", "--json"]
        result = run_cli(argv, env, timeout=180)
        assert result.returncode == 0, (result.stdout, result.stderr)
        job = json.loads(result.stdout)
        status = json.loads(run_cli(["status", job["job_id"], "--json"], env).stdout)
        human = run_cli(["status", job["job_id"]], env).stdout

    assert job["state"] == "completed"
    merged = job["merged"]
    assert status["merged"] == merged and "merged: cli/run/" in human
    assert merged["key"] == f"cli/run/{job['job_id']}.mp4"
    folder = storage / "recordings" / "cli" / "run"
    rolled = wait_for(lambda: sorted(folder.glob(f"{job['sid']}_clim_*.mp4")), 1, 0.1, "MP4s")
    assert len(rolled) >= 2, rolled  # the emulator rolled its MP4 over (2 s each)
    path = storage / "recordings" / merged["key"]
    assert path.stat().st_size == merged["size"]
    with av.open(str(path)) as container:
        kinds = {s.type for s in container.streams}
        seconds = float(container.duration or 0) / av.time_base
    assert kinds == {"audio", "video"}
    assert abs(seconds - merged["duration"]) < 0.1 and merged["duration"] > 3, merged

"""Issue 10 item 3, last part, end to end: a recording whose output cannot be written ends with
the service's error answer, and the job records no file that does not exist.

Before: a local ``backgroundImage`` that was a named pipe blocked the emulator's recorder, the
recording sat at status 6 with no files, and the worker recorded the job ``completed`` with a
playlist that does not exist. Here the emulator cannot write at all (its staging area is not a
directory): the recording exits abnormally (event 1, status 20, then 404), and the job must end
``failed`` without a file.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from emulator import serve_in_thread
from tests.support.emulator import PROCESS_EMULATOR
from tests.support.processes import (
    cloudrec_env,
    processes,
    run_cli,
    start_beat_process,
    start_worker_process,
)
from tests.support.specs import process_spec
from tests.support.waiting import wait_for
from worker.devapi import DevApiClient
from worker.store import JobRecord, JobStore


def test_a_recording_that_cannot_write_fails_its_job_without_files(
    redis_url: str, redis_client, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = replace(PROCESS_EMULATOR, storage_dir=tmp_path / "storage")
    server = serve_in_thread(replace(config, staging_dir=blocker / "staging"))
    env = cloudrec_env(redis_url, server.base_url)
    store = JobStore(redis_client)
    DevApiClient(server.base_url).join("unwritable", "1", video={"color": "#FF0000"})
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    try:
        with processes() as procs:
            procs.append(start_worker_process(env, log_dir))
            procs.append(start_beat_process(env, log_dir))
            spec = tmp_path / "spec.json"
            spec.write_text(json.dumps(process_spec("unwritable", duration=20)))
            submitted = run_cli(["record", "unwritable", "--spec", str(spec)], env)
            assert submitted.returncode == 0, submitted.stderr
            job_id = submitted.stdout.strip()
            job = wait_for(lambda: _terminal(store, job_id), 90, 0.5, "the job to end")
    finally:
        server.stop()
    assert job.state == "failed", (job.state, job.error)
    assert job.files == [], job.files
    assert not list((tmp_path / "storage").rglob("*.m3u8"))


def _terminal(store: JobStore, job_id: str) -> JobRecord | None:
    job = store.find(job_id)
    return job if job is not None and job.terminal else None

"""Structured logs of a real worker and beat: JSON lines, one per transition and API call, with
job id, cname, sid and API code, and no secret anywhere in the output."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from emulator import serve_in_thread
from tasks.recording import submit_and_start
from tests.support.emulator import PROCESS_EMULATOR
from tests.support.processes import (
    Proc,
    cloudrec_env,
    processes,
    spawn,
    start_beat_process,
    start_worker_process,
    wait_worker_ready,
)
from tests.support.specs import process_spec
from tests.support.waiting import wait_for
from worker.celery_app import configure, runtime
from worker.devapi import DevApiClient
from worker.logs import JsonFormatter, PlainFormatter, Redactor, log_context
from worker.store import JobStore

pytestmark = pytest.mark.e2e

SECRETS = {
    "CLOUDREC_CUSTOMER_SECRET": "cust-secret-5f1e2d3c",
    "CLOUDREC_STORAGE__DEFAULT__ACCESS_KEY": "AKIAOPSTEST12345678",
    "CLOUDREC_STORAGE__DEFAULT__SECRET_KEY": "storage-secret-9a8b7c6d5e",
    "CLOUDREC_VAULT_KEY": "tcvIMXv2ciNbEJe5vc4CmBbzl_ngqFPdTA10R5p9xuY=",
}
TOKEN = "rtc-token-007-abcdef123456"


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))  # every line: one JSON object
    return out


def test_a_run_logs_json_lines_with_its_ids_and_no_secret(
    redis_url: str, redis_client: redis.Redis, log_dir: Path, tmp_path: Path
) -> None:
    server = serve_in_thread(
        replace(
            PROCESS_EMULATOR,
            storage_dir=tmp_path / "storage",
            customer_secret=SECRETS["CLOUDREC_CUSTOMER_SECRET"],
        )
    )
    env = cloudrec_env(redis_url, server.base_url, CLOUDREC_LOG_JSON="true", **SECRETS)
    dev = DevApiClient(server.base_url)
    dev.join("logs-json", "1", video={"color": "#0000FF"}, audio={"tone": 880})
    dev.set_faults({"errors": [{"operations": ["query"], "status": 504, "code": 62, "count": 1}]})
    store = JobStore(redis_client)
    try:
        from config import Settings

        configure(Settings(_env_file=None, redis_url=redis_url, **_settings_kwargs()))
        with processes() as procs:
            worker = start_worker_process(env, log_dir, split=True)
            procs.append(worker)
            beat = start_beat_process(env, log_dir, split=True)
            procs.append(beat)
            spec = process_spec("logs-json", duration=6, uid="4242", token=TOKEN)
            job, _ = submit_and_start(runtime(), spec)
            done = wait_for(
                lambda: (j := store.get(job.job_id)).terminal and j, 60, 0.3, "the job to end"
            )
    finally:
        server.stop()

    assert done.state == "completed", done.error
    lines = _lines(worker.log_path)
    mine = [entry for entry in lines if entry.get("job_id") == job.job_id]

    transitions = [e for e in mine if "to_state" in e]
    assert [e["to_state"] for e in transitions] == [
        "acquiring",
        "starting",
        "recording",
        "stopping",
        "completed",
    ]
    for entry in transitions:
        assert entry["cname"] == "logs-json"
    for entry in transitions[2:]:
        assert entry["sid"] == done.sid

    calls = [e for e in mine if "operation" in e and e["logger"] == "cloudrec.api"]
    operations = [e["operation"] for e in calls]
    assert operations[:2] == ["acquire", "start"]
    assert operations[-1] == "stop"
    assert "query" in operations
    assert all(e["cname"] == "logs-json" for e in calls if e["operation"] != "query")
    assert all(e["sid"] == done.sid for e in calls if e["operation"] != "acquire")
    assert all("status" in e for e in calls)
    failed = [e for e in calls if e.get("api_code") == "62"]
    assert len(failed) == 1 and failed[0]["status"] == "504" and failed[0]["level"] == "WARNING"

    everything = "".join(
        p.read_text() for proc in (worker, beat) for p in (proc.log_path, proc.out_path) if p
    )
    for secret in [*SECRETS.values(), TOKEN]:
        assert secret not in everything
    for entry in _lines(beat.log_path):
        assert {"ts", "level", "logger", "message"} <= entry.keys()


def _settings_kwargs() -> dict[str, Any]:
    from pydantic import SecretStr

    return {
        "customer_secret": SecretStr(SECRETS["CLOUDREC_CUSTOMER_SECRET"]),
        "vault_key": SecretStr(SECRETS["CLOUDREC_VAULT_KEY"]),
    }


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("cloudrec.test", logging.INFO, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_the_formatters_add_the_bound_context_and_redact_secrets() -> None:
    from worker.logs import ContextFilter

    redact = Redactor(["hunter2-secret"])
    with log_context(job_id="j1", cname="c1"):
        record = _record("token hunter2-secret leaked", sid="s1")
        ContextFilter().filter(record)
    line = json.loads(JsonFormatter(redact).format(record))
    assert line["job_id"] == "j1" and line["cname"] == "c1" and line["sid"] == "s1"
    assert line["message"] == "token *** leaked"
    plain = PlainFormatter(redact).format(record)
    assert plain.endswith("job_id=j1 cname=c1 sid=s1")
    assert "hunter2" not in plain
    outside = _record("no context")
    ContextFilter().filter(outside)
    assert "job_id" not in json.loads(JsonFormatter().format(outside))


# -- `celery -A worker.celery_app` logs as `cloudrec` does ----------------------------------------
CELERY_A = [sys.executable, "-m", "celery", "-A", "worker.celery_app"]


def _job_lines(proc: Proc, job_id: str) -> list[dict[str, Any]]:
    return [entry for entry in _lines(proc.log_path) if entry.get("job_id") == job_id]


def _shape(entries: list[dict[str, Any]]) -> set[tuple[str, str, frozenset[str]]]:
    """What a job's lines look like, without their values: (logger, level, field names)."""
    return {(e["logger"], e["level"], frozenset(e)) for e in entries}


def _run_one_job(store: JobStore, cname: str) -> tuple[str, str]:
    job, _ = submit_and_start(runtime(), process_spec(cname, duration=4, token=TOKEN))
    done = wait_for(lambda: (j := store.get(job.job_id)).terminal and j, 60, 0.3, "the job")
    assert done.state == "completed", done.error
    assert done.sid
    return job.job_id, done.sid


def test_celery_a_worker_logs_a_job_as_cloudrec_worker_does(
    redis_url: str, redis_client: redis.Redis, log_dir: Path, tmp_path: Path
) -> None:
    """One job through `cloudrec worker`, one through `celery -A worker.celery_app worker` (with
    a `celery -A ... beat`): the same JSON lines, the same fields, no secret in either."""
    server = serve_in_thread(
        replace(
            PROCESS_EMULATOR,
            storage_dir=tmp_path / "storage",
            customer_secret=SECRETS["CLOUDREC_CUSTOMER_SECRET"],
        )
    )
    env = cloudrec_env(redis_url, server.base_url, CLOUDREC_LOG_JSON="true", **SECRETS)
    dev = DevApiClient(server.base_url)
    store = JobStore(redis_client)
    try:
        from config import Settings

        configure(Settings(_env_file=None, redis_url=redis_url, **_settings_kwargs()))
        for cname in ("via-cloudrec", "via-celery"):
            dev.join(cname, "1", video={"color": "#00FFFF"}, audio={"tone": 550})
        with processes() as procs:
            beat = spawn(
                "beat", [*CELERY_A, "beat", "-l", "INFO"], env, log_dir, module=False, split=True
            )
            procs.append(beat)
            # `cloudrec worker` passes options it does not know to Celery (-n, -Q here).
            ours = spawn(
                "cloudrec-worker",
                ["worker", "-c", "2", "-n", "ours@%h", "-Q", "cloudrec.control,cloudrec.recording"],
                env,
                log_dir,
                split=True,
            )
            procs.append(ours)
            wait_worker_ready(ours)
            ours_job, ours_sid = _run_one_job(store, "via-cloudrec")
            ours.stop()
            plain = spawn(
                "celery-worker",
                [
                    *CELERY_A,
                    "worker",
                    "-c",
                    "2",
                    "--pool",
                    "threads",
                    "-n",
                    "plain@%h",
                    "-l",
                    "INFO",
                ],
                env,
                log_dir,
                module=False,
                split=True,
            )
            procs.append(plain)
            wait_worker_ready(plain)
            plain_job, plain_sid = _run_one_job(store, "via-celery")
    finally:
        server.stop()

    assert "ours@" in (ours.out_path or ours.log_path).read_text()  # -n reached Celery
    ours_lines, plain_lines = _job_lines(ours, ours_job), _job_lines(plain, plain_job)
    # Every stderr line of both workers and of the beat is one JSON object (_lines parses all).
    _lines(beat.log_path)
    assert ours_lines and plain_lines
    for lines, cname, sid in (
        (ours_lines, "via-cloudrec", ours_sid),
        (plain_lines, "via-celery", plain_sid),
    ):
        transitions = [e["to_state"] for e in lines if "to_state" in e]
        assert transitions == ["acquiring", "starting", "recording", "stopping", "completed"]
        assert all(e["cname"] == cname for e in lines)
        assert all(e["sid"] == sid for e in lines if e.get("operation") == "stop")
        assert {e["task"] for e in lines if "task" in e} >= {"recording.acquire", "recording.stop"}
    assert _shape(plain_lines) == _shape(ours_lines)
    everything = "".join(
        p.read_text() for proc in (ours, plain, beat) for p in (proc.log_path, proc.out_path) if p
    )
    for secret in [*SECRETS.values(), TOKEN]:
        assert secret not in everything


def test_a_task_reads_its_job_fields_only_for_a_line_that_lacks_them() -> None:
    """The job's cname and sid are read from the store the first time one of the task's lines
    has no cname (once per task), never for lines that carry them (most do)."""
    from worker.logs import ContextFilter, DeferredJobFields, _deferred

    reads: list[str] = []

    def lookup(job_id: str) -> dict[str, str | None]:
        reads.append(job_id)
        return {"cname": "c9", "sid": "s9"}

    token = _deferred.set(DeferredJobFields(lookup, "j9"))
    try:
        carried = _record("transition", cname="own", sid="own-sid")
        ContextFilter().filter(carried)
        assert reads == [] and carried.cname == "own"  # type: ignore[attr-defined]
        for _ in range(2):
            bare = _record("a line without them")
            ContextFilter().filter(bare)
            assert (bare.cname, bare.sid) == ("c9", "s9")  # type: ignore[attr-defined]
        assert reads == ["j9"]
    finally:
        _deferred.reset(token)


def test_celerys_per_message_lines_are_left_out_above_debug() -> None:
    """ "Received task" and "Task ... succeeded" come back with -l DEBUG; Celery's other trace
    lines (retries, expected errors, failures) always pass."""
    from celery.app.trace import LOG_SUCCESS

    from worker.logs import setup_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    trace = logging.getLogger("celery.app.trace")
    try:
        setup_logging(logging.INFO)
        assert not logging.getLogger("celery.worker.strategy").isEnabledFor(logging.INFO)
        success = logging.LogRecord(trace.name, logging.INFO, __file__, 1, LOG_SUCCESS, (), None)
        other = logging.LogRecord(trace.name, logging.INFO, __file__, 1, "Task %s retry", (), None)
        assert not trace.filter(success) and trace.filter(other)
        setup_logging("DEBUG")
        assert logging.getLogger("celery.worker.strategy").isEnabledFor(logging.INFO)
        assert trace.filter(success)
    finally:
        setup_logging(logging.INFO)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])

"""Flower against the test broker: a real ``celery flower`` process with basic auth, a worker
process sending task events, and a recording job; checked through Flower's HTTP API."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tasks.recording import submit_and_start
from tests.support.ports import free_port
from tests.support.processes import (
    processes,
    spawn,
    start_beat_process,
    start_worker_process,
    wait_http,
)
from tests.support.specs import process_spec
from tests.support.waiting import wait_for
from worker.celery_app import CONTROL_QUEUE, RECORDING_QUEUE, runtime
from worker.devapi import DevApiClient
from worker.store import JobStore

pytestmark = pytest.mark.e2e

AUTH = ("ops", "flower-pass-1234")
# The tasks a job that starts at the first try runs: its start runs inside the acquire task
# (tasks.recording.start_inline); ``recording.start`` is sent only to retry a start.
JOB_TASKS = {
    "recording.acquire": RECORDING_QUEUE,
    "recording.watch": RECORDING_QUEUE,
    "recording.stop": CONTROL_QUEUE,
}


def _tasks_of(base: str, job_id: str) -> dict[str, dict[str, Any]] | None:
    """Flower's view of the job's tasks by name, once every step has succeeded."""
    tasks = requests.get(f"{base}/api/tasks", auth=AUTH, timeout=5).json()
    mine = {
        t["name"]: t
        for t in tasks.values()
        if t.get("args") and _args(t["args"]) == [job_id] and t.get("state") == "SUCCESS"
    }
    return mine if set(JOB_TASKS) <= mine.keys() else None


def _args(text: str) -> Any:
    try:
        return list(ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError):
        return None


def test_flower_shows_the_recording_tasks_and_workers(
    env: dict[str, str], log_dir: Path, redis_client: redis.Redis, emulator
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    flower_argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "flower",
        f"--port={port}",
        "--address=127.0.0.1",
    ]
    # As compose.yaml runs it: the password in the environment, never on the command line.
    flower_env = dict(env, FLOWER_BASIC_AUTH=f"{AUTH[0]}:{AUTH[1]}")
    DevApiClient(emulator.base_url).join("flower", "1", video={"color": "#FFFF00"}, audio=None)
    store = JobStore(redis_client)
    with processes() as procs:
        procs.append(spawn("flower", flower_argv, flower_env, log_dir, module=False))
        wait_http(f"{base}/healthcheck")
        assert AUTH[1] not in Path(f"/proc/{procs[-1].pid}/cmdline").read_text()
        worker = start_worker_process(env, log_dir)
        procs.append(worker)
        procs.append(start_beat_process(env, log_dir))
        workers = wait_for(
            lambda: (
                requests.get(
                    f"{base}/api/workers", params={"refresh": "1"}, auth=AUTH, timeout=10
                ).json()
                or None
            ),
            30,
            0.5,
            "Flower to list the worker",
        )
        job, _ = submit_and_start(runtime(), process_spec("flower", duration=3))
        wait_for(lambda: store.get(job.job_id).terminal, 60, 0.3, "the job to end")
        tasks = wait_for(lambda: _tasks_of(base, job.job_id), 30, 0.5, "Flower to see the tasks")
        everything = requests.get(f"{base}/api/tasks", auth=AUTH, timeout=5).json()
        unauthenticated = requests.get(f"{base}/api/workers", timeout=5)

    assert unauthenticated.status_code == 401
    (name, info), *_ = workers.items()
    assert name.startswith("celery@")
    queues = {q["name"] for q in info.get("active_queues", [])}
    assert {CONTROL_QUEUE, RECORDING_QUEUE} <= queues
    registered = set(info.get("registered", []))
    assert {
        *JOB_TASKS,
        "recording.start",
        "recording.submit",
        "recording.dispatch",
        "recording.fire_schedule",
    } <= (registered)
    assert store.get(job.job_id).state == "completed"
    for task_name, queue in JOB_TASKS.items():
        task = tasks[task_name]
        # Nothing but the job id travels; a timed stop also carries its second (a number).
        kwargs = "{}" if task["kwargs"] is None else task["kwargs"]
        timed_stop = task_name == "recording.stop" and kwargs.startswith("{'call_at': ")
        assert kwargs == "{}" or timed_stop, (task_name, kwargs)
        assert task["routing_key"] == queue, (task_name, task)
        assert task["worker"] == name
    # The beat's dispatcher shows up too, with no arguments at all.
    dispatches = [t for t in everything.values() if t["name"] == "recording.dispatch"]
    assert dispatches and all(_args(t["args"]) == [] for t in dispatches)

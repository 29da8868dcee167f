"""``cloudrec status`` and ``cloudrec jobs``: the fixed JSON shape, the state filter."""

from __future__ import annotations

import json
import re
import time

import pytest
import redis

from tests.support.processes import Deployment, cloudrec_env, run_cli
from tests.support.redis_db import TEST_REDIS_URL
from tests.support.status import STATUS_KEYS
from tests.support.waiting import wait_for
from worker.states import JobState
from worker.store import JobRecord, JobStore

pytestmark = pytest.mark.e2e

SMALL = ["--size", "160x120", "--fps", "10", "--bitrate", "200", "--files", "hls"]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def finished(deployment: Deployment) -> str:
    deployment.cli("channel", "join", "cli-status", "7", "--color", "#0000FF", "--tone", "660")
    result = deployment.cli(
        "record", "cli-status", "--duration", "3", *SMALL, "--job-id", "cli-status-1", "--wait"
    )
    assert result.returncode == 0, result.stderr
    return "cli-status-1"


def test_status_json_has_the_fixed_shape(deployment: Deployment, finished: str) -> None:
    result = deployment.cli("status", finished, "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status.keys() >= STATUS_KEYS
    assert status["job_id"] == finished and status["state"] == "completed"
    assert status["cname"] == "cli-status"
    assert status["sid"] and status["resource_id"] and status["uid"]
    assert ISO.match(status["stop_at"])
    assert [h["state"] for h in status["history"]] == [
        "acquiring",
        "starting",
        "recording",
        "stopping",
        "completed",
    ]
    assert all(ISO.match(h["at"]) and h.keys() == {"state", "at"} for h in status["history"])
    assert status["files"] and all(f.keys() == {"fileName", "key"} for f in status["files"])
    assert status["files"][0]["fileName"] == f"{status['sid']}_cli-status.m3u8"
    assert status["error"] is None


def test_status_text_shows_state_times_and_files(deployment: Deployment, finished: str) -> None:
    result = deployment.cli("status", finished)
    assert result.returncode == 0
    assert f"job {finished}: completed" in result.stdout
    assert "elapsed" in result.stdout and "file(s)" in result.stdout


def test_status_of_an_unknown_job_fails(deployment: Deployment) -> None:
    result = deployment.cli("status", "no-such-job", "--json")
    assert result.returncode == 3  # Exit.NOT_FOUND
    assert "no job with id 'no-such-job'" in result.stderr


def test_jobs_filters_by_state(deployment: Deployment, finished: str) -> None:
    live = deployment.cli(
        "record", "cli-status", "--duration", "30", *SMALL, "--job-id", "cli-long"
    )
    assert live.returncode == 0, live.stderr
    wait_for(
        lambda: deployment.store.get("cli-long").state == "recording", 30, 0.3, "cli-long recording"
    )
    try:
        completed = json.loads(deployment.cli("jobs", "--state", "completed", "--json").stdout)
        recording = json.loads(deployment.cli("jobs", "--state", "recording", "--json").stdout)
        everything = json.loads(deployment.cli("jobs", "--json").stdout)
        text = deployment.cli("jobs", "--state", "recording").stdout
    finally:
        assert deployment.cli("stop", "cli-long").returncode == 0
    assert finished in {j["job_id"] for j in completed}
    assert {j["state"] for j in completed} == {"completed"}
    assert [j["job_id"] for j in recording] == ["cli-long"]
    assert {finished, "cli-long"} <= {j["job_id"] for j in everything}
    assert "cli-long" in text and "recording" in text and finished not in text
    invalid = deployment.cli("jobs", "--state", "sleeping")
    assert invalid.returncode == 2


def test_status_and_jobs_name_the_app_of_a_job() -> None:
    """``status`` (text and JSON) and ``jobs`` (text and JSON) show the app a job records with,
    the default one included. Jobs written straight to the store (real Redis) and read by real
    ``cloudrec`` processes; no worker is needed to read them."""
    store = JobStore(redis.Redis.from_url(TEST_REDIS_URL))
    now = time.time()
    for job_id, named in (("cli-app-school", {"app": "school"}), ("cli-app-default", {})):
        record = JobRecord(
            job_id=job_id,
            state=JobState.RECORDING,
            cname="cli-app",
            uid="1",
            spec={"cname": "cli-app"},
            created_at=now,
            stop_at=now + 600,
            history=[{"state": JobState.RECORDING, "at": now}],
            **named,
        )
        store.create(record)
    env = cloudrec_env(TEST_REDIS_URL, "http://127.0.0.1:9")
    try:
        for job_id, app in (("cli-app-school", "school"), ("cli-app-default", "default")):
            text = run_cli(["status", job_id], env)
            assert text.returncode == 14, text.stderr  # not ended yet
            assert f"app {app}" in text.stdout.splitlines()[0]
            as_json = run_cli(["status", job_id, "--json"], env)
            assert json.loads(as_json.stdout)["app"] == app
        listing = run_cli(["jobs", "--state", "recording"], env).stdout.splitlines()
        lines = {line.split()[0]: line for line in listing}
        assert lines["cli-app-school"].endswith("app school")
        assert lines["cli-app-default"].endswith("app default")
        listed = json.loads(run_cli(["jobs", "--state", "recording", "--json"], env).stdout)
        apps = {j["job_id"]: j["app"] for j in listed}
        assert (apps["cli-app-school"], apps["cli-app-default"]) == ("school", "default")
    finally:
        for job_id in ("cli-app-school", "cli-app-default"):
            store.transition(job_id, {JobState.RECORDING}, JobState.FAILED)

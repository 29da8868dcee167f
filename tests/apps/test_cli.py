"""``cloudrec record --app``, ``status`` and ``jobs`` with two apps, as a user runs them: every
command a subprocess with only ``CLOUDREC_*`` settings, a ``cloudrec worker`` and ``cloudrec
beat``, the emulator serving the school's App ID with its own credentials."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from emulator.config import EmulatorApp
from tests.support.emulator import PROCESS_EMULATOR, serving
from tests.support.processes import (
    cloudrec_env,
    processes,
    run_cli,
    start_beat_process,
    start_worker_process,
)

pytestmark = pytest.mark.e2e

SCHOOL = EmulatorApp("school-app-id", "school-customer", "school-customer-secret", qps=10)
SMALL = ["--size", "160x120", "--fps", "10", "--bitrate", "200", "--files", "hls"]


def test_record_names_its_app_and_status_and_jobs_show_it(redis_url: str, tmp_path: Path) -> None:
    with serving(replace(PROCESS_EMULATOR, storage_dir=tmp_path / "s", apps=(SCHOOL,))) as emu:
        env = cloudrec_env(
            redis_url,
            emu.base_url,
            CLOUDREC_DEV_API="false",
            CLOUDREC_APPS__SCHOOL__APP_ID=SCHOOL.app_id,
            CLOUDREC_APPS__SCHOOL__CUSTOMER_ID=SCHOOL.customer_id,
            CLOUDREC_APPS__SCHOOL__CUSTOMER_SECRET=SCHOOL.customer_secret,
        )
        refused = run_cli(["record", "room", "--app", "nosuch", "--job-id", "cli-nosuch"], env)
        assert refused.returncode == 1, refused.stderr
        assert "app: must name a configured app (default, school" in refused.stderr
        with processes() as procs:
            (tmp_path / "logs").mkdir()
            procs.append(start_worker_process(env, tmp_path / "logs"))
            procs.append(start_beat_process(env, tmp_path / "logs"))
            argv = ["record", "room", *SMALL, "--duration", "3", "--wait", "--json"]
            school = run_cli([*argv, "--app", "school", "--job-id", "cli-school"], env)
            plain = run_cli([*argv, "--job-id", "cli-default"], env)
        listing = run_cli(["jobs"], env)
        status = run_cli(["status", "cli-school", "--json"], env)
        listed = json.loads(run_cli(["jobs", "--json"], env).stdout)
    assert school.returncode == 10, school.stderr  # empty: nobody published
    assert plain.returncode == 10, plain.stderr
    assert json.loads(school.stdout)["app"] == "school"
    assert json.loads(plain.stdout)["app"] == "default"
    assert json.loads(status.stdout)["app"] == "school"
    assert {job["job_id"]: job["app"] for job in listed} == {
        "cli-school": "school",
        "cli-default": "default",
    }
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()}
    assert lines["cli-school"].endswith("app school")
    assert lines["cli-default"].endswith("app default")
    # No secret of either app anywhere a user looks.
    for text in (school.stdout, school.stderr, listing.stdout, status.stdout):
        assert SCHOOL.customer_secret not in text and "demo-secret" not in text

"""What the page's tests know of their deployment, and the steps they take on it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import run_cli
from tests.support.waiting import wait_for
from worker.devapi import DevApiClient
from worker.store import JobRecord, JobStore

USER = "viewer"
PASSWORD = "page-password-for-tests"
CANVAS = (160, 120)  # the recordings' canvas: what the player must show
S3_PROFILE = "s3"  # a storage profile on an S3-protocol server (moto on loopback)
S3_BUCKET = "web-s3"


def s3_settings(endpoint: str) -> dict[str, str]:
    """The S3 profile, as workers and the page get it from their environment."""
    prefix = f"CLOUDREC_STORAGE__{S3_PROFILE.upper()}__"
    return {
        f"{prefix}VENDOR": "11",
        f"{prefix}BUCKET": S3_BUCKET,
        f"{prefix}ENDPOINT": endpoint,
        f"{prefix}ACCESS_KEY": "web-test-access",
        f"{prefix}SECRET_KEY": "web-test-secret",
    }


@dataclass
class Site:
    url: str  # where `cloudrec web` answers
    env: dict[str, str]
    dev: DevApiClient
    store: JobStore
    storage_dir: Path
    log_dir: Path

    def cli(self, *argv: str, stdin: str | None = None) -> str:
        done = run_cli(list(argv), self.env, timeout=90, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def record(self, cname: str, job_id: str, duration: int, *more: str) -> str:
        """A real job through the real submit path (`cloudrec record`), one user publishing."""
        self.dev.join(cname, "7", video={"color": "#3060C0"}, audio={"tone": 440})
        width, height = CANVAS
        return self.cli(
            "record", cname, "--job-id", job_id, "--duration", str(duration),
            "--size", f"{width}x{height}", "--fps", "10", "--bitrate", "200", *more,
        )  # fmt: skip

    def submit_spec(self, cname: str, spec: dict[str, Any]) -> str:
        return self.cli("record", cname, "--spec", "-", stdin=json.dumps(spec))

    def job(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def wait_state(self, job_id: str, state: str, timeout: float = 90.0) -> JobRecord:
        return wait_for(
            lambda: (job := self.job(job_id)).state == state and job,
            timeout,
            0.2,
            f"job {job_id} to be {state}",
        )

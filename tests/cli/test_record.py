"""``cloudrec record``: refusing a bad spec, ``--wait`` and its exit status, ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.processes import Deployment

pytestmark = pytest.mark.e2e

SMALL = ["--size", "160x120", "--fps", "10", "--bitrate", "200", "--files", "hls"]


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--max-idle", "1"], "recordingConfig.maxIdleTime"),
        (["--background", "red"], "recordingConfig.transcodingConfig.backgroundColor"),
        (["--duration", "0"], "duration"),
        (["--storage", "nowhere"], "storage"),
        (["--duration", "30", "--stop-early-max", "30"], "stop_early_max"),
    ],
    ids=["max-idle", "background", "duration", "storage", "stop-early-max"],
)
def test_an_invalid_record_names_the_field_and_stores_nothing(
    deployment: Deployment, argv: list[str], field: str
) -> None:
    recordings_before = len(deployment.dev.recordings())
    job_id = f"cli-bad-{field}"
    result = deployment.cli("record", "cli-bad", *argv, "--job-id", job_id)
    assert result.returncode != 0
    assert f"{field}:" in result.stderr
    assert result.stdout == ""
    assert deployment.store.find(job_id) is None
    assert not deployment.redis.keys(f"cloudrec:vault:{job_id}")
    assert len(deployment.dev.recordings()) == recordings_before


def test_an_invalid_spec_file_names_the_field(deployment: Deployment, tmp_path: Path) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"cname": "x", "recordingFileConfig": {"avFileType": ["mp4"]}}))
    result = deployment.cli("record", "cli-bad-spec", "--spec", str(spec), "--job-id", "bad-2")
    assert result.returncode != 0
    assert "recordingFileConfig.avFileType" in result.stderr
    assert deployment.store.find("bad-2") is None


def test_a_bad_size_is_refused_before_anything_else(deployment: Deployment) -> None:
    result = deployment.cli("record", "c", "--size", "640")
    assert result.returncode == 2
    assert "--size" in result.stderr


def test_record_wait_follows_the_job_and_exits_0_when_it_completed(
    deployment: Deployment,
) -> None:
    assert deployment.cli("channel", "join", "cli-ok", "1", "--color", "#FF0000").returncode == 0
    result = deployment.cli(
        "record", "cli-ok", "--duration", "3", *SMALL, "--prefix", "cli/ok", "--wait", "--json"
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["state"] == "completed"
    assert status["files"] and status["files"][0]["key"].startswith("cli/ok/")
    assert (deployment.storage_dir / "recordings" / status["files"][0]["key"]).exists()
    assert deployment.store.get(status["job_id"]).state == "completed"


def test_record_wait_shows_a_progress_bar_and_prints_the_job_id(deployment: Deployment) -> None:
    deployment.cli("channel", "join", "cli-bar", "1", "--color", "#00FF00")
    result = deployment.cli("record", "cli-bar", "--duration", "3", *SMALL, "--wait")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert deployment.store.get(job_id).state == "completed"
    # The bar (on stderr, so stdout stays the job id): state, a bar, elapsed and time left.
    assert "completed" in result.stderr
    assert "━" in result.stderr
    assert "elapsed" in result.stderr and "left" in result.stderr


def test_record_wait_exits_non_zero_unless_completed(deployment: Deployment) -> None:
    # Nobody in the channel: the stop answers 435 and the job ends "empty".
    result = deployment.cli("record", "cli-nobody", "--duration", "3", *SMALL, "--wait", "--json")
    assert result.returncode == 10  # Exit.EMPTY: each end has its own code
    assert json.loads(result.stdout)["state"] == "empty"


def test_record_without_wait_prints_the_job_id_at_once(deployment: Deployment) -> None:
    result = deployment.cli("record", "cli-id", "--duration", "2", *SMALL, "--job-id", "cli-id-1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cli-id-1"
    again = deployment.cli("record", "cli-id", "--duration", "2", *SMALL, "--job-id", "cli-id-1")
    assert again.stdout.strip() == "cli-id-1"  # the same job, not a second recording


def test_record_stop_early_max_lets_the_stop_go_that_early_at_most(deployment: Deployment) -> None:
    argv = ["--duration", "600", "--stop-early-max", "90", "--job-id", "cli-early-1"]
    result = deployment.cli("record", "cli-early", *SMALL, *argv)
    assert result.returncode == 0, result.stderr
    job = deployment.store.get("cli-early-1")
    assert job.stop_early_max == 90
    assert deployment.store.due_at("stop", job.job_id) == pytest.approx(job.stop_at - 90)
    deployment.cli("cancel", job.job_id)

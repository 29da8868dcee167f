"""The live views: ``status --watch`` and ``jobs --watch`` redraw in place (rich) with state,
elapsed and remaining time, and file progress. A terminal is emulated with rich's
``TTY_COMPATIBLE``/``TTY_INTERACTIVE`` switches, so the escape codes that move the cursor back
over the previous frame are really written."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO, Deployment
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

SMALL = ["--size", "160x120", "--fps", "10", "--bitrate", "200", "--files", "hls"]
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "110", "LINES": "40"}
CURSOR_UP = re.compile(r"\x1b\[\d*A")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _plain(text: str) -> str:
    return ANSI.sub("", text)


def _start(deployment: Deployment, cname: str, job_id: str, duration: int) -> None:
    deployment.cli("channel", "join", cname, "1", "--color", "#FF00FF")
    result = deployment.cli(
        "record", cname, "--duration", str(duration), *SMALL, "--job-id", job_id
    )
    assert result.returncode == 0, result.stderr


def test_status_watch_redraws_in_place_until_the_job_ends(deployment: Deployment) -> None:
    # 8 s: a fresh clone compiles every module on the first CLI start, which costs a few of them.
    _start(deployment, "cli-watch", "cli-watch-1", 8)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "status",
            "cli-watch-1",
            "--watch",
            "--interval",
            "0.3",
        ],
        env={**deployment.env, **TERMINAL},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    frames = result.stdout.count("job cli-watch-1")
    assert frames >= 5, result.stdout  # redrawn, not printed once
    assert len(CURSOR_UP.findall(result.stdout)) >= frames - 1
    text = _plain(result.stdout)
    assert "recording" in text and "completed" in text
    assert re.search(r"remaining\s+\d+s", text)  # counted down while it recorded
    assert re.search(r"elapsed\s+\d+s", text)
    job = deployment.store.get("cli-watch-1")
    assert job.state == "completed"
    last_frame = text[text.rindex("job cli-watch-1") :]
    assert "1 file(s)" in last_frame and job.files[0].key in last_frame
    assert f"writing {job.sid}_cli-watch.m3u8" in text  # file progress while it recorded


def test_status_watch_without_a_terminal_prints_the_final_state_once(
    deployment: Deployment,
) -> None:
    _start(deployment, "cli-watch-pipe", "cli-watch-2", 2)
    result = deployment.cli("status", "cli-watch-2", "--watch", "--interval", "0.3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("job cli-watch-2") == 1
    assert not CURSOR_UP.search(result.stdout)
    assert "completed" in result.stdout


def test_jobs_watch_redraws_the_table_until_interrupted(
    deployment: Deployment, tmp_path: Path
) -> None:
    _start(deployment, "cli-jobs-watch", "cli-jobs-watch-1", 20)
    screen = tmp_path / "screen.txt"
    with screen.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "jobs", "--watch", "--interval", "0.3"],
            env={**deployment.env, **TERMINAL},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            # As in a terminal: a pytest started in the background (``cmd &`` without job
            # control) ignores SIGINT, its children inherit that, and Ctrl-C would do nothing.
            preexec_fn=_default_sigint,
        )
    try:
        # Three frames that show the job recording, then Ctrl-C.
        wait_for(lambda: _frames_recording(screen.read_text()) >= 3, 40, 0.3, "three frames")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()  # reaps it and closes its stderr pipe (no ResourceWarning later)
        assert deployment.cli("stop", "cli-jobs-watch-1").returncode == 0
    assert proc.returncode == 0, err
    shown = screen.read_text()
    assert CURSOR_UP.search(shown)
    text = _plain(shown)
    for column in ("job", "state", "cname", "elapsed", "remaining", "files"):
        assert column in text


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _frames_recording(screen: str) -> int:
    frames = _plain(screen).split("cloudrec jobs at")[1:]
    return sum(1 for f in frames if re.search(r"cli-jobs-watch-1\s.*recording", f))

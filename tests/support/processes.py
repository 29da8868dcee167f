"""Running cloudrec the way an operator does: real ``cloudrec`` processes (worker, beat, metrics
exporter, Flower) against the test Redis and an emulator served in the test process.

Every process is started with ``sys.executable -m worker.cli ...`` (the console script's module)
and an environment holding only ``CLOUDREC_*`` settings, and is stopped by its own handle.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from tests.support.waiting import wait_for
from worker.devapi import DevApiClient
from worker.runtime import Runtime
from worker.store import JobStore

REPO = Path(__file__).resolve().parents[2]


def cloudrec_env(redis_url: str, api_base_url: str, **extra: str) -> dict[str, str]:
    """The environment of a cloudrec process: the parent's, minus any CLOUDREC_* it had."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDREC_")}
    env.update(
        CLOUDREC_REDIS_URL=redis_url,
        CLOUDREC_API_BASE_URL=api_base_url,
        CLOUDREC_START_CONFIRM_TIMEOUT="20",
        CLOUDREC_FAILOVER_WINDOW="5",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Proc:
    """A child process with its combined output in a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path  # stderr (the log lines), and stdout too unless out_path is set
    out_path: Path | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (warm shutdown), SIGKILL after ``grace`` seconds."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


def spawn(
    name: str,
    argv: list[str],
    env: dict[str, str],
    log_dir: Path,
    *,
    module: bool = True,
    split: bool = False,
) -> Proc:
    """Start ``cloudrec ARGV`` (or, with ``module=False``, the program ARGV) in the repo root.
    With ``split``, stdout goes to its own file (``Proc.out_path``)."""
    log_path = log_dir / f"{name}.log"
    out_path = log_dir / f"{name}.out" if split else None
    command = [sys.executable, "-m", "worker.cli", *argv] if module else argv
    with log_path.open("wb") as err, (out_path or log_path).open("ab") as out:
        popen = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=out, stderr=err if split else subprocess.STDOUT
        )
    return Proc(name, popen, log_path, out_path)


def run_cli(
    argv: list[str], env: dict[str, str], *, timeout: float = 60.0, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``cloudrec`` command to completion and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *argv],
        env=env,
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def processes() -> Iterator[list[Proc]]:
    """Collects started processes and stops every one of them at the end, even on failure."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()


def wait_http(url: str, timeout: float = 30.0, **kwargs: Any) -> requests.Response:
    def probe() -> requests.Response | None:
        try:
            response = requests.get(url, timeout=2, **kwargs)
        except requests.RequestException:
            return None
        return response if response.status_code == 200 else None

    return wait_for(probe, timeout, 0.2, f"{url} to answer 200")


def wait_worker_ready(proc: Proc, timeout: float = 60.0) -> None:
    """A Celery worker logs 'ready.' once it consumes."""

    def probe() -> bool:
        assert proc.alive(), f"{proc.name} exited:\n{proc.output()[-3000:]}"
        return " ready." in proc.output()

    wait_for(probe, timeout, 0.2, f"{proc.name} to be ready")


def start_worker_process(
    env: dict[str, str], log_dir: Path, name: str = "worker", *, split: bool = False
) -> Proc:
    argv = ["worker", "-c", "4", "--pool", "threads", "-l", "INFO"]
    proc = spawn(name, argv, env, log_dir, split=split)
    wait_worker_ready(proc)
    return proc


def start_beat_process(
    env: dict[str, str], log_dir: Path, name: str = "beat", *, split: bool = False
) -> Proc:
    return spawn(name, ["beat", "-l", "INFO"], env, log_dir, split=split)


Cli = Callable[..., subprocess.CompletedProcess[str]]


@dataclass
class Deployment:
    env: dict[str, str]
    dev: DevApiClient
    store: JobStore
    redis: redis.Redis
    storage_dir: Path

    def cli(self, *argv: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        return run_cli(list(argv), self.env, timeout=timeout)


# A "celery -A" worker as an operator starts it: no -Q, so it consumes app.conf.task_queues.
PLAIN_CELERY_WORKER = [
    sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
    "--pool", "threads", "-c", "4", "-l", "INFO",
]  # fmt: skip
CLOUDREC_WORKER = ["worker", "-c", "4", "--pool", "threads", "-l", "INFO"]


@dataclass
class Cloudrec:
    """A running deployment as a caller sees it, plus what the test needs to check on it."""

    redis_url: str
    env: dict[str, str]
    runtime: Runtime
    dev: DevApiClient
    log_dir: Path
    procs: list[Proc]

    def start_worker(self, *, plain_celery: bool = False) -> Proc:
        if plain_celery:
            proc = spawn("celery-worker", PLAIN_CELERY_WORKER, self.env, self.log_dir, module=False)
        else:
            proc = spawn("worker", CLOUDREC_WORKER, self.env, self.log_dir)
        self.procs.append(proc)
        wait_worker_ready(proc)
        return proc

    def start_beat(self) -> Proc:
        proc = start_beat_process(self.env, self.log_dir)
        self.procs.append(proc)
        return proc

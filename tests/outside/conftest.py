"""Fixtures for tests that stand outside cloudrec: the caller is a separate interpreter (a venv
with Celery and not cloudrec, or with only ``cloudrec-client``), or raw JSON pushed into Redis;
cloudrec runs as real processes (``cloudrec worker`` or a plain ``celery -A worker.celery_app
worker``, ``cloudrec beat``) against an emulator served on a loopback port."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from config import Settings
from emulator import EmulatorServer
from tests.ops.harness import (
    Proc,
    cloudrec_env,
    processes,
    spawn,
    start_beat_process,
    start_emulator,
    wait_worker_ready,
)
from tests.outside.venvs import celery_venv, client_venv
from worker.celery_app import configure, runtime
from worker.devapi import DevApiClient
from worker.runtime import Runtime

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


@pytest.fixture(scope="session")
def outside_python() -> Path:
    """The python of a venv with Celery and not cloudrec (made once, cached across runs)."""
    return celery_venv()


@pytest.fixture(scope="session")
def client_python() -> Path:
    """The python of a venv with only cloudrec-client installed (cached per client source)."""
    return client_venv()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    server = start_emulator(tmp_path / "storage")
    yield server
    server.stop()


@pytest.fixture
def cloudrec(redis_url: str, emulator: EmulatorServer, tmp_path: Path) -> Iterator[Cloudrec]:
    """Nothing started yet: each test starts the worker (and beat) the way it means to."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    vault_key = "aq1TKoKD0s6n0Q2b0pN1vXkq6o5tFjvFK0o8W3c6m1Y="  # a Fernet key, for token tests
    configure(Settings(redis_url=redis_url, api_base_url=emulator.base_url, vault_key=vault_key))
    env = cloudrec_env(redis_url, emulator.base_url, CLOUDREC_VAULT_KEY=vault_key)
    with processes() as procs:
        yield Cloudrec(
            redis_url=redis_url,
            env=env,
            runtime=runtime(),
            dev=DevApiClient(emulator.base_url),
            log_dir=log_dir,
            procs=procs,
        )

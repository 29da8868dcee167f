"""Fixtures for tests that stand outside cloudrec: the caller is a separate interpreter (a venv
with Celery and not cloudrec, or with only ``cloudrec-client``), or raw JSON pushed into Redis;
cloudrec runs as real processes (``cloudrec worker`` or a plain ``celery -A worker.celery_app
worker``, ``cloudrec beat``) against an emulator served on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from config import Settings
from emulator import EmulatorServer
from tests.support.emulator import PROCESS_EMULATOR, serving
from tests.support.processes import (
    Cloudrec,
    cloudrec_env,
    processes,
)
from tests.support.venvs import celery_venv, client_venv
from worker.celery_app import configure, runtime
from worker.devapi import DevApiClient


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
    with serving(replace(PROCESS_EMULATOR, storage_dir=tmp_path / "storage")) as server:
        yield server


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

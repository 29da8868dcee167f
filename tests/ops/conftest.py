"""Ops fixtures: an emulator in a thread and a place for the logs of child processes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from config import Settings
from emulator import EmulatorServer
from tests.support.emulator import PROCESS_EMULATOR, serving
from tests.support.processes import cloudrec_env
from worker.celery_app import configure


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    with serving(replace(PROCESS_EMULATOR, storage_dir=tmp_path / "storage")) as server:
        yield server


@pytest.fixture
def env(redis_url: str, emulator: EmulatorServer) -> dict[str, str]:
    """The environment of every cloudrec process in a test; the test process's Celery app
    (which sends tasks) is pointed at the same Redis."""
    configure(Settings(redis_url=redis_url, api_base_url=emulator.base_url))
    return cloudrec_env(redis_url, emulator.base_url)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path

"""Tier 1 fixtures for the worker's logic: a real Redis, the emulator served in a thread (for
what only the service can answer), and a Runtime wired to both. The step functions run directly,
without Celery: a test drives them and checks the record, the due-queue and the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from emulator.server import EmulatorServer
from tests.support.emulator import STEP_EMULATOR, serving
from tests.support.stack import make_settings
from worker.devapi import DevApiClient
from worker.runtime import Runtime


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    with serving(replace(STEP_EMULATOR, storage_dir=tmp_path / "storage")) as server:
        yield server


@pytest.fixture
def dev(emulator: EmulatorServer) -> Iterator[DevApiClient]:
    client = DevApiClient(emulator.base_url)
    yield client
    client.close()


@pytest.fixture
def rt(redis_url: str, emulator: EmulatorServer) -> Iterator[Runtime]:
    runtime = Runtime.build(make_settings(redis_url, emulator.base_url))
    yield runtime
    runtime.close()

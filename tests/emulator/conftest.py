"""Fixtures: the emulator served in a thread on a free loopback port, called with requests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator import EmulatorServer, serve_in_thread
from tests.support.emulator import FAST, Api, EmulatorFactory, serving


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[EmulatorFactory]:
    """Start emulators with FAST settings plus overrides; all are stopped after the test."""
    servers: list[EmulatorServer] = []

    def make(**overrides: Any) -> Api:
        config = replace(FAST, storage_dir=tmp_path / f"storage{len(servers)}", **overrides)
        server = serve_in_thread(config)
        servers.append(server)
        return Api(server)

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """One FAST emulator per test module, reset before each test that uses ``api``: starting
    and stopping a server costs ~0.2 s, which hundreds of small tests would pay each."""
    with serving(replace(FAST, storage_dir=tmp_path_factory.mktemp("emulator"))) as server:
        yield server


@pytest.fixture
def api(shared_emulator: EmulatorServer) -> Iterator[Api]:
    """The module's emulator, fresh: nothing recorded, no channels, no faults, no files."""
    r = requests.post(f"{shared_emulator.base_url}/dev/reset", timeout=60)
    assert r.status_code == 200, r.text
    storage = shared_emulator.config.storage_dir
    shutil.rmtree(storage)
    storage.mkdir()
    client = Api(shared_emulator)
    yield client
    client.http.close()

"""CLI fixtures: one deployment for the module (emulator in a thread, a ``cloudrec worker`` and a
``cloudrec beat`` process on the test Redis); every test drives ``cloudrec`` as a subprocess."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.ops.harness import (
    cloudrec_env,
    processes,
    run_cli,
    start_beat_process,
    start_emulator,
    start_worker_process,
)
from tests.support.redis_db import TEST_REDIS_URL
from worker.devapi import DevApiClient
from worker.store import JobStore

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


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    base = tmp_path_factory.mktemp("cli")
    (base / "logs").mkdir()
    server = start_emulator(base / "storage")
    env = cloudrec_env(TEST_REDIS_URL, server.base_url)
    try:
        with processes() as procs:
            procs.append(start_worker_process(env, base / "logs"))
            procs.append(start_beat_process(env, base / "logs"))
            yield Deployment(
                env, DevApiClient(server.base_url), JobStore(client), client, base / "storage"
            )
    finally:
        server.stop()
        client.flushdb()
        client.close()

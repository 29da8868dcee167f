"""CLI fixtures: one deployment for the module (emulator in a thread, a ``cloudrec worker`` and a
``cloudrec beat`` process on the test Redis); every test drives ``cloudrec`` as a subprocess."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.emulator import start_emulator
from tests.support.processes import (
    Deployment,
    cloudrec_env,
    processes,
    start_beat_process,
    start_worker_process,
)
from tests.support.redis_db import TEST_REDIS_URL
from worker.devapi import DevApiClient
from worker.store import JobStore


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

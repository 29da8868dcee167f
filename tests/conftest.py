"""Shared fixtures: a real Redis (REDIS_URL, a dedicated db index flushed per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery.contrib.testing.worker import test_worker_stopped

from tests.support.redis_db import TEST_REDIS_URL


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"tests need a Redis at REDIS_URL={TEST_REDIS_URL}: {exc}")
    client.flushdb()
    yield TEST_REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _forget_holdings(**_: object) -> None:
    # celery.contrib.testing's in-process worker stops without Celery's worker_shutdown signal,
    # where a real worker forgets what it held (worker.restorer); do the same when it stops, so
    # no heartbeat of a finished test's worker reaches the next test's Redis.
    from tasks.recording import _on_worker_shutdown

    _on_worker_shutdown()


test_worker_stopped.connect(_forget_holdings, weak=False)

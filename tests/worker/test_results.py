"""The compact result backend (worker.results) against a real Redis: what a success costs and
what a late failure may not do."""

from __future__ import annotations

import json
from typing import Any

import redis
from celery import states

from worker.results import CloudrecCelery


def _backend(redis_url: str) -> Any:
    app = CloudrecCelery("results-test", broker=redis_url, backend=redis_url)
    return app.backend


def test_a_success_is_written_in_one_round_trip_without_reading_the_answer(
    redis_url: str, redis_client: redis.Redis
) -> None:
    backend = _backend(redis_url)
    reads: list[str] = []
    real_get = backend.get

    def counted_get(key: str) -> Any:
        reads.append(key)
        return real_get(key)

    backend.get = counted_get

    backend.store_result("task-ok", "job-1", states.SUCCESS)
    backend.store_result("task-ok", "job-1", states.SUCCESS)  # a redelivered submit's answer

    assert reads == []  # Celery reads the stored answer before every write
    stored = json.loads(redis_client.get("celery-task-meta-task-ok") or b"{}")
    assert stored == {"status": "SUCCESS", "result": "job-1", "task_id": "task-ok"}


def test_a_late_failure_does_not_overwrite_a_success(
    redis_url: str, redis_client: redis.Redis
) -> None:
    backend = _backend(redis_url)
    backend.store_result("task-done", "job-2", states.SUCCESS)
    # The same task's lost first run, failing late (what Celery's read before a write is for).
    backend.store_result("task-done", ValueError("late"), states.FAILURE)
    stored = json.loads(redis_client.get("celery-task-meta-task-done") or b"{}")
    assert stored["status"] == "SUCCESS" and stored["result"] == "job-2"

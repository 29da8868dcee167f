"""Tier 3, real-service mode: a job's watch (its queries until the recording runs) is a due
entry, and the dispatcher sends the watches due in the same quarter second as one message
(``recording.watch_batch``). Jobs started together are watched by a few messages, a query that
fails is retried through its entry, and every job reaches ``recording``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals

from tasks.recording import WATCH_BATCH, request_stop, submit_and_start
from tests.support.promises import empty_channel_spec
from tests.support.waiting import wait_for
from worker.metrics import API_CALLS
from worker.states import JobState
from worker.steps import Step, StopReason

pytestmark = pytest.mark.e2e

JOBS = 12


@pytest.fixture
def stack_settings() -> dict[str, Any]:
    return {"dev_api": False}


@pytest.fixture
def watch_tasks() -> Iterator[list[tuple[str, list[Any]]]]:
    """(task name, args) of every watch task the in-process worker runs."""
    seen: list[tuple[str, list[Any]]] = []

    def record(sender: Any = None, args: Any = None, **_: Any) -> None:
        name = getattr(sender, "name", "")
        if name in ("recording.watch", "recording.watch_batch"):
            seen.append((name, list(args or [])))

    signals.task_prerun.connect(record, weak=False)
    yield seen
    signals.task_prerun.disconnect(record)


def test_jobs_started_together_are_watched_in_batches(stack, watch_tasks) -> None:
    store = stack.runtime.store
    # The first query of one job answers 503: its watch is retried through its due entry.
    stack.dev.set_faults(
        {"errors": [{"operations": ["query"], "status": 503, "message": "busy", "count": 1}]}
    )
    ids = [
        submit_and_start(stack.runtime, empty_channel_spec(f"batch{i}", 600))[0].job_id
        for i in range(JOBS)
    ]

    wait_for(
        lambda: all(store.get(j).state == JobState.RECORDING for j in ids),
        60,
        0.2,
        "every job recording",
    )

    singles = [args for name, args in watch_tasks if name == "recording.watch"]
    batches = [args[0] for name, args in watch_tasks if name == "recording.watch_batch"]
    watched = {job_id for batch in batches for job_id in batch}
    assert not singles, singles
    assert set(ids) <= watched
    assert all(len(batch) <= WATCH_BATCH for batch in batches)
    # 13 queries at least (one failed): a message each before; a few batches now.
    queries = sum(
        int(n)
        for field, n in stack.runtime.redis.hgetall(API_CALLS).items()
        if field.decode().startswith("query|")
    )
    assert queries >= JOBS + 1, queries
    # Starts spread over seconds (10 API calls a second here), so batches are a few per
    # second; what matters is that they carry several jobs, never one message per query.
    assert len(batches) < queries and max(len(b) for b in batches) >= 2, [len(b) for b in batches]
    # A job's watch entry is gone once it records: nothing more is due for it but its stop.
    assert store.due_scores(Step.WATCH, ids) == [None] * JOBS
    for job_id in ids:
        request_stop(stack.runtime, job_id, StopReason.CANCEL)
    wait_for(lambda: all(store.get(j).terminal for j in ids), 60, 0.2, "every job ended")

"""Issue 10 item 4 (job spec): every size a caller controls is bounded, refused before anything
is stored. The attacks: a 20 MB label, a 100 KB callback task name, a spec nested 200,000 deep."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from config import Settings
from tasks.recording import submit_and_start
from worker.errors import JobSpecError
from worker.runtime import Runtime


def _nested(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return root


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"labels": {"big": "x" * 20_000_000}}, "job spec: must be at most 65536 bytes"),
        ({"labels": {"big": "x" * 300}}, "labels.big: string should have at most 256"),
        ({"labels": {"k" * 65: "v"}}, "labels"),
        ({"labels": {f"l{i}": "v" for i in range(33)}}, "labels: must have at most 32 labels"),
        ({"callback": {"task": "t" * 100_000}}, "job spec: must be at most 65536 bytes"),
        ({"callback": {"task": "t" * 201}}, "callback.task: must be a Celery task name"),
        ({"recordingConfig": _nested(200_000)}, "job spec: nested deeper than 16 levels"),
        ({"labels": _nested(20)}, "job spec: nested deeper than 16 levels"),
    ],
)
def test_oversized_specs_are_refused_and_nothing_is_stored(
    redis_url: str, extra: dict[str, Any], message: str
) -> None:
    rt = Runtime.build(Settings(redis_url=redis_url))
    spec = {"cname": "c1", "duration": 60, **extra}
    with pytest.raises(JobSpecError) as caught:
        submit_and_start(rt, spec)
    rt.close()
    assert message in str(caught.value)
    assert len(str(caught.value)) < 400  # names the problem, does not echo the input
    assert redis.Redis.from_url(redis_url).keys("cloudrec:*") == []


def test_limits_leave_room_for_a_real_spec(redis_url: str) -> None:
    rt = Runtime.build(Settings(redis_url=redis_url))
    labels = {f"label{i}": "v" * 256 for i in range(32)}
    later = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()  # nothing starts now
    spec = {"cname": "c1", "duration": 60, "labels": labels, "start_at": later}
    try:
        job, created = submit_and_start(rt, {**spec, "callback": {"task": "a." + "b" * 198}})
    finally:
        rt.close()
    assert created and job.spec["labels"] == labels

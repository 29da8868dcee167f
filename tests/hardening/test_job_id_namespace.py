"""Issue 10 item 6: a caller cannot take a schedule firing's job id.

The attack: a user pre-submits ``<schedule>:<slot>``; when the schedule fires, the store's
idempotent submit returns the user's job and the schedule's own spec is never recorded. Job ids
with ':' are now cloudrec's alone: a caller's is refused, by every way in, and the firing records.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from config import Settings
from tests.support.processes import cloudrec_env, run_cli
from tests.support.specs import process_spec
from worker import recording
from worker.celery_app import configure
from worker.errors import JobSpecError
from worker.runtime import Runtime
from worker.schedules import ScheduleBook, Trigger, job_id_for
from worker.store import JobStore
from worker.vault import TokenVault


def _firing_id(name: str, now: float) -> str:
    return job_id_for(name, Trigger.parse(None, 3600).slot_at(now))


def test_a_caller_cannot_submit_a_firing_id_and_the_firing_records(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url)
    rt = Runtime.build(settings)
    client = redis.Redis.from_url(redis_url)
    book = ScheduleBook(client, configure(settings), settings, TokenVault(client, settings))
    book.add("standup", Trigger.parse(None, 3600), process_spec("schedule-channel"))
    now = time.time()
    stolen = _firing_id("standup", now)
    with pytest.raises(JobSpecError, match=r"job_id: .*':'.*reserved"):
        recording.submit(rt, process_spec("attacker-channel", job_id=stolen))
    assert JobStore(client).find(stolen) is None
    job = book.fire("standup", now, lambda s: recording.submit(rt, s, minted=True))
    assert job is not None and job.job_id == stolen
    assert job.cname == "schedule-channel"
    assert job.spec["labels"] == {"schedule": "standup"}
    rt.close()
    client.close()


def test_the_cli_refuses_a_reserved_job_id_and_stores_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(process_spec("c1", job_id="standup:20250602T100000Z")))
    env = cloudrec_env(redis_url, "http://127.0.0.1:1")
    result = run_cli(["record", "c1", "--spec", str(spec)], env)
    assert result.returncode != 0
    assert "job_id: must not contain ':'" in result.stderr
    assert "Traceback" not in result.stderr
    assert redis.Redis.from_url(redis_url).keys("cloudrec:*") == []

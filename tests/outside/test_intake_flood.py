"""A backlog on the intake never delays a stop. Thousands of submits arrive on the intake at the
priority plain callers use (none, i.e. 0) a few seconds before a live recording's deadline; the
dispatcher's tick and then the stop are served at their second while most of that backlog still
waits (a worker polls the control queue first, at every priority)."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from tasks.recording import submit_and_start
from tests.outside.test_raw_message import celery_message
from tests.support.processes import Cloudrec
from tests.support.specs import process_spec
from tests.support.waiting import wait_for
from worker.queues import priority_keys

pytestmark = pytest.mark.e2e

FLOOD = 4000  # submits pushed onto the intake at once
LEAD = 5.0  # seconds before the deadline the flood lands
MAX_LATENESS = 1.5  # seconds from stop_at to the stop step taking the job (normally ~0.3)


def backlog(client: redis.Redis, queue: str = "cloudrec") -> int:
    with client.pipeline(transaction=False) as pipe:
        for key in priority_keys(queue):
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())


def flood(client: redis.Redis, count: int) -> None:
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    with client.pipeline(transaction=False) as pipe:
        for i in range(count):
            spec = process_spec(f"flood{i}", start_at=later)
            pipe.lpush("cloudrec", celery_message("recording.submit", [spec])[1])
        pipe.execute()


def test_a_flooded_intake_does_not_delay_a_stop(cloudrec: Cloudrec) -> None:
    client = redis.Redis.from_url(cloudrec.redis_url)
    cloudrec.start_worker()
    cloudrec.start_beat()
    store = cloudrec.runtime.store
    live, _ = submit_and_start(cloudrec.runtime, process_spec("flood-live", duration=10))
    wait_for(lambda: store.get(live.job_id).state == "recording", 60, 0.1, "the recording")
    stop_at = store.get(live.job_id).stop_at
    assert stop_at is not None and stop_at - time.time() > LEAD, "started too late to measure"

    # The flood lands before the dispatcher sends the stop (it sends stops up to
    # CLOUDREC_DISPATCH_LOOKAHEAD, 3 s, early): the dispatch and the stop messages both arrive
    # behind it. A sampler notes the backlog as the stop comes.
    time.sleep(max(0.0, stop_at - time.time() - LEAD))
    flood(client, FLOOD)
    seen: list[tuple[float, int]] = []  # (when, intake backlog)
    done = threading.Event()

    def sample() -> None:
        probe = redis.Redis.from_url(cloudrec.redis_url)
        while not done.is_set():
            seen.append((time.time(), backlog(probe)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    job = wait_for(lambda: (j := store.get(live.job_id)).terminal and j, 60, 0.1, "the stop")
    done.set()
    sampler.join()

    stopping_at = next(h.at for h in job.history if h.state == "stopping")
    lateness = stopping_at - stop_at
    # The backlog as the stop took the job: the last sample before that moment.
    before = [n for at, n in seen if at <= stopping_at]
    left = before[-1] if before else seen[0][1]
    print(f"stop lateness {lateness:.3f} s with {left} of {FLOOD} intake messages still waiting")
    assert job.state in {"empty", "completed"}, job.status_json()
    assert lateness < MAX_LATENESS, f"stop {lateness:.2f} s late behind the intake backlog"
    assert left > FLOOD // 4, f"the flood was gone before the stop ({left} left): inconclusive"

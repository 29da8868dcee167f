"""What `cloudrec jobs`, `cloudrec status` and an exporter scrape cost, with few ended jobs in
the job index and with many (issue 12.3: O(active jobs), not O(every job of the last day)).

A private ``redis-server``; ``--active`` jobs recording, then the same reads again after
``--ended`` more jobs have ended (written as the job store writes them: record, index entries,
the hourly ended counts). Each read is run ``--reps`` times; printed per read: the median wall
time and the Redis commands it sent (``total_commands_processed``, less the measuring INFO).

Run: ``.venv/bin/python benchmarks/listing_cost.py`` (100 active, 100,000 ended; about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from prometheus_client import generate_latest

from tests.support.fleet import RedisServer
from worker import keys
from worker.cli.live import _list_jobs
from worker.exporter import build_registry
from worker.states import JobState
from worker.store import JobRecord, JobStore, _stored

WRITE_CHUNK = 2000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--active", type=int, default=100)
    parser.add_argument("--ended", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    return parser.parse_args()


def record(i: int, state: JobState, now: float) -> JobRecord:
    return JobRecord(
        job_id=f"job-{state}-{i:07d}",
        state=state,
        app="school" if i % 2 else "default",  # two apps: the scrape counts by app too
        cname=f"c{i}",
        uid=str(100000 + i),
        spec={"cname": f"c{i}", "recordingConfig": {"maxIdleTime": 30}},
        created_at=now - 3600 + i * 1e-3,
        stop_at=now + 600,
        sid="s" * 32,
        resource_id="r" * 200,
        history=[{"state": JobState.ACQUIRING, "at": now}, {"state": state, "at": now}],
    )


def write_active(store: JobStore, count: int, now: float) -> str:
    last = ""
    for i in range(count):
        job, _ = store.create(record(i, JobState.RECORDING, now))
        last = job.job_id
    return last


def write_ended(client: redis.Redis, count: int, now: float, retention: int) -> None:
    """Ended jobs as the store leaves them: record (with its TTL), ``jobs`` and ``ended``
    entries, the hourly counts (by state, and by state and app). Written in bulk: the
    transition script one by one would take minutes and measure nothing this benchmark is
    about."""
    hour = int(now) // keys.ENDED_COUNT_HOUR
    for start in range(0, count, WRITE_CHUNK):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(count, start + WRITE_CHUNK)):
                job = record(i, JobState.EMPTY, now)
                pipe.set(keys.job_key(job.job_id), _stored(job), ex=retention)
                pipe.zadd(keys.JOBS_KEY, {job.job_id: job.created_at})
                pipe.zadd(keys.ENDED_KEY, {job.job_id: now})
                pipe.hincrby(keys.ended_count_key(hour), str(JobState.EMPTY), 1)
                by_app = f"{JobState.EMPTY}{keys.ENDED_COUNT_APP_SEP}{job.app}"
                pipe.hincrby(keys.ended_count_key(hour), by_app, 1)
            pipe.execute()


def commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def measure(client: redis.Redis, read: Callable[[], Any], reps: int) -> dict[str, float]:
    times, counts = [], []
    for _ in range(reps):
        before = commands(client)
        t0 = time.perf_counter()
        read()
        times.append(time.perf_counter() - t0)
        counts.append(commands(client) - before - 1)  # the second INFO counts itself
    return {"ms": round(statistics.median(times) * 1000, 2), "redis_commands": min(counts)}


def reads(store: JobStore, client: redis.Redis, one: str) -> dict[str, Callable[[], Any]]:
    registry = build_registry(client)
    return {
        "cloudrec jobs (newest 50)": lambda: _list_jobs(store, None, 50),
        "cloudrec jobs --state active --limit 0": lambda: _list_jobs(store, "active", 0),
        "cloudrec jobs --state recording --limit 0": lambda: _list_jobs(store, "recording", 0),
        "cloudrec status JOB": lambda: store.get(one).status_json(),
        "exporter scrape": lambda: generate_latest(registry),
    }


def main() -> int:
    args = parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="cloudrec-listing-"))
    server = RedisServer(tmp, appendfsync="everysec").start()
    figures: dict[str, Any] = {"active": args.active, "ended": args.ended}
    try:
        client = redis.Redis.from_url(server.url)
        store = JobStore(client)
        now = time.time()
        one = write_active(store, args.active, now)
        figures["few_ended"] = {
            name: measure(client, read, args.reps)
            for name, read in reads(store, client, one).items()
        }
        write_ended(client, args.ended, now, store.retention)
        figures["index_entries"] = int(client.zcard(keys.JOBS_KEY))
        figures["many_ended"] = {
            name: measure(client, read, args.reps)
            for name, read in reads(store, client, one).items()
        }
        client.close()
    finally:
        server.stop()
    figures["load_average_at_end"] = os.getloadavg()
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

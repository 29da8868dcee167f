"""Reconciler memory: does a reconciler round keep anything as N jobs go from recording to a
terminal state? (A diagnosis of the scale run's recording worker growing during the stops.)

In one process, against a private ``redis-server``: N job records in ``recording``, three
reconciler rounds; then every job moved ``recording -> stopping -> empty`` with a round after
each quarter, and three rounds more. The reconciler queries nothing (query budget 0, no dev
API), so only its own reading and bookkeeping is measured.

Figures printed: RSS after each phase, and the Python allocations still held after the stop
phase that were made during it (tracemalloc, top 5 by size; goal: nothing of the reconciler's);
the CPU time of a round over the N recording jobs (median of the three rounds).

Run: ``.venv/bin/python benchmarks/reconcile_memory.py --jobs 10000`` (about a minute);
``--jobs 100000 --rounds-only`` for the round's cost at 100,000 recording jobs (no stop phase).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import Settings
from tests.support.fleet import RedisServer
from worker.reconcile import reconcile
from worker.runtime import Runtime
from worker.states import JobState
from worker.store import JobRecord


def rss_mb() -> float:
    gc.collect()
    return round(psutil.Process().memory_info().rss / 1e6, 1)


def create_recording_jobs(rt: Runtime, count: int) -> list[str]:
    now = time.time()
    ids = [f"job{i:06d}" for i in range(count)]
    for i, job_id in enumerate(ids):
        rt.store.create(
            JobRecord(
                job_id=job_id,
                state=JobState.RECORDING,
                cname=f"memory{i}",
                uid="900000001",
                spec={"cname": f"memory{i}", "recordingConfig": {"maxIdleTime": 30}},
                created_at=now,
                stop_at=now + 3600,
                sid="ab" * 16,
                resource_id="R" * 200,  # as long as a real resourceId
                started_at=now,
            )
        )
        rt.store.schedule("stop", job_id, now + 3600)
    return ids


def end_all(rt: Runtime, ids: list[str], figures: dict[str, object]) -> None:
    quarter = max(1, len(ids) // 4)
    for i, job_id in enumerate(ids):
        rt.store.transition(job_id, {JobState.RECORDING}, JobState.STOPPING, stop_reason="deadline")
        rt.store.transition(job_id, {JobState.STOPPING}, JobState.EMPTY)
        if i % quarter == quarter - 1:
            reconcile(rt, backlog=0)
            figures[f"rss_mb_after_{i + 1}_ended"] = rss_mb()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument(
        "--rounds-only", action="store_true", help="measure the rounds, skip the stop phase"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cloudrec-reconcile-memory-"))
    server = RedisServer(tmp).start()
    settings = Settings(
        redis_url=server.url,
        dev_api=False,
        reconcile_query_budget=0,
        api_base_url="http://127.0.0.1:9",  # never called: the budget is 0
    )
    rt = Runtime.build(settings)
    figures: dict[str, object] = {"jobs": args.jobs}
    try:
        ids = create_recording_jobs(rt, args.jobs)
        figures["rss_mb_jobs_created"] = rss_mb()
        cpu: list[float] = []
        for round_ in range(3):
            began = time.process_time()
            reconcile(rt, backlog=0)
            cpu.append(time.process_time() - began)
            figures[f"rss_mb_recording_round_{round_}"] = rss_mb()
        figures["round_cpu_seconds_recording"] = round(statistics.median(cpu), 3)
        figures["round_cpu_ms_per_job"] = round(statistics.median(cpu) / args.jobs * 1000, 4)
        if args.rounds_only:
            return 0
        tracemalloc.start(10)
        before = tracemalloc.take_snapshot()
        end_all(rt, ids, figures)
        for _ in range(3):
            reconcile(rt, backlog=0)
        figures["rss_mb_after_rounds_on_ended_jobs"] = rss_mb()
        after = tracemalloc.take_snapshot()
        held = after.compare_to(before, "filename")[:5]
        figures["held_after_stop_phase"] = [f"{s.traceback[0]}: {s.size_diff} B" for s in held]
    finally:
        rt.close()
        server.stop()
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale: N concurrent recording jobs (default 10,000) on this machine, and the figures that
say whether the worker keeps its promises at that size.

What runs (every part real, each in its own process): a private ``redis-server`` (append-only,
``everysec``, like compose.yaml), the emulator (REST rate limit off, empty channels: the recorder
composites nothing, so the emulator's own cost stays small), ``celery beat`` (the dispatcher every
second, the reconciler every 30 s), one worker for the control queue (stops) and one (or
``--recording-workers``) for the recording queue (submit/acquire/start/watch), all ``--pool
threads``, in real-service mode (``CLOUDREC_DEV_API=false``: the worker lists nothing; the
benchmark's own checks read the emulator's dev API). ``CLOUDREC_API_RATE_LIMIT`` is set high
(the emulator's limit is off): 10,000 starts and stops cannot go through 10 requests per second
in any sensible time.

Deadlines are spread the way real recordings end: every job is submitted during the ramp, and its
``stop_at`` is drawn uniformly from a window that opens once the ramp allowance is over, so all N
jobs record at the same time before the first stop.

Figures printed:

- stop lateness p50/p99/max: the emulator's own stop time (``stoppedAt`` in ``GET
  /dev/recordings``) minus the job's ``stop_at``, over every deadline stop (goal: p99 <= 1 s,
  max <= 2 s; at 10,000 jobs or fewer p99 <= 0.25 s);
- Redis memory per active job: ``used_memory`` with N jobs recording, minus the baseline before
  the first submit, over N (goal: <= 1,024 bytes);
- worker memory (RSS of both worker processes) at 1,000 and at N active jobs (goal: flat);
- the promises: every job terminal, one recording per job, none left live.

Run: ``.venv/bin/python benchmarks/scale.py`` (about 15 minutes for 10,000 jobs on 2 cores);
``--jobs 1000 --ramp 120 --window 60`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import Settings
from tasks.recording import queue_backlog, submit_and_start
from tests.support.fleet import BeatProcess, EmulatorProcess, RedisServer, WorkerGroup, rss_mb
from tests.support.promises import check_promises, empty_channel_spec, wait_all_terminal
from worker.celery_app import CONTROL_QUEUE, RECORDING_QUEUE, app, configure, runtime
from worker.devapi import DevApiClient
from worker.metrics import STOP_LATENESS
from worker.states import JobState


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument(
        "--ramp",
        type=float,
        default=420.0,
        help="seconds allowed for submitting and starting every job",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=300.0,
        help="the deadlines are spread uniformly over this many seconds",
    )
    parser.add_argument("--control-concurrency", type=int, default=16)
    parser.add_argument("--recording-concurrency", type=int, default=32)
    parser.add_argument(
        "--recording-workers",
        type=int,
        default=1,
        help="recording-queue worker processes (starts are CPU-bound in one interpreter)",
    )
    parser.add_argument(
        "--first-mark",
        type=int,
        default=1000,
        help="measure worker memory when this many jobs are recording",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--control-loglevel",
        default="WARNING",
        help="INFO logs every stop's transitions (for finding a late one)",
    )
    return parser.parse_args()


def wait_workers(count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0)) >= count:
            return
    raise TimeoutError("the workers did not come up")


def recording_count(rt: Any) -> int:
    return rt.store.count_in(JobState.RECORDING)


def used_memory(rt: Any) -> int:
    return int(rt.redis.info("memory")["used_memory"])


def main() -> int:
    args = parse_args()
    random.seed(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="cloudrec-scale-"))
    (tmp / "redis").mkdir()
    server = RedisServer(tmp / "redis", appendfsync="everysec").start()
    emulator = EmulatorProcess(tmp / "storage", startup_seconds=2.0).start()
    settings = Settings(
        redis_url=server.url,
        api_base_url=emulator.base_url,
        api_rate_limit=100_000,
        # Real-service mode: the worker uses nothing of the emulator's dev API (the real
        # service cannot list its recordings). The benchmark's own checks do.
        dev_api=False,
    )
    configure(settings)
    rt = runtime()
    control = WorkerGroup(
        settings,
        "control",
        pool="threads",
        concurrency=args.control_concurrency,
        queues=[CONTROL_QUEUE],
        log_dir=tmp,
        loglevel=args.control_loglevel,
    ).start()
    recorders = [
        WorkerGroup(
            settings,
            f"recording{i}" if i else "recording",
            pool="threads",
            concurrency=args.recording_concurrency,
            queues=[RECORDING_QUEUE],
            log_dir=tmp,
        ).start()
        for i in range(args.recording_workers)
    ]
    beat = BeatProcess(settings, tmp)
    figures: dict[str, Any] = {"jobs": args.jobs, "logs": str(tmp)}
    figures["load_average_at_start"] = os.getloadavg()
    try:
        wait_workers(1 + len(recorders))
        beat.start()
        time.sleep(3)  # let beat take its lock and the first dispatches run (a pace)
        baseline = used_memory(rt)
        figures.update(run(rt, args, baseline, control, recorders))
    finally:
        beat.stop()
        control.stop()
        for recorder in recorders:
            recorder.stop()
        emulator.stop()
        server.stop()
    figures["load_average_at_end"] = os.getloadavg()
    print(json.dumps(figures, indent=2))
    return 0 if figures.get("ok") else 1


def run(
    rt: Any,
    args: argparse.Namespace,
    baseline: int,
    control: WorkerGroup,
    recorders: list[WorkerGroup],
) -> dict[str, Any]:
    t0 = time.time()
    opens = t0 + args.ramp
    ids: list[str] = []
    marks: dict[str, Any] = {}
    next_report = time.monotonic()
    for i in range(args.jobs):
        stop_at = datetime.fromtimestamp(opens + random.uniform(0, args.window), UTC)
        # The recorder must not leave the empty channel by itself before its deadline.
        max_idle = round(args.ramp + args.window + 600)
        spec = empty_channel_spec(f"scale{i}", 1, max_idle=max_idle)
        spec["stop_at"] = stop_at.isoformat()
        del spec["duration"]
        ids.append(submit_and_start(rt, spec)[0].job_id)
        if time.monotonic() >= next_report:
            next_report = time.monotonic() + 10
            observe(rt, args, marks, baseline, control, recorders, t0, len(ids))
    submitted = time.time() - t0
    print(f"submitted {args.jobs} jobs in {submitted:.0f} s", flush=True)
    while time.time() < opens + 5 and "all_recording_at_s" not in marks:
        observe(rt, args, marks, baseline, control, recorders, t0, len(ids))
        time.sleep(2)
    if "all_recording_at_s" not in marks:
        print("WARNING: not every job was recording when the deadlines began", flush=True)
    peak = marks.get("peak_recording", 0)
    while time.time() < opens + args.window + 5:
        observe(rt, args, marks, baseline, control, recorders, t0, len(ids))
        time.sleep(5)
    finished = wait_all_terminal(rt, ids, 600)
    time.sleep(2)
    verdict = check_promises(rt, DevApiClient(rt.settings.api_base_url, timeout=120), ids)
    lateness = sorted(verdict.lateness)
    split = lateness_split(rt, verdict.stops)
    worker_side = {k.decode(): float(v) for k, v in rt.redis.hgetall(STOP_LATENESS).items()}
    first = marks.get("worker_rss_mb_at_first_mark")
    last = marks.get("worker_rss_mb_at_all")
    out = {
        "submit_seconds": round(submitted, 1),
        "all_recording_at_s": marks.get("all_recording_at_s"),
        "peak_recording": max(peak, marks.get("peak_recording", 0)),
        "every_job_terminal": finished and not verdict.not_terminal,
        "states": dict(verdict.states),
        "started_twice": len(verdict.started_twice),
        "left_live": len(verdict.left_live),
        "deadline_stops": len(lateness),
        "lateness_p50_s": round(statistics.median(lateness), 3) if lateness else None,
        "lateness_p99_s": round(verdict.percentile(0.99), 3),
        "lateness_max_s": round(verdict.max_lateness, 3),
        # Where the lateness is spent: until the stop step began (its record's stop_sent_at,
        # the step's first clock reading, less stop_at: the dispatcher, the broker, the
        # worker's timer and pool), and from then to the service's stop (the step's Redis
        # round trips, the limiter, the HTTP call, the service).
        "lateness_until_step_p50_p99_max_s": split[0],
        "lateness_in_step_p50_p99_max_s": split[1],
        "worker_view_lateness_count": worker_side.get("count"),
        "worker_view_lateness_le_1s": worker_side.get("le=1.0"),
        "redis_bytes_per_active_job": marks.get("redis_bytes_per_active_job"),
        "redis_bytes_per_active_job_settled": (
            round((marks["settled_memory"] - baseline) / args.jobs)
            if "settled_memory" in marks
            else None
        ),
        "redis_key_bytes_per_job": key_bytes_per_job(marks.get("redis_breakdown"), args.jobs),
        "worker_rss_mb_at_first_mark": first,
        "worker_rss_mb_at_all": last,
        "worker_rss_ratio": round(last / first, 3) if first and last else None,
        "control_and_recording_rss_mb_at_first_mark": marks.get("per_process_at_first_mark"),
        "control_and_recording_rss_mb_at_all": marks.get("per_process_at_all"),
        "control_and_recording_rss_mb_at_end": [
            marks.get("control_rss_mb"),
            marks.get("recording_rss_mb"),
        ],
        "redis_breakdown": marks.get("redis_breakdown"),
        # The latest stops: when they were due (seconds after the first submit) and how late.
        "latest_stops": [
            [round(at - t0, 1), round(late, 3), job_id]
            for at, late, job_id in sorted(verdict.stops, key=lambda s: -s[1])[:15]
        ],
        "stops_over_1s": sum(1 for late in lateness if late > 1.0),
    }
    out["ok"] = bool(
        out["every_job_terminal"]
        and out["started_twice"] == 0
        and out["left_live"] == 0
        and out["lateness_p99_s"] <= (0.25 if args.jobs <= 10_000 else 1.0)
        and out["lateness_max_s"] <= 2.0
        and (out["redis_bytes_per_active_job"] or 1e9) <= 1024
    )
    return out


def lateness_split(
    rt: Any, stops: list[tuple[float, float, str]]
) -> tuple[list[float] | None, list[float] | None]:
    """p50/p99/max of the time each deadline stop took until its step began, and in it."""
    records = {j.job_id: j for j in rt.store.records([job_id for _, _, job_id in stops])}
    before: list[float] = []
    during: list[float] = []
    for stop_at, late, job_id in stops:
        job = records.get(job_id)
        if job is None or job.stop_sent_at is None:
            continue
        before.append(job.stop_sent_at - stop_at)
        during.append(late - before[-1])
    return _p50_p99_max(before), _p50_p99_max(during)


def _p50_p99_max(values: list[float]) -> list[float] | None:
    if not values:
        return None
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
    return [round(statistics.median(values), 3), round(p99, 3), round(values[-1], 3)]


def key_bytes_per_job(breakdown: dict[str, Any] | None, jobs: int) -> int | None:
    """The keys' own bytes (MEMORY USAGE, every family) per job: used_memory less what Redis
    holds beside the keys (clients, the main hash table, allocations outside any key)."""
    if not breakdown:
        return None
    return round(sum(v["bytes"] for v in breakdown.values() if isinstance(v, dict)) / jobs)


def redis_breakdown(rt: Any) -> dict[str, Any]:
    """Where Redis's memory goes: bytes per key family (MEMORY USAGE of a sample)."""
    families: dict[str, list[int]] = {}
    for key in rt.redis.scan_iter(count=1000):
        name = key.decode()
        family = ":".join(name.split(":")[:2]) if name.startswith("cloudrec:") else name[:24]
        families.setdefault(family, []).append(key)
    out: dict[str, Any] = {}
    for family, keys in families.items():
        sample = keys[:50]
        usage = [rt.redis.memory_usage(k, samples=0) or 0 for k in sample]
        out[family] = {"keys": len(keys), "bytes": round(sum(usage) / len(sample) * len(keys))}
    stats = rt.redis.memory_stats()
    out["_overhead.total"] = stats.get("overhead.total")
    out["_dataset.bytes"] = stats.get("dataset.bytes")
    out["_fragmentation"] = stats.get("fragmentation")
    return out


def observe(
    rt: Any,
    args: argparse.Namespace,
    marks: dict[str, Any],
    baseline: int,
    control: WorkerGroup,
    recorders: list[WorkerGroup],
    t0: float,
    submitted: int,
) -> None:
    """Progress line, and the memory figures the first time each mark is reached."""
    recording = recording_count(rt)
    marks["peak_recording"] = max(marks.get("peak_recording", 0), recording)
    recorder_pids = [pid for recorder in recorders for pid in recorder.pids()]
    workers = rss_mb(control.pids() + recorder_pids)
    marks["control_rss_mb"] = round(rss_mb(control.pids()), 1)
    marks["recording_rss_mb"] = round(rss_mb(recorder_pids), 1)
    memory = used_memory(rt)
    if recording >= args.first_mark and "worker_rss_mb_at_first_mark" not in marks:
        marks["worker_rss_mb_at_first_mark"] = round(workers, 1)
        marks["per_process_at_first_mark"] = [marks["control_rss_mb"], marks["recording_rss_mb"]]
    if recording >= args.jobs and "all_recording_at_s" not in marks:
        marks["all_recording_at_s"] = round(time.time() - t0, 1)
        marks["worker_rss_mb_at_all"] = round(workers, 1)
        marks["per_process_at_all"] = [marks["control_rss_mb"], marks["recording_rss_mb"]]
        marks["redis_bytes_per_active_job"] = round((memory - baseline) / recording)
        marks["redis_breakdown"] = redis_breakdown(rt)
    if recording >= args.jobs:
        # The least seen while every job records (no messages in flight): the mark above is
        # taken as the last starts finish, with the broker's last messages still in Redis.
        marks["settled_memory"] = min(marks.get("settled_memory", memory), memory)
    print(
        f"t={time.time() - t0:6.0f}s submitted={submitted} recording={recording} "
        f"queue={queue_backlog(rt)} workers_rss={workers:.0f}MB "
        f"redis={memory / 1e6:.1f}MB",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())

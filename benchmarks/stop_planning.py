"""Stops planned against the API budget: N recordings whose deadlines fall on the same second,
stopped through an emulator that takes 10 requests per second (the real service's limit per
App ID), with ``stop_early_max`` 0 and with 120 s. Prints the max lateness (goal: within 5 s of
the least the budget allows, ``max(0, N/10 - T)``: 300 s and 180 s for 3,000) with p50/p99.

What runs (every part real, each in its own process): a private ``redis-server``, the emulator,
``celery beat``, one worker for the control queue (stops, the dispatcher) and one for the
recording queue, ``--pool threads``, empty channels (the recorder composites nothing: a stop
answers 435 and the job ends ``empty``; what is measured is when each stop reaches the service).

Two phases per tolerance, because only the stops are measured and 3,000 starts at 10 per
second would take a quarter of an hour first:

1. the ramp: the emulator's limit off, the workers' limiter at 100,000/s; every job is
   submitted and starts recording;
2. the stops: the workers and beat are restarted with ``CLOUDREC_API_RATE_LIMIT=10`` and the
   emulator takes 10 requests per second from then on (a benchmark-only route of its process
   sets the limit), before the first stop may go (``deadline - T``).

Lateness is read from the emulator's own log of the API calls (``GET /dev/api-requests``):
when each job's first admitted stop reached it, minus the job's ``stop_at``. "earliest" is the
earliest of those against the deadline: never below ``-T``. Also printed: calls refused 429,
and calls other than stops that reached the service while the stops were behind (they yield).

Run: ``.venv/bin/python benchmarks/stop_planning.py`` (3,000 jobs, tolerances 0 and 120: about
25 minutes on 2 cores); ``--jobs 300`` for a quick check (30 s of stop budget: about 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import Settings
from tasks.recording import submit_and_start
from tests.support.fleet import BeatProcess, EmulatorProcess, RedisServer, WorkerGroup
from tests.support.promises import check_promises, empty_channel_spec, wait_all_terminal
from worker.celery_app import CONTROL_QUEUE, RECORDING_QUEUE, app, configure, runtime
from worker.devapi import DevApiClient
from worker.states import JobState

RATE = 10  # the service's requests per second per App ID
RAMP_RATE = 100_000  # the workers' limiter while the jobs start (the emulator's limit is off)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument(
        "--early", default="0,120", help="stop_early_max values, one run each (comma-separated)"
    )
    parser.add_argument(
        "--ramp", type=float, default=None, help="seconds for every job to start (default: N/10)"
    )
    parser.add_argument("--control-concurrency", type=int, default=16)
    parser.add_argument("--recording-concurrency", type=int, default=32)
    return parser.parse_args()


class Fleet:
    """Beat and the two workers, restartable with other settings."""

    def __init__(self, settings: Settings, log_dir: Path, args: argparse.Namespace) -> None:
        self.log_dir = log_dir
        self.args = args
        self.parts: list[Any] = []
        self.settings = settings

    def start(self, rate: float) -> None:
        settings = self.settings.model_copy(update={"api_rate_limit": rate})
        tag = f"r{int(rate)}"
        self.parts = [
            WorkerGroup(
                settings,
                f"control-{tag}",
                pool="threads",
                concurrency=self.args.control_concurrency,
                queues=[CONTROL_QUEUE],
                log_dir=self.log_dir,
            ).start(),
            WorkerGroup(
                settings,
                f"recording-{tag}",
                pool="threads",
                concurrency=self.args.recording_concurrency,
                queues=[RECORDING_QUEUE],
                log_dir=self.log_dir,
            ).start(),
        ]
        wait_workers(2)
        self.parts.append(BeatProcess(settings, self.log_dir).start())

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()
        self.parts = []


def wait_workers(count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0)) >= count:
            return
    raise TimeoutError("the workers did not come up")


def run_once(args: argparse.Namespace, early: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"cloudrec-stopplan-{early:g}-"))
    (tmp / "redis").mkdir()
    server = RedisServer(tmp / "redis", appendfsync="everysec").start()
    emulator = EmulatorProcess(tmp / "storage", startup_seconds=2.0, qps_route=True).start()
    settings = Settings(
        redis_url=server.url, api_base_url=emulator.base_url, api_rate_limit=RAMP_RATE
    )
    configure(settings)
    fleet = Fleet(settings, tmp, args)
    try:
        fleet.start(RAMP_RATE)
        return measure(args, early, emulator, fleet) | {"logs": str(tmp)}
    finally:
        fleet.stop()
        emulator.stop()
        server.stop()


def measure(
    args: argparse.Namespace, early: float, emulator: EmulatorProcess, fleet: Fleet
) -> dict[str, Any]:
    rt = runtime()
    ramp = args.ramp if args.ramp is not None else max(60.0, args.jobs / 10)
    t0 = time.time()
    deadline = t0 + ramp + 30 + early  # the first stop may go at deadline - early
    stop_at = datetime.fromtimestamp(deadline, UTC).isoformat()
    ids = []
    for i in range(args.jobs):
        spec = empty_channel_spec(f"plan{i}", 1) | {"stop_at": stop_at, "stop_early_max": early}
        del spec["duration"]
        ids.append(submit_and_start(rt, spec)[0].job_id)
    print(f"T={early:g}: submitted {args.jobs} jobs in {time.time() - t0:.0f} s", flush=True)
    while time.time() < t0 + ramp and rt.store.count_in(JobState.RECORDING) < args.jobs:
        time.sleep(2)
    recording = rt.store.count_in(JobState.RECORDING)
    print(f"T={early:g}: {recording} recording after {time.time() - t0:.0f} s", flush=True)
    # Phase 2: 10 requests per second, from before the first stop may go.
    fleet.stop()
    emulator.set_qps(RATE)
    fleet.start(RATE)
    switched = time.time()
    print(
        f"T={early:g}: at {RATE}/s, {deadline - early - switched:.0f} s before a stop may go",
        flush=True,
    )
    finished = wait_all_terminal(rt, ids, args.jobs / RATE + early + 600)
    time.sleep(2)
    dev = DevApiClient(emulator.base_url, timeout=120)
    calls = dev.api_requests()
    (Path(tmp_dir(rt)) / "api-requests.json").write_text(json.dumps(calls))
    verdict = check_promises(rt, dev, ids)
    return figures(rt, ids, calls, early, deadline, switched) | {
        "jobs": args.jobs,
        "stop_early_max": early,
        "recording_before_deadline": recording,
        "every_job_terminal": finished and not verdict.not_terminal,
        "states": dict(verdict.states),
        "started_twice": len(verdict.started_twice),
        "left_live": len(verdict.left_live),
        "least_possible_max_lateness_s": max(0.0, args.jobs / RATE - early) - 1 / RATE,
    }


def tmp_dir(rt: Any) -> str:
    """Where this run's logs are (the Redis server's data directory's parent)."""
    return str(Path(rt.redis.config_get("dir")["dir"]).parent)


def figures(
    rt: Any,
    ids: list[str],
    calls: list[dict[str, Any]],
    early: float,
    deadline: float,
    since: float,
) -> dict[str, Any]:
    sids = {j.sid: j for j in rt.store.records(ids) if j.sid}
    first_stop: dict[str, float] = {}
    for call in calls:
        if call["operation"] == "stop" and call["admitted"] and call.get("sid") in sids:
            first_stop.setdefault(call["sid"], call["at"])
    late = sorted(at - sids[sid].stop_at for sid, at in first_stop.items())
    begin, end = min(first_stop.values()), max(first_stop.values())
    others = [
        c for c in calls if c["operation"] != "stop" and c["admitted"] and begin <= c["at"] <= end
    ]
    refused = [c for c in calls if not c["admitted"] and c["at"] >= since]
    return {
        "stops_seen": len(late),
        "lateness_max_s": round(late[-1], 2),
        "lateness_p50_s": round(statistics.median(late), 2),
        "lateness_p99_s": round(late[int(0.99 * (len(late) - 1))], 2),
        "earliest_s": round(late[0], 2),
        "never_earlier_than_allowed": late[0] >= -early,
        "stop_requests_per_s": round(len(late) / max(end - begin, 1e-9), 2),
        "other_calls_while_stops_behind": len(others),
        "refused_429_at_10_per_s": len(refused),
        "stop_phase_deadline_offset_s": round(deadline - since, 1),
    }


def main() -> int:
    args = parse_args()
    results = []
    for early in (float(v) for v in args.early.split(",") if v.strip()):
        result = run_once(args, early)
        print(json.dumps(result, indent=2), flush=True)
        results.append(result)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for r in results:
        print(
            f"T={r['stop_early_max']:g}: {r['jobs']} stops at {RATE}/s: max lateness "
            f"{r['lateness_max_s']} s (least possible {r['least_possible_max_lateness_s']:.1f} s), "
            f"p50 {r['lateness_p50_s']} s, p99 {r['lateness_p99_s']} s, "
            f"earliest {r['earliest_s']} s"
        )
    ok = all(
        r["every_job_terminal"]
        and r["never_earlier_than_allowed"]
        and r["lateness_max_s"] <= r["least_possible_max_lateness_s"] + 5.0
        for r in results
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Chaos: 200 recording jobs while worker process groups are SIGKILLed every few seconds and
restarted (a machine or container dying, over and over).

What runs (each in its own process): a private ``redis-server`` (append-only, ``everysec``),
the emulator (REST rate limit off, empty channels), ``celery beat`` (dispatcher every second,
reconciler every 30 s), and ``--groups`` worker process groups (``--pool prefork -c 2``: a main
process and two children each). A killer SIGKILLs one whole group every ``--kill-every``
seconds, round robin, and starts it again; nothing gets to ack, requeue or clean up.

Jobs arrive over ``--arrival`` seconds, each recording for a duration drawn from
``--min-duration``..``--max-duration``. When the last deadline has passed the killing stops and
the script waits for every job to end, then checks the emulator's record of every recording.

Figures printed: kills; job end states; recordings started twice (goal 0); recordings left live
(goal 0); stop lateness (emulator stop time minus ``stop_at``) p50/p99/max (goal: max <= 30 s).

Run: ``.venv/bin/python benchmarks/chaos.py`` (about 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import Settings
from tasks.recording import submit_and_start
from tests.reliability.harness import (
    BeatProcess,
    EmulatorProcess,
    Killer,
    RedisServer,
    WorkerGroup,
    check_promises,
    empty_channel_spec,
    wait_all_terminal,
)
from worker.celery_app import configure, runtime
from worker.devapi import DevApiClient


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--arrival", type=float, default=60.0)
    parser.add_argument("--min-duration", type=float, default=30.0)
    parser.add_argument("--max-duration", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loglevel", default="WARNING", help="the workers' log level")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    random.seed(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="cloudrec-chaos-"))
    (tmp / "redis").mkdir()
    server = RedisServer(tmp / "redis", appendfsync="everysec").start()
    emulator = EmulatorProcess(tmp / "storage", startup_seconds=2.0).start()
    settings = Settings(
        redis_url=server.url,
        api_base_url=emulator.base_url,
        api_rate_limit=100,
        reconcile_stuck_after=30,
        dev_api=True,
    )
    configure(settings)
    rt = runtime()
    groups = [
        WorkerGroup(
            settings, f"chaos{i}", pool=args.pool, concurrency=args.concurrency, log_dir=tmp
        ).start()
        for i in range(args.groups)
    ]
    beat = BeatProcess(settings, tmp).start()
    started = time.time()
    figures: dict[str, Any] = {"jobs": args.jobs, "logs": str(tmp)}
    try:
        with Killer(groups, args.kill_every) as killer:
            ids = submit(rt, args)
            last = max(j.stop_at for j in rt.store.records(ids))
            while time.time() < last + 5:
                time.sleep(1)
            figures["kills"] = killer.kills
        figures["every_job_terminal"] = wait_all_terminal(rt, ids, 300)
        time.sleep(2)
        verdict = check_promises(rt, DevApiClient(emulator.base_url), ids)
        figures |= verdict.summary()
        figures["failures"] = dict(list(verdict.failures.items())[:10])
        figures["latest_stops"] = [
            [round(late, 3), job_id]
            for _, late, job_id in sorted(verdict.stops, key=lambda s: -s[1])[:8]
        ]
        figures["seconds"] = round(time.time() - started)
    finally:
        beat.stop()
        for group in groups:
            group.stop()
        emulator.stop()
        server.stop()
    figures["ok"] = bool(
        figures.get("every_job_terminal")
        and figures["started_twice"] == 0
        and figures["left_live"] == 0
        and figures["lateness_max_s"] <= 30.0
    )
    print(json.dumps(figures, indent=2))
    return 0 if figures["ok"] else 1


def submit(rt: Any, args: argparse.Namespace) -> list[str]:
    ids = []
    pace = args.arrival / args.jobs
    for i in range(args.jobs):
        duration = random.uniform(args.min_duration, args.max_duration)
        ids.append(submit_and_start(rt, empty_channel_spec(f"chaos{i}", duration))[0].job_id)
        time.sleep(pace)
    return ids


if __name__ == "__main__":
    sys.exit(main())

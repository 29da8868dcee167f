"""API calls per completed job, with and without the NCS receiver, in real-service mode.

Two runs, one after the other, each on a fresh private Redis, with the emulator and one worker
process group, the deadline dispatcher and the reconciler: ``--jobs`` jobs, half stopped at
their deadline (``--duration`` s), half on a channel that stays empty with ``maxIdleTime`` 5
and a long deadline, so that the recorder leaves by itself. ``CLOUDREC_DEV_API=false`` in both.

- without the receiver, the worker learns everything by querying: the watch after start, the
  reconciler's checks of live recordings, and the 404 probes that prove an idle exit;
- with the receiver (``cloudrec ncs`` fed by the emulator's signed notifications), event 40
  confirms a start, events 41/11 (31/32) end an idle job, and a recording heard from recently
  is not queried.

The reconciler's clock is scaled down so that a run takes about a minute: a round every
``--reconcile`` s (30 in production), a live recording checked every ``--check`` s (300),
and a 404 believed after ``--failover`` s (90). Figures printed (JSON): per run, the API
calls per job by operation and in all, and the jobs' final states.

Run: ``.venv/bin/python benchmarks/ncs_calls.py`` (about 2-3 minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import Settings
from tasks.recording import submit_and_start
from tests.support.fleet import EmulatorProcess, RedisServer, WorkerGroup, beat_threads
from tests.support.promises import empty_channel_spec, wait_all_terminal
from worker.celery_app import configure, runtime
from worker.metrics import API_CALLS
from worker.ncs_receiver import ReceiverThread

NCS_SECRET = "bench-ncs-secret"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--duration", type=float, default=25.0)
    parser.add_argument("--reconcile", type=float, default=5.0)
    parser.add_argument("--check", type=float, default=10.0)
    parser.add_argument("--failover", type=float, default=10.0)
    return parser.parse_args()


def run(args: argparse.Namespace, with_receiver: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="cloudrec-ncs-calls-"))
    (tmp / "redis").mkdir()
    server = RedisServer(tmp / "redis", appendfsync="everysec").start()
    settings = Settings(
        redis_url=server.url,
        api_rate_limit=100,
        dev_api=False,
        ncs_secret=NCS_SECRET,
        reconcile_check_interval=args.check,
        failover_window=args.failover,
    )
    receiver = ReceiverThread(settings) if with_receiver else None
    ncs = {"ncs_url": receiver.url, "ncs_secret": NCS_SECRET} if receiver else {}
    emulator = EmulatorProcess(tmp / "storage", startup_seconds=2.0, **ncs).start()
    settings = settings.model_copy(update={"api_base_url": emulator.base_url})
    configure(settings)
    rt = runtime()
    group = WorkerGroup(settings, "ncscalls", pool="threads", concurrency=8, log_dir=tmp).start()
    try:
        with beat_threads(1.0, args.reconcile):
            ids = submit(rt, args)
            done = wait_all_terminal(rt, ids, 300)
        states = Counter(str(job.state) for job in rt.store.records(ids))
        calls = api_calls(rt)
    finally:
        group.stop()
        emulator.stop()
        if receiver is not None:
            receiver.stop()
        server.stop()
    jobs = len(ids)
    return {
        "every_job_terminal": done,
        "states": dict(states),
        "api_calls_per_job": round(sum(calls.values()) / jobs, 2),
        "by_operation": {op: round(n / jobs, 2) for op, n in sorted(calls.items())},
    }


def submit(rt: Any, args: argparse.Namespace) -> list[str]:
    ids = []
    for i in range(args.jobs):
        if i % 2 == 0:
            spec = empty_channel_spec(f"deadline{i}", args.duration)
        else:  # nobody ever joins: the recorder leaves by itself after 5 s
            spec = empty_channel_spec(f"idle{i}", 600)
            spec["recordingConfig"]["maxIdleTime"] = 5
        ids.append(submit_and_start(rt, spec)[0].job_id)
    return ids


def api_calls(rt: Any) -> Counter[str]:
    calls: Counter[str] = Counter()
    for field, count in rt.redis.hgetall(API_CALLS).items():
        calls[field.decode().partition("|")[0]] += int(count)
    return calls


def main() -> int:
    args = parse_args()
    figures = {
        "jobs": args.jobs,
        "without_receiver": run(args, with_receiver=False),
        "with_receiver": run(args, with_receiver=True),
    }
    print(json.dumps(figures, indent=2))
    ok = all(figures[k]["every_job_terminal"] for k in ("without_receiver", "with_receiver"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Faults: recording jobs while the emulator injects about 20 % errors on every operation:
5xx/62, 206/65, 429, answers that arrive after the client gave up (the call took effect), and
failover-style 404 windows on the running tasks, in real-service mode: the worker uses nothing
of the emulator's dev API (``dev_api=False``); a start whose answer was lost learns its sid
from the NCS notifications, as it must with Agora.

What runs (each in its own process): a private ``redis-server``, the emulator (its own rate
limit off; the injected 429s stand in for it) posting its notifications to ``cloudrec ncs``
(the NCS receiver), ``celery beat``, and two worker groups (``--pool threads -c 8``). Every
channel has a user publishing video and audio, so a job that keeps its promises ends
``completed`` (an empty channel would end ``empty``).

Figures printed: API calls made and the share that failed (by outcome); job end states (goal:
every job ``completed``); recordings started twice (goal 0); recordings left live (goal 0);
stop lateness p50/p99/max (of every recording at the emulator, too); dev API requests from the
worker (goal 0).

Run: ``.venv/bin/python benchmarks/faults.py`` (about 6 minutes for 100 jobs).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import Settings
from tasks.recording import submit_and_start
from tests.support.fleet import (
    BeatProcess,
    EmulatorProcess,
    NcsReceiverProcess,
    RedisServer,
    WorkerGroup,
)
from tests.support.promises import (
    REAL_SERVICE,
    check_promises,
    dev_requests_mark,
    injected_faults,
    observer_dev,
    wait_all_terminal,
    worker_dev_requests,
)
from worker.celery_app import configure, runtime
from worker.devapi import DevApiClient
from worker.metrics import API_CALLS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument(
        "--rate",
        type=float,
        default=0.05,
        help="probability of each of the 4 faults per call (0.05: ~20 %% fail)",
    )
    parser.add_argument("--arrival", type=float, default=200.0)
    parser.add_argument("--min-duration", type=float, default=20.0)
    parser.add_argument("--max-duration", type=float, default=40.0)
    parser.add_argument(
        "--window-every",
        type=float,
        default=25.0,
        help="a failover-style 404 window opens this often",
    )
    parser.add_argument("--window", type=float, default=8.0, help="404 window length, s")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


def faults(rate: float, seed: int, window: float = 0.0, after: float = 0.0) -> dict[str, Any]:
    """Answers come 6 s late: after the client's read timeout (2 s, 5 s for a stop)."""
    return injected_faults(rate, seed, late_answer=6.0, window=window, after=after)


def main() -> int:
    args = parse_args()
    random.seed(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="cloudrec-faults-"))
    (tmp / "redis").mkdir()
    server = RedisServer(tmp / "redis", appendfsync="everysec").start()
    receiver = NcsReceiverProcess(
        Settings(redis_url=server.url, **REAL_SERVICE),  # type: ignore[arg-type]
        tmp,
    ).start()
    emulator = EmulatorProcess(
        tmp / "storage",
        startup_seconds=2.0,
        slice_seconds=4.0,
        ncs_url=receiver.url,
        ncs_secret=REAL_SERVICE["ncs_secret"],
    ).start()
    settings = Settings(
        redis_url=server.url,
        api_base_url=emulator.base_url,
        api_rate_limit=50,
        api_read_timeout=2.0,
        api_stop_read_timeout=5.0,
        # longer than any injected 404 window, as docs/service/errors.md#not-found promises
        failover_window=20,
        reconcile_stuck_after=30,
        **REAL_SERVICE,  # type: ignore[arg-type]
    )
    configure(settings)
    rt = runtime()
    dev = observer_dev(emulator.base_url)
    mark = dev_requests_mark(dev)
    groups = [
        WorkerGroup(settings, f"faults{i}", pool="threads", concurrency=8, log_dir=tmp).start()
        for i in range(2)
    ]
    beat = BeatProcess(settings, tmp).start()
    figures: dict[str, Any] = {"jobs": args.jobs, "logs": str(tmp)}
    stop_windows = threading.Event()
    windows = threading.Thread(target=open_windows, args=(dev, args, stop_windows), daemon=True)
    try:
        dev.set_faults(faults(args.rate, args.seed))
        windows.start()
        ids = submit(rt, dev, args)
        figures["every_job_terminal"] = wait_all_terminal(rt, ids, 600)
        stop_windows.set()
        windows.join()
        dev.set_faults({})
        time.sleep(2)
        verdict = check_promises(rt, dev, ids)
        figures |= verdict.summary()
        figures["failures"] = dict(list(verdict.failures.items())[:10])
        figures |= call_figures(rt)
        figures["dev_api_requests_from_worker"] = len(worker_dev_requests(dev, mark))
    finally:
        stop_windows.set()
        beat.stop()
        for group in groups:
            group.stop()
        emulator.stop()
        receiver.stop()
        server.stop()
    figures["ok"] = bool(
        figures.get("every_job_terminal")
        and figures["states"] == {"completed": args.jobs}
        and figures["started_twice"] == 0
        and figures["left_live"] == 0
        and figures["dev_api_requests_from_worker"] == 0
    )
    print(json.dumps(figures, indent=2))
    return 0 if figures["ok"] else 1


def open_windows(dev: DevApiClient, args: argparse.Namespace, stop: threading.Event) -> None:
    opened = 0
    while not stop.wait(args.window_every):
        opened += 1
        dev.set_faults(faults(args.rate, args.seed + opened, args.window, random.uniform(0, 5)))


def submit(rt: Any, dev: DevApiClient, args: argparse.Namespace) -> list[str]:
    ids = []
    pace = args.arrival / args.jobs
    for i in range(args.jobs):
        cname = f"faults{i}"
        dev.join(cname, "1", video={"color": "#3366FF"}, audio={"tone": 500})
        spec = {
            "cname": cname,
            "duration": round(random.uniform(args.min_duration, args.max_duration)),
            "recordingConfig": {
                "maxIdleTime": 120,
                "transcodingConfig": {"width": 160, "height": 120, "fps": 7, "bitrate": 100},
            },
        }
        ids.append(submit_and_start(rt, spec)[0].job_id)
        time.sleep(pace)
    return ids


def call_figures(rt: Any) -> dict[str, Any]:
    """API calls by outcome, from the workers' shared counters."""
    calls = {k.decode(): int(v) for k, v in rt.redis.hgetall(API_CALLS).items()}
    outcomes: Counter[str] = Counter()
    for key, count in calls.items():
        _operation, status, code = key.split("|")
        outcomes[f"{status}/{code}" if code else status] += count
    total = sum(calls.values())
    failed = total - outcomes.get("200", 0)
    return {
        "api_calls": total,
        "api_calls_failed": failed,
        "api_failed_share": round(failed / total, 3) if total else None,
        "api_outcomes": dict(outcomes.most_common()),
    }


if __name__ == "__main__":
    sys.exit(main())

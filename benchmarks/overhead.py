"""Overhead: full job lifecycles per second through the worker, next to a plain loop that makes
the same HTTP calls with the same concurrency, side by side in one run.

A lifecycle, both ways: acquire, start, 2 s later one query (the recording is running: status
5), and at the deadline (4 s after the job began) the stop. The plain loop is ``--concurrency``
threads, each running lifecycles back to back with the same API client and no Redis, Celery or
store; the worker side keeps ``--concurrency`` jobs in flight through the real path (submit ->
job record -> Celery acquire/start chain -> watch -> deadline in the due-queue -> beat's
dispatcher -> stop task -> terminal state), with one worker process per queue
(``--pool threads``). Both talk to the same emulator process (rate limit off, empty channels).
The two sides run one after the other, ``--rounds`` times each, alternating, and the medians
are printed.

Figures printed: lifecycles per second for each side, and worker / plain (goal: >= 0.5).

Run: ``.venv/bin/python benchmarks/overhead.py`` (about 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import Settings
from contract.models import AcquireClientRequest, StartClientRequest
from tasks.recording import submit_and_start
from tests.support.fleet import BeatProcess, EmulatorProcess, RedisServer, WorkerGroup
from tests.support.promises import empty_channel_spec
from worker.celery_app import CONTROL_QUEUE, RECORDING_QUEUE, app, configure, runtime
from worker.client import RecordingApiClient
from worker.errors import ApiError
from worker.jobs import parse_job_spec
from worker.recording import storage_config
from worker.states import ACTIVE_STATES

WATCH_AFTER = 2.0  # the watch step's first query comes this long after the start
LIFETIME = 4.0  # the deadline: this long after the job began


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=40.0, help="measured part of a round")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32, help="worker thread pool size")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cloudrec-overhead-"))
    (tmp / "redis").mkdir()
    server = RedisServer(tmp / "redis", appendfsync="everysec").start()
    emulator = EmulatorProcess(tmp / "storage", startup_seconds=0.0).start()
    settings = Settings(
        redis_url=server.url, api_base_url=emulator.base_url, api_rate_limit=100_000, dev_api=True
    )
    configure(settings)
    groups = [
        WorkerGroup(
            settings, "control", pool="threads", concurrency=16, queues=[CONTROL_QUEUE], log_dir=tmp
        ).start(),
        WorkerGroup(
            settings,
            "recording",
            pool="threads",
            concurrency=args.threads,
            queues=[RECORDING_QUEUE],
            log_dir=tmp,
        ).start(),
    ]
    beat = BeatProcess(settings, tmp)
    plain: list[float] = []
    worker: list[float] = []
    try:
        while len(app.control.ping(timeout=1.0)) < 2:
            pass
        beat.start()
        for round_ in range(args.rounds):
            plain.append(plain_rate(settings, args, round_))
            worker.append(worker_rate(args, round_))
            print(f"round {round_}: plain {plain[-1]:.2f}/s, worker {worker[-1]:.2f}/s", flush=True)
    finally:
        beat.stop()
        for group in groups:
            group.stop()
        emulator.stop()
        server.stop()
    figures = {
        "concurrency": args.concurrency,
        "plain_lifecycles_per_s": [round(r, 2) for r in plain],
        "worker_lifecycles_per_s": [round(r, 2) for r in worker],
        "plain_median": round(statistics.median(plain), 2),
        "worker_median": round(statistics.median(worker), 2),
    }
    figures["worker_over_plain"] = round(figures["worker_median"] / figures["plain_median"], 3)
    figures["ok"] = figures["worker_over_plain"] >= 0.5
    print(json.dumps(figures, indent=2))
    return 0 if figures["ok"] else 1


# -- the plain loop -------------------------------------------------------------------------------
def plain_rate(settings: Settings, args: argparse.Namespace, round_: int) -> float:
    """Lifecycles per second of ``concurrency`` threads making the calls themselves."""
    done: list[float] = []
    stop = threading.Event()
    lock = threading.Lock()
    spec = parse_job_spec(empty_channel_spec("plain", 60), settings)
    request = StartClientRequest(
        recordingConfig=spec.recordingConfig,
        recordingFileConfig=spec.recordingFileConfig,
        storageConfig=storage_config(settings, spec.storage, None),
    )

    def loop(n: int) -> None:
        client = RecordingApiClient(settings)
        i = 0
        while not stop.is_set():
            began = time.monotonic()
            cname, uid = f"plain{round_}x{n}x{i}", str(1000 + n)
            i += 1
            try:
                lifecycle(client, cname, uid, request, began)
            except ApiError as exc:
                print(f"plain loop: {exc}", file=sys.stderr)
                continue
            with lock:
                done.append(time.monotonic())
        client.close()

    threads = [
        threading.Thread(target=loop, args=(n,), daemon=True) for n in range(args.concurrency)
    ]
    for thread in threads:
        thread.start()
    start = time.monotonic() + args.warmup
    time.sleep(args.warmup + args.seconds)
    end = time.monotonic()
    stop.set()
    for thread in threads:
        thread.join()
    return sum(1 for t in done if start <= t < end) / (end - start)


def lifecycle(client: RecordingApiClient, cname: str, uid: str, request: Any, began: float) -> None:
    resource = client.acquire(cname, uid, AcquireClientRequest()).resourceId
    sid = client.start(resource, cname, uid, request).sid
    time.sleep(max(0.0, began + WATCH_AFTER - time.monotonic()))
    client.query(resource, sid)
    time.sleep(max(0.0, began + LIFETIME - time.monotonic()))
    try:
        client.stop(resource, sid, cname, uid)
    except ApiError as exc:
        if exc.code != 435:  # an empty channel: nobody published, as in the worker's jobs
            raise


# -- the worker -----------------------------------------------------------------------------------
def worker_rate(args: argparse.Namespace, round_: int) -> float:
    """Jobs per second through the worker with ``concurrency`` jobs kept in flight."""
    rt = runtime()
    submitted = 0
    start = time.monotonic() + args.warmup
    end = start + args.seconds
    first = last = 0
    while time.monotonic() < end:
        active = sum(rt.store.count_in(s) for s in ACTIVE_STATES)
        for _ in range(args.concurrency - active):
            stop_at = datetime.fromtimestamp(time.time() + LIFETIME, UTC).isoformat()
            spec = empty_channel_spec(f"worker{round_}x{submitted}", 1) | {"stop_at": stop_at}
            del spec["duration"]
            submit_and_start(rt, spec)
            submitted += 1
        now = time.monotonic()
        if not first and now >= start:
            first = finished(rt)
        time.sleep(0.05)
    last = finished(rt)
    drain(rt)
    return (last - first) / args.seconds


def finished(rt: Any) -> int:
    """Jobs ended so far (the store's index of all jobs minus the active ones)."""
    total = rt.redis.zcard("cloudrec:jobs")
    return int(total) - sum(rt.store.count_in(s) for s in ACTIVE_STATES)


def drain(rt: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(rt.store.count_in(s) for s in ACTIVE_STATES) == 0:
            return
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())

"""Chaos, in real-service mode: recording jobs while whole worker process groups are SIGKILLed
every 2-5 s and the service answers starts late, as a new user would try it (issue 9.6).

What runs (each in its own process): a private ``redis-server`` (append-only, ``everysec``);
the emulator (REST rate limit off, empty channels), answering half of the starts 2.5 s late and
a fifth only after the client's read timeout (the start takes effect; its answer is lost),
posting its signed NCS notifications to ``cloudrec ncs``, the NCS receiver; ``celery beat``
(dispatcher every second, reconciler every 30 s); ``--groups`` worker process groups
(``--pool prefork -c 2``: a main process and two children each, on the full queue layout). The
worker is in real-service mode (``dev_api=False``): nothing of the emulator's dev API, only what
Agora offers (the REST answers and NCS). The benchmark itself reads the dev API to see what ran.

Jobs (empty channels, ``maxIdleTime`` 600, durations ``--min-duration``..``--max-duration``)
arrive over ``--arrival`` seconds, submitted the way another service submits them: a plain
Celery app, ``send_task("recording.submit", args=[spec], queue="cloudrec")`` (the intake). A
killer SIGKILLs one whole group every 2-5 s, round robin, and restarts it; nothing gets to ack,
requeue or clean up. After the last deadline the killing stops (a calm worker) and the script
waits for every job to end.

Printed: every recording that reached the emulator, with its stop lateness (the emulator's
``stoppedAt`` minus its job's ``stop_at``, matched by cname, for every recording, also those
whose job never learnt the sid) and how it ended; lateness p50/p99/max; recordings started
twice; recordings left live; jobs by end state and reason; dev API requests from the worker.
Goal: every recording stopped within 30 s of its deadline, none twice, every job terminal with
a reason that says what happened.

Run: ``.venv/bin/python benchmarks/chaos.py`` (about 3-4 minutes).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from celery import Celery

from config import Settings
from tests.support.fleet import (
    BeatProcess,
    EmulatorProcess,
    Killer,
    NcsReceiverProcess,
    RedisServer,
    WorkerGroup,
)
from tests.support.promises import (
    REAL_SERVICE,
    Verdict,
    check_promises,
    dev_requests_mark,
    empty_channel_spec,
    observer_dev,
    wait_all_terminal,
    worker_dev_requests,
)
from worker.celery_app import configure, runtime
from worker.devapi import DevApiClient
from worker.metrics import API_CALLS

INTAKE = "cloudrec"  # the public intake queue (CLOUDREC_INTAKE_QUEUE's default)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--kill-min", type=float, default=2.0, help="seconds between kills, min")
    parser.add_argument("--kill-max", type=float, default=5.0, help="seconds between kills, max")
    parser.add_argument("--arrival", type=float, default=20.0)
    parser.add_argument("--min-duration", type=float, default=5.0)
    parser.add_argument("--max-duration", type=float, default=15.0)
    parser.add_argument("--late-rate", type=float, default=0.5, help="starts answered 2.5 s late")
    parser.add_argument(
        "--lost-rate", type=float, default=0.2, help="starts answered after the read timeout"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loglevel", default="WARNING", help="the workers' log level")
    return parser.parse_args()


def start_faults(args: argparse.Namespace, read_timeout: float) -> dict[str, Any]:
    """Half the starts answered 2.5 s late, some only after the client's read timeout (the
    recording starts; the worker never hears the answer and must learn the sid from NCS)."""
    return {
        "latency": [
            {"operations": ["start"], "seconds": 2.5, "when": "after", "rate": args.late_rate},
            {
                "operations": ["start"],
                "seconds": read_timeout + 2.0,
                "when": "after",
                "rate": args.lost_rate,
            },
        ],
        "seed": args.seed,
    }


def main() -> int:
    args = parse_args()
    random.seed(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="cloudrec-chaos-"))
    (tmp / "redis").mkdir()
    server = RedisServer(tmp / "redis", appendfsync="everysec").start()
    settings = Settings(redis_url=server.url, **REAL_SERVICE)  # type: ignore[arg-type]
    receiver = NcsReceiverProcess(settings, tmp).start()
    emulator = EmulatorProcess(
        tmp / "storage",
        startup_seconds=2.0,
        ncs_url=receiver.url,
        ncs_secret=REAL_SERVICE["ncs_secret"],
    ).start()
    settings = Settings(
        redis_url=server.url,
        api_base_url=emulator.base_url,
        **REAL_SERVICE,  # type: ignore[arg-type]
    )
    configure(settings)
    rt = runtime()
    dev = observer_dev(emulator.base_url)
    mark = dev_requests_mark(dev)
    dev.set_faults(start_faults(args, settings.api_read_timeout))
    groups = [
        WorkerGroup(
            settings,
            f"chaos{i}",
            pool=args.pool,
            concurrency=args.concurrency,
            log_dir=tmp,
            loglevel=args.loglevel,
        ).start()
        for i in range(args.groups)
    ]
    beat = BeatProcess(settings, tmp).start()
    started = time.time()
    figures: dict[str, Any] = {"jobs": args.jobs, "logs": str(tmp)}
    try:
        with Killer(groups, args.kill_min, args.kill_max) as killer:
            ids, last_deadline = submit(server.url, args)
            wait_past_deadlines(rt, ids, last_deadline)
            figures["kills"] = killer.kills
        calm = time.time()
        figures["every_job_terminal"] = wait_all_terminal(rt, ids, 240)
        figures["calm_seconds_to_all_terminal"] = round(time.time() - calm)
        time.sleep(2)
        verdict = check_promises(rt, dev, ids)
        figures |= stored_after(rt, ids)
        figures |= how_it_went(rt, ids, tmp)
        figures["dev_api_requests_from_worker"] = len(worker_dev_requests(dev, mark))
        figures["start_faults"] = start_faults(args, settings.api_read_timeout)["latency"]
        figures["seconds"] = round(time.time() - started)
    finally:
        beat.stop()
        for group in groups:
            group.stop()
        emulator.stop()
        receiver.stop()
        server.stop()
    report(verdict, figures, dev)
    late = verdict.recording_lateness
    figures["ok"] = bool(
        figures.get("every_job_terminal")
        and verdict.started_twice == []
        and verdict.left_live == []
        and all(x <= 30.0 for x in late)
        and figures["dev_api_requests_from_worker"] == 0
    )
    print(json.dumps(figures | verdict.summary(), indent=2))
    return 0 if figures["ok"] else 1


SENT: dict[str, float] = {}  # job id -> when its submit was sent


def submit(broker_url: str, args: argparse.Namespace) -> tuple[list[str], float]:
    """Send the jobs as another service does: a plain Celery app, the intake queue. Returns the
    job ids (given in the specs) and the last deadline (each job's duration from its send)."""
    caller = Celery(broker=broker_url)
    ids: list[str] = []
    last = 0.0
    pace = args.arrival / args.jobs
    for i in range(args.jobs):
        duration = random.uniform(args.min_duration, args.max_duration)
        job_id = f"chaos-{i:03d}"
        spec = empty_channel_spec(f"chaos{i}", duration, max_idle=600, job_id=job_id)
        SENT[job_id] = time.time()
        caller.send_task("recording.submit", args=[spec], queue=INTAKE)
        ids.append(job_id)
        last = max(last, time.time() + duration)
        time.sleep(pace)
    return ids, last


def how_it_went(rt: Any, ids: list[str], log_dir: Path) -> dict[str, Any]:
    """Start answers by outcome (``none``: no answer before the read timeout), how each job
    learnt its sid (the start's answer, or NCS after the answer was lost), and how many
    messages of killed workers the restorer put back (from the workers' logs)."""
    calls = {k.decode(): int(v) for k, v in rt.redis.hgetall(API_CALLS).items()}
    starts = {k.split("|", 1)[1]: n for k, n in calls.items() if k.startswith("start|")}
    sources = Counter(str(j.sid_source) for j in rt.store.records(ids) if j.sid)
    restored = 0
    for path in log_dir.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if match := re.search(r"restored (\d+) message", line):
                restored += int(match.group(1))
    return {
        "start_answers": dict(sorted(starts.items())),
        "sid_learnt_from": dict(sources),
        "messages_restored": restored,
    }


def stored_after(rt: Any, ids: list[str]) -> dict[str, Any]:
    """How long after its message was sent each job existed (a submit whose worker died is
    restored; it must not wait for the broker's visibility timeout)."""
    delays = sorted(j.created_at - SENT[j.job_id] for j in rt.store.records(ids))
    return {
        "submit_to_stored_p50_s": round(delays[len(delays) // 2], 3) if delays else None,
        "submit_to_stored_max_s": round(delays[-1], 3) if delays else None,
    }


def wait_past_deadlines(rt: Any, ids: list[str], last_sent_deadline: float) -> None:
    """Keep the pressure on until every job's deadline has passed (a submit restored after
    its worker died sets its deadline late), or a minute after the last one sent."""
    give_up = last_sent_deadline + 60
    while time.time() < give_up:
        jobs = rt.store.records(ids)
        if len(jobs) == len(ids) and time.time() > max(j.stop_at for j in jobs) + 5:
            return
        time.sleep(1)


def report(verdict: Verdict, figures: dict[str, Any], dev: DevApiClient) -> None:
    print("\nevery recording that reached the emulator (stop lateness vs. its job's stop_at):")
    for rec in sorted(verdict.recordings, key=lambda r: r.cname):
        print("  " + rec.line())
    print("\njobs by end state and reason:")
    for reason, count in verdict.reasons.most_common():
        print(f"  {count:3d}  {reason}")
    if verdict.not_terminal:
        print(f"  {len(verdict.not_terminal):3d}  NOT TERMINAL: {verdict.not_terminal[:10]}")
    print()


if __name__ == "__main__":
    sys.exit(main())

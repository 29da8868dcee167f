"""Building blocks for the reliability tests (small sizes, in the suite) and the benchmark
scripts (full sizes, ``benchmarks/``): real worker processes that can be SIGKILLed, a private
Redis that can be SIGKILLed, the dispatcher and reconciler ticking like beat, and the checks of
the worker's promises against the emulator's own record of every recording.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from config import Settings
from tests.support.ports import free_port
from worker.devapi import DevApiClient
from worker.queues import queue_layout
from worker.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]

# Real-service mode, the mode the guarantees are shown in: the worker uses nothing of the
# emulator's dev API (``dev_api=False``) and learns what the real service would tell it only
# through NCS notifications, posted by the emulator to a ``cloudrec ncs`` receiver.
NCS_SECRET = "reliability-ncs-secret"
REAL_SERVICE = {"dev_api": False, "ncs_secret": NCS_SECRET}
# The test's (and benchmark's) own calls to the dev API say who they are; any other caller
# the emulator logs (GET /dev/requests) is the worker.
TEST_AGENT = "cloudrec-reliability-test"


def observer_dev(base_url: str) -> DevApiClient:
    """The test's view of the emulator (never the worker's)."""
    return DevApiClient(base_url, user_agent=TEST_AGENT)


def dev_requests_mark(dev: DevApiClient) -> int:
    """Where the emulator's dev API log stands now (before the workers start: the emulator's
    own start-up probe is logged too)."""
    return len(dev.requests_log())


def worker_dev_requests(dev: DevApiClient, since: int) -> list[dict[str, Any]]:
    """Every dev API request the emulator logged after ``since`` that did not come from the
    test itself."""
    return [r for r in dev.requests_log()[since:] if r.get("userAgent") != TEST_AGENT]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a worker process build exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDREC_")}
    for name, value in settings.model_dump(exclude={"storage"}).items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"CLOUDREC_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    env["PYTHONPATH"] = str(REPO)
    return env


# -- worker processes -------------------------------------------------------------------------
class WorkerGroup:
    """One ``celery worker`` process group (the main process and its pool children) that can be
    killed with SIGKILL all at once, as when a machine or container dies."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        *,
        pool: str = "prefork",
        concurrency: int = 2,
        log_dir: Path | None = None,
        queues: Iterable[str] | None = None,
        loglevel: str = "WARNING",
    ) -> None:
        self.settings = settings
        self.name = name
        self.pool = pool
        self.concurrency = concurrency
        # By default every queue a deployed worker serves: control, recording, the intake.
        self.queues = ",".join(queues if queues is not None else queue_layout(settings))
        self.loglevel = loglevel
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="cloudrec-workers-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> WorkerGroup:
        log = (self.log_dir / f"{self.name}-{self.starts}.log").open("wb")
        command = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "-Q", self.queues, "--pool", self.pool, "-c", str(self.concurrency),
            "-n", f"{self.name}-{self.starts}@%h", "-l", self.loglevel,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg takes the pool with it
        )
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL the whole group: nothing gets to ack, requeue or clean up."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        """A graceful stop (SIGTERM: finish the running tasks), then SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def pids(self) -> list[int]:
        """The group's processes (main and pool children), for memory measurements."""
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return []
        main = psutil.Process(self.proc.pid)
        return [main.pid, *(c.pid for c in main.children(recursive=True))]


class Killer:
    """Every ``interval`` seconds (or a random time between ``interval`` and ``max_interval``),
    SIGKILL one worker group (round robin) and restart it."""

    def __init__(
        self, groups: list[WorkerGroup], interval: float, max_interval: float | None = None
    ) -> None:
        self.groups = groups
        self.interval = interval
        self.max_interval = max_interval or interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="killer", daemon=True)

    def _run(self) -> None:
        import random

        turn = 0
        while not self._stop.wait(random.uniform(self.interval, self.max_interval)):
            group = self.groups[turn % len(self.groups)]
            group.kill()
            group.start()
            turn += 1

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def kills(self) -> int:
        return sum(g.kills for g in self.groups)


# -- beat, in threads ---------------------------------------------------------------------------
@contextlib.contextmanager
def beat_threads(
    dispatch_interval: float = 1.0, reconcile_interval: float = 30.0
) -> Iterator[dict[str, int]]:
    """Run the bodies of the two beat tasks on their clocks in this process (the app must be
    configured first): the deadline dispatcher and the reconciler. Yields their counters."""
    from tasks.recording import dispatch, reconcile

    stop = threading.Event()
    counts = {"dispatched": 0, "reconcile_rounds": 0, "redriven": 0}

    def tick(interval: float, body: Callable[[], None]) -> None:
        while not stop.wait(interval):
            try:
                body()
            except Exception as exc:  # keep ticking: beat does too
                print(f"beat thread: {type(exc).__name__}: {exc}", file=sys.stderr)

    def dispatch_once() -> None:
        counts["dispatched"] += dispatch()

    def reconcile_once() -> None:
        report = reconcile()
        counts["reconcile_rounds"] += 1
        counts["redriven"] += int(report["redriven"])

    threads = [
        threading.Thread(target=tick, args=(dispatch_interval, dispatch_once), daemon=True),
        threading.Thread(target=tick, args=(reconcile_interval, reconcile_once), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        yield counts
    finally:
        stop.set()
        for thread in threads:
            thread.join()


# -- a private Redis ------------------------------------------------------------------------------
class RedisServer:
    """A ``redis-server`` of our own, with append-only persistence, that can be SIGKILLed and
    restarted on the same port and data directory."""

    def __init__(self, directory: Path, *, appendfsync: str = "always") -> None:
        self.directory = directory
        self.port = free_port()
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} did not answer")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(redis.RedisError):
                redis.Redis.from_url(self.url).shutdown(nosave=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            self.kill()


# -- the promises, checked ------------------------------------------------------------------------
def epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


@dataclass
class Verdict:
    """The worker's promises, checked against the job store and the emulator's record."""

    jobs: int = 0
    states: Counter[str] = field(default_factory=Counter)
    not_terminal: list[str] = field(default_factory=list)
    started_twice: list[str] = field(default_factory=list)  # cnames with > 1 recording
    left_live: list[str] = field(default_factory=list)  # sids still live at the emulator
    unknown_recordings: list[str] = field(default_factory=list)  # no job for the cname
    lateness: list[float] = field(default_factory=list)  # emulator stop - stop_at, seconds
    stops: list[tuple[float, float, str]] = field(default_factory=list)  # stop_at, late, job
    failures: dict[str, str] = field(default_factory=dict)  # job id -> error reason
    # Every recording the emulator holds, whether or not its job ever learnt its sid.
    recordings: list[RecordingSeen] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)  # "state: reason" of every job

    @property
    def recording_lateness(self) -> list[float]:
        """How late each recording at the emulator was stopped (still live: not in it)."""
        return [r.late for r in self.recordings if r.late is not None]

    @property
    def max_lateness(self) -> float:
        return max(self.lateness, default=0.0)

    def percentile(self, q: float) -> float:
        if not self.lateness:
            return 0.0
        ordered = sorted(self.lateness)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        late = sorted(self.recording_lateness)
        return {
            "recordings": len(self.recordings),
            "recordings_stopped_late_over_30s": sum(1 for x in late if x > 30),
            "recording_lateness_p50_s": round(_quantile(late, 0.5), 3),
            "recording_lateness_p99_s": round(_quantile(late, 0.99), 3),
            "recording_lateness_max_s": round(max(late, default=0.0), 3),
            "recordings_sid_unknown_to_job": sum(1 for r in self.recordings if not r.job_knew_sid),
            "jobs": self.jobs,
            "states": dict(self.states),
            "not_terminal": len(self.not_terminal),
            "started_twice": len(self.started_twice),
            "left_live": len(self.left_live),
            "unknown_recordings": len(self.unknown_recordings),
            "deadline_stops": len(self.lateness),
            "lateness_p50_s": round(statistics.median(self.lateness), 3) if self.lateness else None,
            "lateness_p99_s": round(self.percentile(0.99), 3),
            "lateness_max_s": round(self.max_lateness, 3),
        }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass(frozen=True)
class RecordingSeen:
    """One recording as the emulator saw it, against its job's deadline."""

    cname: str
    uid: str
    sid: str
    job_id: str | None
    job_state: str | None
    job_knew_sid: bool  # the job holds this sid (False: its start's answer was lost)
    late: float | None  # emulator stop time - the job's stop_at (None: still live)
    exit_reason: str | None

    def line(self) -> str:
        late = "LIVE" if self.late is None else f"{self.late:+7.2f} s"
        knew = "" if self.job_knew_sid else "  (sid unknown to the job)"
        return (
            f"{self.cname:<12} uid={self.uid:<10} {late}  exit={self.exit_reason}  "
            f"job={self.job_state}{knew}"
        )


def check_promises(rt: Runtime, dev: DevApiClient, job_ids: list[str]) -> Verdict:
    """Every job terminal; one recording per job at most; none left live; how late each
    deadline stop reached the service (its ``stoppedAt`` against the job's ``stop_at``)."""
    verdict = Verdict(jobs=len(job_ids))
    jobs = {j.job_id: j for j in rt.store.records(job_ids)}
    by_cname: dict[str, list[dict[str, Any]]] = {}
    for rec in dev.recordings():
        by_cname.setdefault(rec["cname"], []).append(rec)
        if rec["live"]:
            verdict.left_live.append(rec["sid"])
    cnames = {j.cname: j for j in jobs.values()}
    verdict.unknown_recordings = [c for c in by_cname if c not in cnames]
    for cname, recs in by_cname.items():
        owner = cnames.get(cname)
        for rec in recs:
            stopped = epoch(rec["stoppedAt"]) if rec["stoppedAt"] else None
            verdict.recordings.append(
                RecordingSeen(
                    cname=cname,
                    uid=str(rec["uid"]),
                    sid=rec["sid"],
                    job_id=owner.job_id if owner else None,
                    job_state=str(owner.state) if owner else None,
                    job_knew_sid=bool(owner and owner.sid == rec["sid"]),
                    late=None if stopped is None or owner is None else stopped - owner.stop_at,
                    exit_reason=rec.get("exitReason"),
                )
            )
    for job_id in job_ids:
        job = jobs.get(job_id)
        if job is None or not job.terminal:
            verdict.not_terminal.append(job_id)
            continue
        verdict.states[str(job.state)] += 1
        reason = (job.error or {}).get("reason") or job.stop_reason or ""
        verdict.reasons[f"{job.state}: {reason}"] += 1
        if job.state == "failed":
            verdict.failures[job_id] = str((job.error or {}).get("reason"))
        recs = by_cname.get(job.cname, [])
        if len(recs) > 1:
            verdict.started_twice.append(job.cname)
        if recs and job.stop_reason in (None, "deadline") and recs[0]["stoppedAt"]:
            stopped = epoch(recs[0]["stoppedAt"])
            assert stopped is not None
            if stopped >= job.stop_at - 5:  # stopped by its deadline, not by an error path
                verdict.lateness.append(stopped - job.stop_at)
                verdict.stops.append((job.stop_at, stopped - job.stop_at, job.job_id))
    return verdict


def wait_all_terminal(rt: Runtime, job_ids: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = rt.store.records(job_ids)
        if len(jobs) == len(job_ids) and all(j.terminal for j in jobs):
            return True
        time.sleep(0.5)
    return False


def injected_faults(
    rate: float, seed: int, *, late_answer: float, window: float = 0.0, after: float = 0.0
) -> dict[str, Any]:
    """The emulator's fault settings for the fault runs: 500/62, 206/65, 429 and an answer
    ``late_answer`` s late (the call took effect; the client gave up first), each at ``rate``
    per call; ``window``: a failover-style 404 window opening ``after`` s from now."""
    return {
        "errors": [
            {"status": 500, "code": 62, "reason": "request timeout", "rate": rate},
            {"status": 206, "code": 65, "reason": "request not completed", "rate": rate},
            {"status": 429, "message": "API rate limit exceeded", "rate": rate},
        ],
        "latency": [{"seconds": late_answer, "when": "after", "rate": rate}],
        "notFoundSeconds": window,
        "notFoundAfter": after,
        "seed": seed,
    }


def empty_channel_spec(
    cname: str, duration: float, *, max_idle: int = 3600, **extra: Any
) -> dict[str, Any]:
    """A job on a channel nobody joins: the emulator composites nothing (cheap), the recorder
    waits out a long maxIdleTime, and the stop answers 435 (the job ends ``empty``)."""
    return {
        "cname": cname,
        "duration": max(1, round(duration)),
        "recordingConfig": {
            "maxIdleTime": max_idle,
            "transcodingConfig": {"width": 160, "height": 120, "fps": 7, "bitrate": 100},
        },
        **extra,
    }


# -- the emulator and beat as processes (the benchmarks) ----------------------------------------
_EMULATOR_MAIN = """
import json, sys
from pathlib import Path
import uvicorn
from emulator.app import create_app
from emulator.config import EmulatorConfig
options = json.loads(sys.argv[1])
options["storage_dir"] = Path(options["storage_dir"])
# GET /dev/recordings keeps the last 1,000 recordings only; a benchmark checks every one.
import emulator.service
emulator.service._HISTORY_LIMIT = int(options.pop("history_limit", 1000))
config = EmulatorConfig(**options)
uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="warning",
            access_log=False)
"""


class EmulatorProcess:
    """The emulator in its own process (no access log), so that its CPU is its own and a
    benchmark's process measures only what it should."""

    def __init__(self, storage_dir: Path, **options: Any) -> None:
        self.port = free_port()
        self.options = {
            "port": self.port,
            "storage_dir": str(storage_dir),
            "qps": 0,
            "history_limit": 1_000_000,
            **options,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = storage_dir.parent / "emulator.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> EmulatorProcess:
        import json

        import requests

        Path(self.options["storage_dir"]).mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _EMULATOR_MAIN, json.dumps(self.options)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(self.base_url + "/dev/faults", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise TimeoutError("the emulator process did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class BeatProcess:
    """``celery beat`` with the app's redbeat schedule (dispatcher every second, reconciler)."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BeatProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app",
                "beat",
                "-l",
                "WARNING",
                "--schedule",
                str(self.log_dir / "beat-schedule"),
            ],
            cwd=REPO,
            env=settings_env(self.settings),
            stdout=(self.log_dir / "beat.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


class NcsReceiverProcess:
    """``cloudrec ncs``, the NCS receiver, in its own process (as deployed): the emulator posts
    its signed notifications to ``url``."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.port = free_port()
        self.log = log_dir / "ncs.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> NcsReceiverProcess:
        import requests

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "ncs", "--port", str(self.port)],
            cwd=REPO,
            env=settings_env(self.settings),
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "health", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise TimeoutError("the NCS receiver did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def rss_mb(pids: Iterable[int]) -> float:
    """Resident memory of these processes together, in MB."""
    import psutil

    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total / 1e6

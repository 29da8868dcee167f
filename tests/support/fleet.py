"""Processes the reliability tests and the benchmarks start, stop and SIGKILL: ``celery worker``
process groups, a private ``redis-server``, the emulator, ``celery beat`` and the ``cloudrec ncs``
receiver as processes, and the dispatcher and reconciler ticking in threads like beat.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import redis

from config import Settings
from tests.support.ports import free_port
from worker.queues import queue_layout

REPO = Path(__file__).resolve().parents[2]


def env_value(value: Any) -> str:
    """A setting as its environment variable spells it (lists are comma-separated)."""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in value)
    return str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a worker process build exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDREC_")}
    for name, value in settings.model_dump(exclude={"storage"}).items():
        if value is None:
            continue
        env[f"CLOUDREC_{name.upper()}"] = env_value(value)
    env["PYTHONPATH"] = str(REPO)
    return env


def popen_logged(command: list[str], log: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``command`` in the repository with stdout and stderr in ``log``. The parent closes
    its handle at once: the child has its own copy."""
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, **popen)


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
        command = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "-Q", self.queues, "--pool", self.pool, "-c", str(self.concurrency),
            "-n", f"{self.name}-{self.starts}@%h", "-l", self.loglevel,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.proc = popen_logged(
            command,
            self.log_dir / f"{self.name}-{self.starts}.log",
            env=settings_env(self.settings),
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

    def stacks(self, wait: float = 1.0) -> str:
        """Every thread's stack in the running worker (Celery logs them on SIGUSR1) and the
        tail of its log: what a test prints when the worker seems stuck."""
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            return f"worker {self.name} is not running (exit code {code})"
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGUSR1)
        time.sleep(wait)
        log = self.log_dir / f"{self.name}-{self.starts - 1}.log"
        return log.read_text(errors="replace")[-20_000:] if log.exists() else "(no log)"

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
qps_route = options.pop("qps_route", False)
config = EmulatorConfig(**options)
app = create_app(config)
if qps_route:  # a benchmark's own route: the emulator's rate limit changed while it runs
    @app.put("/bench/qps/{qps}")
    def set_qps(qps: int) -> dict:
        app.state.gateway.limiter.rate = qps
        return {"qps": qps}
uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)
"""


class EmulatorProcess:
    """The emulator in its own process (no access log), so that its CPU is its own and a
    benchmark's process measures only what it should. ``qps_route=True``: its rate limit can
    be changed while it runs (:meth:`set_qps`)."""

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
        self.proc = popen_logged(
            [sys.executable, "-c", _EMULATOR_MAIN, json.dumps(self.options)],
            self.log,
            env={**os.environ, "PYTHONPATH": str(REPO)},
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

    def set_qps(self, qps: int) -> None:
        """The emulator's REST rate limit from now on (started with ``qps_route=True``)."""
        import requests

        requests.put(f"{self.base_url}/bench/qps/{qps}", timeout=10).raise_for_status()

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
        self.proc = popen_logged(
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
            self.log_dir / "beat.log",
            env=settings_env(self.settings),
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

        self.proc = popen_logged(
            [sys.executable, "-m", "worker.cli", "ncs", "--port", str(self.port)],
            self.log,
            env=settings_env(self.settings),
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

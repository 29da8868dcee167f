"""A Redis failover in the middle of a batch of jobs, run the way a deployment runs it (used by
``tests/reliability/test_sentinel.py`` at a small size and ``benchmarks/sentinel_failover.py``).

What runs, each in its own process: the Sentinel group of :mod:`tests.support.sentinel` (one
master, one replica, three sentinels), the emulator, ``cloudrec worker`` and ``cloudrec beat``,
configured only through ``CLOUDREC_REDIS_SENTINELS`` / ``CLOUDREC_REDIS_MASTER`` and in
real-service mode (``CLOUDREC_DEV_API=false``). A caller (a plain Celery app reaching the broker
and the result backend through the sentinels) submits jobs one after another on the intake; a
job is *acknowledged* when ``recording.submit`` returned its id. A submit that fails (the master
is gone, or no replica confirmed it: ``NotDurable``) is sent again with the same ``job_id``
until it is acknowledged. During the batch the master is SIGKILLed; once the sentinels have
promoted the replica, the dead node is started again, empty, as the new master's replica.

Then every acknowledged job must be in the store (on the new master) and end terminal, and
every recording at the emulator be stopped; the report has each deadline stop's lateness (the
emulator's ``stoppedAt`` minus the job's ``stop_at``), also for the deadlines that fell while
there was no master.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery

from config import Settings
from tests.support.fleet import EmulatorProcess
from tests.support.processes import (
    Proc,
    cloudrec_env,
    start_beat_process,
    start_worker_process,
)
from tests.support.promises import (
    Verdict,
    check_promises,
    dev_requests_mark,
    empty_channel_spec,
    observer_dev,
    wait_all_terminal,
    worker_dev_requests,
)
from tests.support.sentinel import MASTER_NAME, SentinelGroup
from tests.support.waiting import wait_for
from worker.celery_app import configure, runtime
from worker.redis_conn import sentinel_url

INTAKE = "cloudrec"


@dataclass
class Plan:
    """The batch: ``jobs`` submits ``pace`` s apart, durations cycling through ``durations``;
    the master is killed once ``kill_after`` jobs are acknowledged."""

    jobs: int = 24
    pace: float = 0.25
    durations: tuple[int, ...] = (5, 6, 7, 8, 9, 10)
    kill_after: int = 12
    terminal_timeout: float = 60.0


@dataclass
class Report:
    verdict: Verdict
    acked: list[str]
    attempts: dict[str, int]  # job id -> submits sent until acknowledged
    refusals: dict[str, int]  # how each refused submit failed (exception type) -> count
    kill_at: float  # epoch seconds
    promoted_after: float  # seconds from the kill until the sentinels named the new master
    rejoined_after: float  # ... until the old node was back as a replica, in sync
    dev_requests_from_worker: list[dict[str, Any]]
    stored_on_new_master: int
    logs: Path
    load: tuple[float, float, float] = field(default_factory=lambda: (0.0, 0.0, 0.0))

    def during_failover(self) -> list[float]:
        """Lateness of the deadline stops due between the kill and the old node's return."""
        end = self.kill_at + self.rejoined_after
        return [late for at, late, _ in self.verdict.stops if self.kill_at <= at <= end]

    def lines(self) -> list[str]:
        def figures(values: list[float]) -> str:
            if not values:
                return "none"
            ordered = sorted(values)
            p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            return (
                f"n={len(values)} p50={statistics.median(values):.3f} s p99={p99:.3f} s "
                f"max={max(values):.3f} s"
            )

        v = self.verdict
        return [
            f"load average: {self.load[0]:.2f} {self.load[1]:.2f} {self.load[2]:.2f}",
            f"master SIGKILLed; replica promoted after {self.promoted_after:.2f} s; old node "
            f"back as a replica after {self.rejoined_after:.2f} s",
            f"jobs acknowledged: {len(self.acked)}; stored on the new master: "
            f"{self.stored_on_new_master}; refused submits by cause: {self.refusals}",
            f"jobs not terminal: {len(v.not_terminal)}; states: {dict(v.states)}",
            f"end reasons: {dict(v.reasons)}",
            f"recordings: {len(v.recordings)}; left live: {len(v.left_live)}; "
            f"started twice: {len(v.started_twice)}",
            f"stop lateness, every deadline stop: {figures(v.lateness)}",
            f"stop lateness, deadlines due during the failover: {figures(self.during_failover())}",
            f"dev API requests from the worker: {len(self.dev_requests_from_worker)}",
        ]


class Submitter(threading.Thread):
    """Submits the plan's jobs in order through the intake, each until acknowledged."""

    def __init__(self, caller: Celery, plan: Plan, prefix: str) -> None:
        super().__init__(name="submitter", daemon=True)
        self.caller, self.plan, self.prefix = caller, plan, prefix
        self.acked: list[str] = []
        self.attempts: dict[str, int] = {}
        self.refusals: dict[str, int] = {}
        self.give_up = time.monotonic() + 120

    def run(self) -> None:
        for i in range(self.plan.jobs):
            started = time.monotonic()
            job_id = f"{self.prefix}-{i}"
            duration = self.plan.durations[i % len(self.plan.durations)]
            spec = empty_channel_spec(job_id, duration, max_idle=600, job_id=job_id)
            while time.monotonic() < self.give_up:
                self.attempts[job_id] = self.attempts.get(job_id, 0) + 1
                if self._submit(spec, job_id):
                    self.acked.append(job_id)
                    break
                time.sleep(0.3)
            time.sleep(max(0.0, self.plan.pace - (time.monotonic() - started)))

    def _submit(self, spec: dict[str, Any], job_id: str) -> bool:
        try:
            result = self.caller.send_task(
                "recording.submit", args=[spec], queue=INTAKE, argsrepr="(<job spec>)"
            )
            return bool(result.get(timeout=8) == job_id)
        except Exception as exc:  # not acknowledged: the same spec again
            name = type(exc).__name__
            self.refusals[name] = self.refusals.get(name, 0) + 1
            return False


def caller_app(group: SentinelGroup) -> Celery:
    """Another service's Celery app, reaching cloudrec's broker through the sentinels."""
    url = sentinel_url(Settings(**group.settings()))
    caller = Celery(broker=url, backend=url)
    caller.conf.broker_transport_options = {"master_name": MASTER_NAME}
    caller.conf.result_backend_transport_options = {"master_name": MASTER_NAME}
    return caller


def run_failover(
    tmp: Path, plan: Plan, *, on_started: Callable[[list[Proc]], None] | None = None
) -> Report:
    """The whole scenario; every process it starts is stopped before it returns."""
    import os

    group = SentinelGroup(tmp / "sentinel").start()
    emulator = EmulatorProcess(tmp / "storage").start()
    procs: list[Proc] = []
    try:
        env = cloudrec_env(
            group.redis_url,
            emulator.base_url,
            **group.env(),
            CLOUDREC_DEV_API="false",
            CLOUDREC_API_RATE_LIMIT="100",
            CLOUDREC_RECONCILE_STUCK_AFTER="10",
        )
        settings = Settings(
            **group.settings(), api_base_url=emulator.base_url, dev_api=False
        )  # the test's own view of the store (through the sentinels as well)
        configure(settings)
        rt = runtime()
        dev = observer_dev(emulator.base_url)
        mark = dev_requests_mark(dev)
        procs.append(start_worker_process(env, tmp))
        beat = start_beat_process(env, tmp)
        procs.append(beat)
        # Ticking before the batch: what is measured is the failover, not beat's start-up.
        wait_for(lambda: "Acquired lock" in beat.output(), 60, 0.2, "beat to take its lock")
        if on_started is not None:
            on_started(procs)
        submitter = Submitter(caller_app(group), plan, f"fo{int(time.time()) % 100000}")
        submitter.start()
        while len(submitter.acked) < plan.kill_after and submitter.is_alive():
            time.sleep(0.05)
        old = group.kill_master()
        kill_at, killed = time.time(), time.monotonic()
        promoted = group.wait_failover(old) - killed
        group.restart_as_replica(old)
        rejoined = time.monotonic() - killed
        submitter.join(180)
        acked = list(submitter.acked)
        all_terminal = wait_all_terminal(rt, acked, plan.terminal_timeout)
        time.sleep(1.0 if all_terminal else 0.0)  # a last look after the final stops
        verdict = check_promises(rt, dev, acked)
        stored = len(rt.store.records(acked))
        from_worker = worker_dev_requests(dev, mark)
    finally:
        for proc in reversed(procs):
            proc.stop()
        emulator.stop()
        group.stop()
    return Report(
        verdict=verdict,
        acked=acked,
        attempts=dict(submitter.attempts),
        refusals=dict(submitter.refusals),
        kill_at=kill_at,
        promoted_after=promoted,
        rejoined_after=rejoined,
        dev_requests_from_worker=from_worker,
        stored_on_new_master=stored,
        logs=tmp,
        load=os.getloadavg(),
    )

"""The emulator's clock: a background thread that runs :meth:`Housekeeper.tick` every
``tick_seconds``: the faults' failovers, the end of migrations, lazy recorder creation (when
the first subscribed user publishes), idle exits (docs/service/behaviour.md#maxidletime), progress
events (33), backup transfers (docs/service/files.md#failover), and forgetting old tasks and
resources.

A tick looks only at the tasks something can happen to. A live task in a channel nobody is in,
that records nothing and has no failover or expiring token, *rests*: the only thing ahead of it
is its idle exit, at a known time. It is looked at again when that time comes, when someone
joins its channel, or when the registry wakes it (a failover began, it exited). A deployment's
benchmark holds 100,000 such recordings (benchmarks/scale.py); a pass over all of them five times
a second, under the lock every REST call takes, cost more than the calls.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time

from contract.tokens import TokenProblem
from emulator.channels import SimUser
from emulator.driver import RecorderDriver
from emulator.failover import Failovers
from emulator.lifecycle import Lifecycle
from emulator.registry import Phase, Registry, Task

log = logging.getLogger(__name__)


class Housekeeper:
    def __init__(
        self,
        registry: Registry,
        *,
        lifecycle: Lifecycle,
        driver: RecorderDriver,
        failovers: Failovers,
    ) -> None:
        self._registry = registry
        self._lifecycle = lifecycle
        self._driver = driver
        self._failovers = failovers
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_transfer = registry.clock()
        self._transferring = False
        self._awake: dict[str, Task] = {}  # looked at every tick
        self._resting: dict[str, tuple[float, Task]] = {}  # sid -> (wakes at, task)
        self._resting_in: dict[str, dict[str, Task]] = {}  # cname -> sid -> resting task
        self._alarms: list[tuple[float, int, Task]] = []  # heap of (wakes at, seq, task)
        self._seq = itertools.count()

    def clear(self) -> None:
        """Forget every task (the registry was cleared). Caller holds the lock."""
        self._awake.clear()
        self._resting.clear()
        self._resting_in.clear()
        self._alarms.clear()

    def start(self) -> None:
        """Start the clock (idempotent)."""
        with self._registry.lock:
            if self._thread is not None:
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._loop, name="emulator-clock", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.wait(self._registry.config.tick_seconds):
            try:
                self.tick()
            except Exception:  # keep the clock alive whatever happens
                log.exception("emulator housekeeping failed")

    def tick(self) -> None:
        """One housekeeping pass: idle exits, lazy recorder creation, progress events,
        backup transfers, forgetting old state."""
        registry = self._registry
        now = registry.clock()
        with registry.lock:
            self._failovers.maybe_fail_over_all(now)
            idle = [task for task in self._tasks_to_tend(now) if self._tend(task, now)]
            registry.forget_old(now)
            for task in idle:
                log.info(
                    "recording %s: channel %r idle for more than %ss, exiting",
                    task.sid,
                    task.cname,
                    task.recording.maxIdleTime,
                )
                self._lifecycle.begin_exit(task, "idle")
                self._lifecycle.finish_in_thread(task, name=f"exit-{task.sid[:8]}")
            self._maybe_transfer_backups(now)

    def _tasks_to_tend(self, now: float) -> list[Task]:
        """The live tasks to look at this tick: the awake ones, and the resting ones whose time
        came, whose channel someone is in, or that the registry woke. Caller holds the lock."""
        registry = self._registry
        for task in registry.take_to_tend():
            self._wake(task)
        for cname in registry.channels.channel_names():  # the channels someone is in
            for task in list(self._resting_in.get(cname, {}).values()):
                self._wake(task)
        while self._alarms and self._alarms[0][0] <= now:
            wakes_at, _, task = heapq.heappop(self._alarms)
            if self._resting.get(task.sid) == (wakes_at, task):
                self._wake(task)
        live = []
        for sid, task in list(self._awake.items()):
            if task.phase is Phase.LIVE and registry.tasks.get(sid) is task:
                live.append(task)
            else:
                del self._awake[sid]
        return live

    def _wake(self, task: Task) -> None:
        if self._resting.pop(task.sid, None) is not None:
            in_channel = self._resting_in[task.cname]
            del in_channel[task.sid]
            if not in_channel:
                del self._resting_in[task.cname]
        self._awake[task.sid] = task

    def _rest(self, task: Task, until: float) -> None:
        """Look at ``task`` again at ``until`` (or when it is woken before)."""
        del self._awake[task.sid]
        self._resting[task.sid] = (until, task)
        self._resting_in.setdefault(task.cname, {})[task.sid] = task
        heapq.heappush(self._alarms, (until, next(self._seq), task))

    @staticmethod
    def _can_rest(task: Task, users: list[SimUser]) -> bool:
        """Nothing but its idle exit can happen to ``task`` until someone joins its channel
        or the registry wakes it."""
        return (
            not users
            and task.idle_since is not None
            and task.driver is None
            and task.recorder is None
            and not task.failovers
            and task.token_valid_until is None
        )

    def _tend(self, task: Task, now: float) -> bool:
        """One live task's pass; True if it has been idle too long. Caller holds the lock."""
        if task.token_valid_until is not None and time.time() >= task.token_valid_until:
            # The token cannot be renewed: the service drops the recorder (emulator.tokens).
            log.info("recording %s: the recorder's RTC token expired, dropped", task.sid)
            self._lifecycle.fail(task, "token expired", code=TokenProblem.EXPIRED)
            return False
        users = self._registry.channels.users(task.cname)
        migrating = task.migrating(now)
        if task.driver is None and task.failovers and not migrating:
            # A driver rejoins once it has finished the old segment's files; a task that
            # records nothing has none.
            self._failovers.rejoin(task)
        idle = self._idle_expired(task, users, now)
        if (
            not idle
            and task.driver is None
            and not migrating
            and self._registry.has_subscribed_publisher(task, users)
        ):
            self._driver.start(task)
        self._maybe_report_progress(task, now)
        if not idle and self._can_rest(task, users):
            assert task.idle_since is not None
            limit = task.recording.maxIdleTime * self._registry.config.idle_second
            self._rest(task, task.idle_since + limit)
        return idle

    def _idle_expired(self, task: Task, users: list[SimUser], now: float) -> bool:
        # docs/service/behaviour.md#maxidletime: communication: nobody present; live broadcast: no
        # host present.
        live_broadcast = task.recording.channelType == 1
        present = any(u.is_host for u in users) if live_broadcast else bool(users)
        if present:
            task.idle_since = None
            return False
        if task.idle_since is None:
            task.idle_since = now
        return (
            now - task.idle_since > task.recording.maxIdleTime * self._registry.config.idle_second
        )

    def _maybe_report_progress(self, task: Task, now: float) -> None:
        """Event 33 every ``progress_seconds`` while recording (docs/service/ncs.md#event-types).
        Caller holds the lock."""
        if task.recorder is None or task.uploader is None:
            return
        if now - task.last_progress >= self._registry.config.progress_seconds:
            task.last_progress = now
            self._registry.event(task, 33, progress=task.uploader.progress())

    def _maybe_transfer_backups(self, now: float) -> None:
        """Push backed-up files to the customers' storage again (docs/service/files.md#failover).
        Caller holds the lock; the transfer itself runs on its own thread, one pass at a time."""
        period = self._registry.config.backup_transfer_seconds
        if period <= 0 or self._transferring or now - self._last_transfer < period:
            return
        history = self._registry.history
        uploaders = [t.uploader for t in history if t.uploader and t.uploader.pending_backups]
        self._last_transfer = now
        if not uploaders:
            return
        self._transferring = True

        def transfer() -> None:
            try:
                for uploader in uploaders:
                    uploader.transfer_backups()
            finally:
                with self._registry.lock:
                    self._transferring = False

        self._lifecycle.run_in_thread(transfer, name="backup-transfer")

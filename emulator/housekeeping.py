"""The emulator's clock: a background thread that runs :meth:`Housekeeper.tick` every
``tick_seconds``: the faults' failovers, the end of migrations, lazy recorder creation (when
the first subscribed user publishes), idle exits (docs/service/behaviour.md#maxidletime), progress
events (33), backup transfers (docs/service/files.md#failover), and forgetting old tasks and
resources."""

from __future__ import annotations

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
            live = [t for t in registry.tasks.values() if t.phase is Phase.LIVE]
            idle = [task for task in live if self._tend(task, now)]
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

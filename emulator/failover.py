"""HA failover of a recording (docs/service/files.md#failover, docs/service/behaviour.md#identity):
the task leaves its server, its operations answer 404 and nothing is recorded for the migration;
then event 12 announces the recorder's new random uid, and the recorder driver writes ``bak<n>_``
files. Started by ``POST /dev/recordings/{sid}/failover`` or by the opening of the faults' 404
window with ``failover``. Callers hold the registry's lock."""

from __future__ import annotations

import logging
import secrets
import time

from emulator.channels import ChannelError
from emulator.faults import FaultInjector
from emulator.registry import Failover, Phase, Registry, Task

log = logging.getLogger(__name__)

_MAX_UID = 2**32 - 1


class Failovers:
    """Starts failovers and ends them (event 12); remembers the faults' window it acted on."""

    def __init__(self, registry: Registry, faults: FaultInjector) -> None:
        self._registry = registry
        self._faults = faults
        self._window: int | None = None  # the faults' 404 window already failed over

    def begin(self, task: Task, seconds: float) -> None:
        """The task leaves its server: 404 and no recording for ``seconds`` (the driver
        finishes the current recorder)."""
        now = self._registry.clock()
        if task.phase is not Phase.LIVE or task.sid not in self._registry.tasks:
            raise ChannelError(409, f"recording {task.sid} is not live")
        if task.migrating(now):
            raise ChannelError(409, f"recording {task.sid} is already failing over")
        failover = Failover(
            index=len(task.failovers),
            seconds=seconds,
            began_wall=time.time(),
            until=now + seconds,
            new_uid=self._new_recorder_uid(task),
        )
        task.failovers.append(failover)
        self._registry.wake(task)  # a resting task must see its migration end
        log.info(
            "recording %s: HA failover %d, migrating for %.1fs", task.sid, failover.index, seconds
        )

    def maybe_fail_over_all(self, now: float) -> None:
        """With ``failover`` in the faults, the opening of their 404 window fails over every
        live task for the rest of the window, once per window."""
        window = self._faults.failover_window()
        if window is None or window[0] == self._window:
            return
        self._window, seconds = window
        for task in self._registry.tasks.values():
            if task.phase is Phase.LIVE and not task.migrating(now):
                self.begin(task, seconds)

    def _new_recorder_uid(self, task: Task) -> str:
        """A random uid for the rejoining recorder (docs/service/behaviour.md#identity), clashing
        with no uid the task had and no user of its channel."""
        taken = {task.uid, task.recorder_uid, *(f.new_uid for f in task.failovers)}
        taken |= {user.uid for user in self._registry.channels.users(task.cname)}
        while True:
            uid = str(secrets.randbelow(_MAX_UID) + 1)
            if uid not in taken:
                return uid

    def rejoin(self, task: Task) -> None:
        """The migration is over: event 12 with the new uid, which later events carry
        (docs/service/behaviour.md#identity, docs/service/ncs.md#event-types). Idempotent."""
        failover = task.failovers[-1] if task.failovers else None
        if failover is None or failover.rejoined:
            return
        failover.rejoined = True
        self._registry.event(task, 12, newUid=int(failover.new_uid))
        task.recorder_uid = failover.new_uid

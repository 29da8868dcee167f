"""The resource / recording state machine of the emulator (no HTTP here).

One :class:`RecordingService` holds every resource and recording task. The HTTP layer calls
its operations with the path parameters and the parsed JSON body; each returns
``(http_status, body)`` or raises :class:`~emulator.errors.ApiError` with the real service's
error body. All methods are thread-safe.

This class is a facade; the service is split along its seams:

* ``registry``: resources, tasks and their history, the lock, the shared config and clock.
* ``operations``: the REST operations, each returning its typed answer.
* ``driver``: the recorder thread of each task that records.
* ``lifecycle``: how a task exits, its uploader's events, the worker threads.
* ``failover``: HA failover of a task. ``housekeeping``: the clock's periodic pass.
* ``listing``: file lists, the echoed identity, the dev view of a recording.

Lifecycle of a task (docs/service/api-contract.md#status-values, docs/service/api-contract.md#stop,
docs/service/behaviour.md#maxidletime, docs/service/ncs.md, docs/design.md#emulator):

* ``start`` creates it LIVE with its uploader; its status climbs 0 -> 5 over
  ``startup_seconds``. Events 30 (uploader started) and 40 (recorder started).
* The recorder (compositor) is created lazily, when the first subscribed user publishes
  (event 42, slice start). From then on a driver thread per recorder advances it to
  wall-clock time a few times per second; every finished file goes to the task's uploader
  (:mod:`emulator.uploads`), which never blocks the compositor. A task whose channel never
  had a publisher records nothing.
* ``stop`` (or the idle rule: no user / no host for longer than ``maxIdleTime``) moves it to
  EXITING: status 6 while the recorder finishes, 7 while the last files upload, then 8.
  Events 41 (recorder leave), 33 (progress 10000), 31 or 32 (uploaded / backuped), 11
  (session exit). For ``exit_linger_seconds`` after that a stop answers 49 and query status
  8; then the task is gone and every call answers 404. ``/dev/recordings`` keeps the history.
* An HA failover (``POST /dev/recordings/{sid}/failover``, or a 404 window of the faults with
  ``failover``; docs/service/files.md#failover, docs/service/behaviour.md#identity) moves a LIVE
  task to a "new server": for the migration its task operations answer 404 and nothing is recorded
  (the current recorder is finished, its playlist ended); then event 12 announces the recorder's new
  random uid and a new recorder writes ``bak<n>_`` files (n from 0 per failover of the task). Every
  segment's files are in query's and stop's ``fileList``, in order.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from emulator.channels import ChannelRegistry, SimUser
from emulator.config import EmulatorConfig
from emulator.driver import RecorderDriver, default_recorder_factory
from emulator.events import EventLog
from emulator.failover import Failovers
from emulator.faults import FaultInjector, FaultSettings
from emulator.housekeeping import Housekeeper
from emulator.lifecycle import Lifecycle
from emulator.listing import describe
from emulator.media import UserSnapshot
from emulator.media.access import MediaDirs
from emulator.operations import Operations
from emulator.recorder_pool import RecorderPool
from emulator.registry import Phase, RecorderFactory, Registry, Task
from emulator.storage import LocalDirectoryBackend, S3Backend, StorageBackend, VendorRouter

ApiResult = tuple[int, dict[str, Any]]

# GET /dev/recordings keeps this many recordings; read when a service is made, so that a
# benchmark can raise it beforehand.
_HISTORY_LIMIT = 1000
_DESCRIBE_CHUNK = 500  # recordings described per hold of the lock


def _default_storage(config: EmulatorConfig) -> StorageBackend:
    s3 = S3Backend(config.s3_endpoint_url, timeout=config.s3_timeout_seconds)
    return VendorRouter(LocalDirectoryBackend(config.storage_dir), s3)


def _default_events(config: EmulatorConfig, faults: FaultInjector) -> EventLog:
    """The NCS event log, delivering to ``ncs_url`` with the faults' duplicates, drops and
    delays."""
    return EventLog(
        config.ncs_url,
        config.ncs_secret,
        timeout=config.ncs_timeout_seconds,
        retry_delays=config.ncs_retry_seconds,
        duplicate=faults.ncs_duplicate,
        drop=faults.ncs_drop,
        delay=faults.ncs_delay,
    )


def _ok(answer: BaseModel) -> ApiResult:
    return 200, answer.model_dump(mode="json", exclude_none=True)


class RecordingService:
    """Resources, recording tasks, their recorders and housekeeping. Thread-safe."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        channels: ChannelRegistry | None = None,
        storage: StorageBackend | None = None,
        faults: FaultInjector | None = None,
        events: EventLog | None = None,
        recorder_factory: RecorderFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.channels = channels or ChannelRegistry()
        self.storage = storage or _default_storage(config)
        self.faults = faults or FaultInjector()
        self.events = events or _default_events(config, self.faults)
        self._pool = (
            RecorderPool(config.recorder_processes)
            if recorder_factory is None and config.recorder_processes > 0
            else None
        )
        factory = recorder_factory or functools.partial(
            self._pool.recorder if self._pool is not None else default_recorder_factory,
            media=MediaDirs.of(config.media_dirs),
        )
        registry = Registry(
            config,
            channels=self.channels,
            events=self.events,
            clock=clock,
            history_limit=_HISTORY_LIMIT,
        )
        self._registry = registry
        self._lifecycle = Lifecycle(registry, storage=self.storage, faults=self.faults)
        self._failovers = Failovers(registry, self.faults)
        driver = RecorderDriver(registry, self._failovers, factory, self._lifecycle.fail)
        self._operations = Operations(
            registry, lifecycle=self._lifecycle, driver=driver, faults=self.faults
        )
        self._housekeeper = Housekeeper(
            registry, lifecycle=self._lifecycle, driver=driver, failovers=self._failovers
        )

    # -- background --------------------------------------------------------------------

    def start_background(self) -> None:
        """Start the housekeeping clock (idle exits, recorder creation, expiry)."""
        self._housekeeper.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the clock and finish every live recording (its files are completed)."""
        self._housekeeper.stop(timeout)
        self._lifecycle.finish_everything(timeout)
        self.events.close()
        if self._pool is not None:
            self._pool.close()

    def reset(self, timeout: float = 30.0) -> None:
        """Back to a fresh emulator (``POST /dev/reset``): live recordings are finished (their
        files completed and uploaded as at shutdown), then resources, recordings, channels,
        events and faults are forgotten. Files already in storage stay."""
        self._lifecycle.finish_everything(timeout)
        with self._registry.lock:
            self._registry.clear()
            self._housekeeper.clear()
            self.channels.clear()
            self.events.clear()
            self.faults.configure(FaultSettings())

    def tick(self) -> None:
        """One housekeeping pass (see :mod:`emulator.housekeeping`)."""
        self._housekeeper.tick()

    # -- REST operations -----------------------------------------------------------------

    def acquire(self, appid: str, body: Any) -> ApiResult:
        return _ok(self._operations.acquire(appid, body))

    def start(self, appid: str, resource_id: str, mode: str, body: Any) -> ApiResult:
        return _ok(self._operations.start(appid, resource_id, mode, body))

    def query(self, appid: str, resource_id: str, sid: str, mode: str) -> ApiResult:
        return _ok(self._operations.query(appid, resource_id, sid, mode))

    def update(self, appid: str, resource_id: str, sid: str, mode: str, body: Any) -> ApiResult:
        return _ok(self._operations.update(appid, resource_id, sid, mode, body))

    def update_layout(
        self, appid: str, resource_id: str, sid: str, mode: str, body: Any
    ) -> ApiResult:
        return _ok(self._operations.update_layout(appid, resource_id, sid, mode, body))

    def stop(self, appid: str, resource_id: str, sid: str, mode: str, body: Any) -> ApiResult:
        return _ok(self._operations.stop(appid, resource_id, sid, mode, body))

    # -- dev API -------------------------------------------------------------------------

    def recordings(
        self, *, live: bool | None = None, resource_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The recordings started since the emulator started (``GET /dev/recordings``): all,
        or only the live (or ended) ones, or the one a resource started."""
        registry = self._registry
        with registry.lock:
            history = list(registry.history)
        out: list[dict[str, Any]] = []
        # A chunk at a time under the lock: a list of 100,000 recordings takes seconds to
        # describe, and the REST calls (a stop due now) must not wait for all of it.
        for start in range(0, len(history), _DESCRIBE_CHUNK):
            with registry.lock:
                out.extend(
                    describe(registry, task)
                    for task in history[start : start + _DESCRIBE_CHUNK]
                    if (live is None or (task.phase is Phase.LIVE) == live)
                    and (resource_id is None or task.resource_id == resource_id)
                )
        return out

    def recording(self, sid: str) -> dict[str, Any] | None:
        with self._registry.lock:
            task = self._registry.find(sid)
            return describe(self._registry, task) if task else None

    def failover(self, sid: str, seconds: float) -> dict[str, Any] | None:
        """``POST /dev/recordings/{sid}/failover``: fail the live recording over to a new
        server, the migration lasting ``seconds``; its dev view, or None if unknown."""
        with self._registry.lock:
            task = self._registry.find(sid)
            if task is None:
                return None
            self._failovers.begin(task, seconds)
            return describe(self._registry, task)

    def snapshots(self, task: Task, users: list[SimUser] | None = None) -> list[UserSnapshot]:
        """The channel as this recording sees it (docs/service/api-contract.md#recordingconfig; see
        ``recorded_users``)."""
        return self._registry.snapshots(task, users)

    def users_seen_by(self, sid: str) -> list[UserSnapshot]:
        """What the recording ``sid`` records right now (its subscription applied)."""
        with self._registry.lock:
            task = next(t for t in self._registry.history if t.sid == sid)
        return self._registry.snapshots(task)

    def wait_done(self, sid: str, timeout: float) -> bool:
        """Block until the task has exited (tests, offline use)."""
        task = self._registry.find(sid)
        return task is not None and task.done.wait(timeout)

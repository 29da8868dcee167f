"""The resource / recording state machine of the emulator (no HTTP here).

One :class:`RecordingService` holds every resource and recording task. The HTTP layer calls
its operations with the path parameters and the parsed JSON body; each returns
``(http_status, body)`` or raises :class:`~emulator.errors.ApiError` with the real service's
error body. All methods are thread-safe.

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

import dataclasses
import enum
import functools
import logging
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from emulator import errors
from emulator.channels import ChannelError, ChannelRegistry, SimUser, iso_utc
from emulator.config import EmulatorConfig
from emulator.events import (
    LEAVE_CALLED,
    LEAVE_INIT_FAILURE,
    LEAVE_NO_USERS,
    LEAVE_SIGINT,
    EventLog,
)
from emulator.faults import FaultInjector, FaultSettings, Operation
from emulator.media import (
    CompositeRecorder,
    LayoutSpec,
    MediaConfig,
    OutputFile,
    UserSnapshot,
    layout_spec_from_api,
    media_config_from_api,
)
from emulator.media.access import MediaDirs
from emulator.media.naming import failover_prefix
from emulator.storage import (
    LocalDirectoryBackend,
    S3Backend,
    StorageBackend,
    StorageError,
    VendorRouter,
)
from emulator.subscription import Subscription, recorded_users
from emulator.uploads import TaskUploader, Upload
from worker.api_models import (
    AcquireClientRequest,
    ApiRequest,
    LayoutUpdate,
    RecordingConfig,
    StartClientRequest,
    StopClientRequest,
    StorageConfig,
    UpdateClientRequest,
    channel_name_problem,
    describe_validation_error,
)

log = logging.getLogger(__name__)

ApiResult = tuple[int, dict[str, Any]]
ModelT = TypeVar("ModelT", bound=BaseModel)

MODES = ("mix", "individual", "web")
_HISTORY_LIMIT = 1000
_MAX_UID = 2**32 - 1
_BAK_PREFIX = re.compile(r"bak(\d+)_")  # a sid is hex, so an original name never matches
_LEAVE_CODES = {
    "stop": LEAVE_CALLED,
    "idle": LEAVE_NO_USERS,
    "shutdown": LEAVE_SIGINT,
    "error": LEAVE_INIT_FAILURE,
}


class Recorder(Protocol):
    """What the service needs from a compositor (``emulator.media.CompositeRecorder``)."""

    def advance_to(self, t: float, users: Sequence[UserSnapshot]) -> None: ...
    def set_layout(self, layout: LayoutSpec) -> None: ...
    def finish(self) -> list[OutputFile]: ...


RecorderFactory = Callable[..., Recorder]


class Phase(enum.Enum):
    LIVE = "live"
    EXITING = "exiting"
    EXITED = "exited"


@dataclass
class Resource:
    resource_id: str
    appid: str
    cname: str
    uid: str
    created: float  # monotonic
    expired_hour: int
    sid: str | None = None  # set by the (single) start


@dataclass
class Failover:
    """One HA failover of a task (docs/service/files.md#failover,
    docs/service/behaviour.md#identity)."""

    index: int  # the n of bak<n>_
    seconds: float  # length of the migration
    began_wall: float
    until: float  # monotonic: the migration (404, no recording) ends here
    new_uid: str  # the uid the recorder rejoins with
    rejoined: bool = False  # event 12 sent

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "prefix": failover_prefix(self.index),
            "seconds": self.seconds,
            "at": iso_utc(self.began_wall),
            "newUid": self.new_uid,
            "rejoined": self.rejoined,
        }


@dataclass(eq=False)
class Task:
    """One recording (a started resource)."""

    sid: str
    resource_id: str
    appid: str
    cname: str
    uid: str
    mode: str
    recording: RecordingConfig
    av_file_types: tuple[str, ...]
    media_config: MediaConfig
    storage: StorageConfig
    subscription: Subscription
    started: float  # monotonic
    started_wall: float
    api_deadline: float  # monotonic: resourceExpiredHour after start
    uploader: TaskUploader | None = None
    phase: Phase = Phase.LIVE
    exit_status: int = 6
    exit_reason: str | None = None
    error: str | None = None
    stopped_wall: float | None = None
    exited: float | None = None  # monotonic, when status became 8
    idle_since: float | None = None
    recorder: Recorder | None = None
    recorder_start_ms: int | None = None
    driver: threading.Thread | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    seen_publishers: set[tuple[str, int]] = field(default_factory=set)
    produced: list[OutputFile] = field(default_factory=list)  # final files from finish()
    media_time: float = 0.0  # what the recorder was last advanced to
    video_subscribed: set[str] = field(default_factory=set)  # recorded uids, video subscribed
    receiving: dict[str, bool] = field(default_factory=lambda: {"audio": False, "video": False})
    playlists_announced: set[str] = field(default_factory=set)  # event 4: once per playlist
    failovers: list[Failover] = field(default_factory=list)
    recorder_uid: str = ""  # the uid events carry: the start's uid, a new one after a failover
    errors_reported: set[int] = field(default_factory=set)  # uploader error codes sent (event 1)
    last_progress: float = 0.0  # monotonic time of the last event 33

    def __post_init__(self) -> None:
        self.recorder_uid = self.recorder_uid or self.uid

    def migrating(self, now: float) -> bool:
        """Whether the task is between servers (docs/service/files.md#failover): its operations
        answer 404."""
        return bool(self.failovers) and now < self.failovers[-1].until

    @property
    def json_file_list(self) -> bool:
        return "mp4" in self.av_file_types

    @property
    def uploads(self) -> list[Upload]:
        return self.uploader.uploads if self.uploader is not None else []

    @property
    def backuped(self) -> bool:
        return self.uploader is not None and self.uploader.backuped


def _segment_of(name: str) -> int:
    """0 for a file recorded before any failover, n + 1 for a bak<n>_ file."""
    match = _BAK_PREFIX.match(name)
    return int(match.group(1)) + 1 if match else 0


def _unique(files: Sequence[OutputFile]) -> list[OutputFile]:
    """``files`` without repeated names, the first of each kept."""
    seen: set[str] = set()
    unique = []
    for output in files:
        if output.name not in seen:
            seen.add(output.name)
            unique.append(output)
    return unique


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else iso_utc(epoch)


def _validate(model: type[ModelT], data: Any) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.invalid_parameter(describe_validation_error(exc)) from None


def _optional_client_request(body: Any) -> Any:
    """``body`` with a missing or ``null`` clientRequest read as ``{}``: every field of it is
    optional for acquire, update, updateLayout and stop (the Go client's low-level API sends
    ``null`` for a request built without one)."""
    if isinstance(body, dict) and body.get("clientRequest") is None:
        return {**body, "clientRequest": {}}
    return body


def _default_recorder_factory(
    config: MediaConfig,
    *,
    sid: str,
    cname: str,
    out_dir: Path,
    start_epoch_ms: int,
    on_file: Callable[[OutputFile], None],
    name_prefix: str = "",
    media: MediaDirs | None = None,
) -> Recorder:
    return CompositeRecorder(
        config,
        sid=sid,
        cname=cname,
        out_dir=out_dir,
        start_epoch_ms=start_epoch_ms,
        on_file=on_file,
        name_prefix=name_prefix,
        media=media or MediaDirs(),
    )


def _safe_reason(exc: Exception) -> str:
    """What went wrong, for events and the dev API: the kind of error, never a local path."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _default_storage(config: EmulatorConfig) -> StorageBackend:
    s3 = S3Backend(config.s3_endpoint_url, timeout=config.s3_timeout_seconds)
    return VendorRouter(LocalDirectoryBackend(config.storage_dir), s3)


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
        self.events = events or EventLog(
            config.ncs_url,
            config.ncs_secret,
            timeout=config.ncs_timeout_seconds,
            retry_delays=config.ncs_retry_seconds,
            duplicate=self.faults.ncs_duplicate,
            drop=self.faults.ncs_drop,
            delay=self.faults.ncs_delay,
        )
        self._recorder_factory = recorder_factory or functools.partial(
            _default_recorder_factory, media=MediaDirs.of(config.media_dirs)
        )
        self._clock = clock
        self._lock = threading.RLock()
        self._resources: dict[str, Resource] = {}
        self._tasks: dict[str, Task] = {}  # by sid, until removed after the linger
        self._history: list[Task] = []  # every task ever started, for /dev/recordings
        self._stopping = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._last_transfer = clock()
        self._transferring = False
        self._failover_window: int | None = None  # the faults' 404 window already failed over

    # -- background --------------------------------------------------------------------

    def start_background(self) -> None:
        """Start the housekeeping clock (idle exits, recorder creation, expiry)."""
        with self._lock:
            if self._housekeeper is not None:
                return
            self._stopping.clear()
            self._housekeeper = threading.Thread(
                target=self._housekeeping_loop, name="emulator-clock", daemon=True
            )
            self._housekeeper.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the clock and finish every live recording (its files are completed)."""
        self._stopping.set()
        if self._housekeeper is not None:
            self._housekeeper.join(timeout)
            self._housekeeper = None
        self._finish_everything(timeout)
        self.events.close()

    def reset(self, timeout: float = 30.0) -> None:
        """Back to a fresh emulator (``POST /dev/reset``): live recordings are finished (their
        files completed and uploaded as at shutdown), then resources, recordings, channels,
        events and faults are forgotten. Files already in storage stay."""
        self._finish_everything(timeout)
        with self._lock:
            self._resources.clear()
            self._tasks.clear()
            self._history.clear()
            self.channels.clear()
            self.events.clear()
            self.faults.configure(FaultSettings())

    def _finish_everything(self, timeout: float) -> None:
        with self._lock:
            live = [t for t in self._tasks.values() if t.phase is Phase.LIVE]
            for task in live:
                self._begin_exit(task, "shutdown")
        for task in live:
            self._finish(task)
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(timeout)

    def _housekeeping_loop(self) -> None:
        while not self._stopping.wait(self.config.tick_seconds):
            try:
                self.tick()
            except Exception:  # keep the clock alive whatever happens
                log.exception("emulator housekeeping failed")

    def tick(self) -> None:
        """One housekeeping pass: idle exits, lazy recorder creation, progress events,
        backup transfers, forgetting old state."""
        now = self._clock()
        idle: list[Task] = []
        with self._lock:
            self._maybe_fail_over_all(now)
            for task in list(self._tasks.values()):
                if task.phase is Phase.LIVE:
                    users = self.channels.users(task.cname)
                    migrating = task.migrating(now)
                    if task.driver is None and task.failovers and not migrating:
                        # A driver rejoins once it has finished the old segment's files; a
                        # task that records nothing has none.
                        self._rejoin(task)
                    if self._idle_expired(task, users, now):
                        idle.append(task)
                    elif (
                        task.driver is None
                        and not migrating
                        and self._has_subscribed_publisher(task, users)
                    ):
                        self._start_driver(task)
                    self._maybe_report_progress(task, now)
                elif (
                    task.phase is Phase.EXITED
                    and task.exited is not None
                    and now - task.exited > self.config.exit_linger_seconds
                ):
                    del self._tasks[task.sid]
            keep = max(self.config.resource_keep_seconds, self.config.resource_ttl_seconds)
            for rid, resource in list(self._resources.items()):
                if now - resource.created > keep:
                    del self._resources[rid]
            for task in idle:
                log.info(
                    "recording %s: channel %r idle for more than %ss, exiting",
                    task.sid,
                    task.cname,
                    task.recording.maxIdleTime,
                )
                self._begin_exit(task, "idle")
                self._spawn(self._finish, task, name=f"exit-{task.sid[:8]}")
            self._maybe_transfer_backups(now)

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
        return now - task.idle_since > task.recording.maxIdleTime * self.config.idle_second

    def _maybe_report_progress(self, task: Task, now: float) -> None:
        """Event 33 every ``progress_seconds`` while recording (docs/service/ncs.md#event-types).
        Caller holds the lock."""
        if task.recorder is None or task.uploader is None:
            return
        if now - task.last_progress >= self.config.progress_seconds:
            task.last_progress = now
            self._event(task, 33, progress=task.uploader.progress())

    def _maybe_transfer_backups(self, now: float) -> None:
        """Push backed-up files to the customers' storage again (docs/service/files.md#failover).
        Caller holds the lock; the transfer itself runs on its own thread, one pass at a time."""
        period = self.config.backup_transfer_seconds
        if period <= 0 or self._transferring or now - self._last_transfer < period:
            return
        uploaders = [t.uploader for t in self._history if t.uploader and t.uploader.pending_backups]
        self._last_transfer = now
        if not uploaders:
            return
        self._transferring = True

        def transfer() -> None:
            try:
                for uploader in uploaders:
                    uploader.transfer_backups()
            finally:
                with self._lock:
                    self._transferring = False

        thread = threading.Thread(target=transfer, name="backup-transfer", daemon=True)
        self._workers = [w for w in self._workers if w.is_alive()]
        self._workers.append(thread)
        thread.start()

    # -- the users a recording records -------------------------------------------------

    def snapshots(self, task: Task, users: list[SimUser] | None = None) -> list[UserSnapshot]:
        """The channel as this recording sees it (docs/service/api-contract.md#recordingconfig; see
        ``recorded_users``)."""
        if users is None:
            users = self.channels.users(task.cname)
        with self._lock:
            return recorded_users(users, task.subscription, task.seen_publishers)

    def _has_subscribed_publisher(self, task: Task, users: list[SimUser]) -> bool:
        return any(s.video is not None or s.audio is not None for s in self.snapshots(task, users))

    # -- recorder driving ------------------------------------------------------------

    def _start_driver(self, task: Task) -> None:
        task.driver = threading.Thread(
            target=self._drive, args=(task,), name=f"recorder-{task.sid[:8]}", daemon=True
        )
        task.driver.start()

    def _drive(self, task: Task) -> None:
        """Record until the task exits: one recorder per segment. An HA failover ends the
        segment (its files are finished), waits out the migration, then the next segment's
        recorder writes bak<n>_ files."""
        while self._wait_for_migration(task):
            opened = self._open_recorder(task)
            if opened is None:
                return
            recorder, generation, started = opened
            if not self._record(task, recorder, generation, started):
                return
            if not self._end_segment(task, recorder):
                return

    def _open_recorder(self, task: Task) -> tuple[Recorder, int, float] | None:
        """A new recorder for the task's current segment, with its event 42; how many
        failovers it follows; the clock time of its media time 0. None (the task failing) if
        it could not be created."""
        start_ms = int(time.time() * 1000)
        started = self._clock()  # media time 0 is start_ms, however long creation takes
        with self._lock:
            config = self._media_config_for_recorder(task)
            generation = len(task.failovers)
        uploader = task.uploader
        assert uploader is not None
        try:
            recorder = self._recorder_factory(
                config,
                sid=task.sid,
                cname=task.cname,
                out_dir=self._staging_dir(task),
                start_epoch_ms=start_ms,
                on_file=uploader.submit,
                name_prefix=failover_prefix(generation - 1) if generation else "",
            )
        except Exception as exc:
            log.exception("recording %s: the recorder could not start", task.sid)
            self._fail(task, f"recorder failed to start: {_safe_reason(exc)}")
            return None
        with self._lock:
            first_start = task.recorder_start_ms
            task.recorder = recorder
            task.media_time = 0.0
            task.video_subscribed = set()
            if first_start is None:
                task.recorder_start_ms = start_ms
                task.last_progress = started
            if task.media_config.layout != config.layout:  # updateLayout raced the creation
                recorder.set_layout(task.media_config.layout)
            # After a failover the recording resumes after a loss: discontinueUtcMs is the
            # resume time, startUtcMs stays the recording's start (docs/service/ncs.md#event-types,
            # event 42).
            self._event(
                task,
                42,
                startUtcMs=first_start or start_ms,
                discontinueUtcMs=start_ms,
                mixedAllUser=True,
                streamUid="0",
                trackType=config.track_type,
            )
        return recorder, generation, started

    def _record(self, task: Task, recorder: Recorder, generation: int, started: float) -> bool:
        """Advance ``recorder`` to wall-clock time until the task stops (False) or fails
        over again (True)."""
        tick = self.config.tick_seconds
        while True:
            stopping = task.stop_event.wait(tick)
            if not stopping:
                with self._lock:
                    if len(task.failovers) != generation:
                        return True
            try:
                self._advance(task, recorder, self._clock() - started)
            except Exception as exc:
                log.exception("recording %s: compositing failed", task.sid)
                self._fail(task, f"compositing failed: {_safe_reason(exc)}")
                return False
            if stopping:
                return False

    def _end_segment(self, task: Task, recorder: Recorder) -> bool:
        """The server went away: finish what it recorded (the playlist ends there) and hand
        the files to the uploader. False if that failed (the task is failing)."""
        try:
            produced = recorder.finish()
        except Exception as exc:
            log.exception("recording %s: finishing a segment failed", task.sid)
            self._fail(task, f"finishing failed: {_safe_reason(exc)}")
            return False
        assert task.uploader is not None
        for output in produced:  # anything on_file did not see in its final form
            task.uploader.submit(output)
        with self._lock:
            task.produced = _unique([*task.produced, *produced])
            self._report_stream_states(task, [])  # nothing is received while migrating
        return True

    def _wait_for_migration(self, task: Task) -> bool:
        """Wait until the task is on its new server (if it is migrating); False if it was
        stopped meanwhile."""
        while True:
            with self._lock:
                now = self._clock()
                if not task.migrating(now):
                    self._rejoin(task)
                    return True
                wait = min(self.config.tick_seconds, task.failovers[-1].until - now)
            if task.stop_event.wait(wait):
                return False

    def _advance(self, task: Task, recorder: Recorder, t: float) -> None:
        """Advance the recorder to media time ``t`` with the channel as the task sees it."""
        users = self.channels.users(task.cname)
        with self._lock:
            snaps = recorded_users(users, task.subscription, task.seen_publishers)
            video_now = {s.uid for s in snaps if task.subscription.video_for(s.uid)}
            dropped = {s.uid for s in snaps if s.uid in task.video_subscribed} - video_now
            task.video_subscribed = video_now
        if dropped:
            # An unsubscribed video stream is gone from the recorder, not paused: its last
            # frame is not held (docs/service/behaviour.md#canvas is about a publisher who stops). A
            # zero-length advance without those users drops their video state; they come back at
            # once as users without video (the background, or a transparent floating tile).
            recorder.advance_to(task.media_time, [s for s in snaps if s.uid not in dropped])
        recorder.advance_to(t, snaps)
        task.media_time = t
        self._report_stream_states(task, snaps)

    def _report_stream_states(self, task: Task, snaps: Sequence[UserSnapshot]) -> None:
        """Events 43/44 when the mixed audio / video stream starts or stops
        (docs/service/ncs.md#event-types)."""
        config = task.media_config
        now = {
            "audio": config.has_audio and any(s.audio is not None for s in snaps),
            "video": config.has_video and any(s.video is not None for s in snaps),
        }
        with self._lock:
            for kind, event_type in (("audio", 43), ("video", 44)):
                if now[kind] != task.receiving[kind]:
                    task.receiving[kind] = now[kind]
                    state = 0 if now[kind] else 1
                    self._event(
                        task, event_type, streamUid="0", state=state, UtcMs=int(time.time() * 1000)
                    )

    def _media_config_for_recorder(self, task: Task) -> MediaConfig:
        config = dataclasses.replace(
            task.media_config,
            slice_seconds=self.config.slice_seconds,
            mp4_max_seconds=self.config.mp4_max_seconds,
            mp4_max_bytes=self.config.mp4_max_bytes,
        )
        width, height = config.width, config.height
        if config.has_video and (width % 2 or height % 2):
            # yuv420p needs even sizes; the encoder rounds down as real encoders do.
            width, height = max(2, width - width % 2), max(2, height - height % 2)
            log.warning(
                "recording %s: canvas %dx%d rounded to %dx%d",
                task.sid,
                config.width,
                config.height,
                width,
                height,
            )
            config = dataclasses.replace(config, width=width, height=height)
        return config

    def _staging_dir(self, task: Task) -> Path:
        return self.config.staging_root / task.sid

    def _fail(self, task: Task, reason: str) -> None:
        """The recorder died: the task exits abnormally (status 20) with what it has."""
        with self._lock:
            task.error = reason
            self._event(task, 1, module=0, errorLevel=5, errorCode=20, stat=0, errorMsg=reason)
            if task.phase is Phase.LIVE:
                self._begin_exit(task, "error")
                self._spawn(self._finish, task, name=f"fail-{task.sid[:8]}")

    def _spawn(self, target: Callable[[Task], None], task: Task, name: str) -> None:
        thread = threading.Thread(target=target, args=(task,), name=name, daemon=True)
        with self._lock:
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(thread)
        thread.start()

    # -- uploads and events ------------------------------------------------------------

    def _new_uploader(self, task: Task) -> TaskUploader:
        def storage() -> StorageConfig:
            with self._lock:
                return task.storage  # update may refresh it (docs/service/api-contract.md#update)

        def listener(what: str, output: OutputFile, error: StorageError | None) -> None:
            self._on_upload(task, what, output, error)

        return TaskUploader(
            sid=task.sid,
            storage=storage,
            backend=self.storage,
            faults=self.faults,
            backup_dir=self.config.backup_root,
            listener=listener,
        )

    def _on_upload(
        self, task: Task, what: str, output: OutputFile, error: StorageError | None
    ) -> None:
        """Events for one handled file: 4 at the first M3U8 (docs/service/files.md#slicing), 1 and 2
        at the first failure of each kind (uploader error 32 storage configuration / 47 upload
        failed, warning 32 re-uploading to the backup cloud)."""
        with self._lock:
            if output.kind == "m3u8" and output.name not in task.playlists_announced:
                # Once per playlist: a failover's bak<n>_ playlist is announced too.
                task.playlists_announced.add(output.name)
                self._event(task, 4, fileList=output.name)
            if what != "failed" or error is None:
                return
            code = 32 if error.config_error else 47
            if code not in task.errors_reported:
                task.errors_reported.add(code)
                self._event(
                    task, 1, module=1, errorLevel=3, errorCode=code, stat=0, errorMsg=str(error)
                )
                self._event(task, 2, module=1, warnCode=32)

    def _event(self, task: Task, event_type: int, **details: Any) -> None:
        # After a failover the events carry the recorder's new uid
        # (docs/service/behaviour.md#identity).
        self.events.emit(
            event_type, sid=task.sid, cname=task.cname, uid=task.recorder_uid, **details
        )

    def _status_update_event(self, task: Task) -> None:
        """Event 3: a call that does not fit the task's state (docs/service/ncs.md#event-types).
        Caller holds the lock."""
        playlist = next((u.file.name for u in task.uploads if u.file.kind == "m3u8"), "")
        self._event(task, 3, status=self._status(task), recordingMode=1, fileList=playlist)

    # -- exit --------------------------------------------------------------------------

    def _begin_exit(self, task: Task, reason: str) -> None:
        """LIVE -> EXITING (status 6). Caller holds the lock."""
        task.phase = Phase.EXITING
        task.exit_status = 6
        task.exit_reason = reason
        task.stopped_wall = time.time()
        task.stop_event.set()

    def _exit_empty(self, task: Task) -> None:
        """EXITING -> EXITED for a task that never recorded. Caller holds the lock."""
        self._event(task, 41, leaveCode=_LEAVE_CODES.get(task.exit_reason or "", 0))
        if task.uploader is not None:
            task.uploader.close(timeout=0)  # nothing queued; never join under the lock
        task.phase = Phase.EXITED
        task.exit_status = 8
        task.exit_reason = "empty" if task.exit_reason == "stop" else task.exit_reason
        task.exited = self._clock()
        self._event(task, 11, exitStatus=0)
        task.done.set()

    def _finish(self, task: Task) -> None:
        """Finish the recorder (status 6), upload its last files (7), then EXITED (8)."""
        if task.driver is None:
            with self._lock:
                self._exit_empty(task)
            return
        try:
            task.driver.join()
            recorder = task.recorder
            uploader = task.uploader
            assert uploader is not None
            if recorder is not None:
                try:
                    produced = recorder.finish()
                except Exception as exc:
                    log.exception("recording %s: finishing the recorder failed", task.sid)
                    task.error = task.error or f"finishing failed: {_safe_reason(exc)}"
                    produced = []
                for output in produced:  # anything on_file did not see in its final form
                    uploader.submit(output)
                with self._lock:
                    task.exit_status = 7
                    # earlier segments' files first; a recorder finished by a failover that
                    # was never replaced answers its files again
                    task.produced = _unique([*task.produced, *produced])
            with self._lock:
                self._event(task, 41, leaveCode=_LEAVE_CODES.get(task.exit_reason or "", 0))
            uploader.close()
            self._final_upload_events(task)
            if task.error is None:
                shutil.rmtree(self._staging_dir(task), ignore_errors=True)
        finally:
            with self._lock:
                self._event(task, 11, exitStatus=1 if task.error else 0)
                task.phase = Phase.EXITED
                task.exit_status = 20 if task.error else 8
                task.exited = self._clock()
            task.done.set()

    def _final_upload_events(self, task: Task) -> None:
        """Event 33 (progress 10000: all handled) then 31 uploaded or 32 backuped."""
        if task.recorder is None or task.uploader is None:
            return
        with self._lock:
            self._event(task, 33, progress=task.uploader.progress())
            files = self._file_entries(task, final=True)
            self._event(task, 32 if task.backuped else 31, status=0, fileList=files)

    # -- lookups -------------------------------------------------------------------------

    def _check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise errors.invalid_parameter(
                f"mode: must be one of {', '.join(MODES)} (got {mode!r})"
            )
        if mode != "mix":
            raise errors.invalid_parameter(
                f"mode: {mode!r} recording is not implemented by the emulator; use mix"
            )

    def _task(self, appid: str, resource_id: str, sid: str, operation: Operation) -> Task:
        """The addressed task, or 404 "failed to find worker". Caller holds the lock."""
        if self.faults.not_found(operation):
            raise errors.worker_not_found()
        task = self._tasks.get(sid)
        now = self._clock()
        if (
            task is None
            or task.resource_id != resource_id
            or task.appid != appid
            or now > task.api_deadline
            or (task.exited is not None and now - task.exited > self.config.exit_linger_seconds)
            # docs/service/errors.md#not-found, docs/service/api-contract.md#status-values
            or now - task.started < self.faults.start_not_found_seconds
            or task.migrating(now)  # docs/service/files.md#failover: between servers
        ):
            raise errors.worker_not_found()
        return task

    @staticmethod
    def _check_identity(task: Task, cname: str, uid: str) -> None:
        if (cname, uid) != (task.cname, task.uid):
            raise errors.parameter_mismatch()

    def _status(self, task: Task) -> int:
        if task.phase is not Phase.LIVE:
            return task.exit_status
        startup = self.config.startup_seconds
        if startup <= 0:
            return 5
        return min(5, int((self._clock() - task.started) * 5 / startup))

    def _file_entries(self, task: Task, final: bool) -> list[dict[str, Any]]:
        """The ``fileList`` array (docs/service/api-contract.md#file-lists): the M3U8, then the
        MP4s, of each segment in turn (the original files, then bak0_, bak1_... after failovers).
        Caller holds the lock."""
        uploads = task.uploads
        files = [u.file for u in uploads if u.file.kind in ("m3u8", "mp4")]
        if final:
            names = {f.name for f in files}
            files += [f for f in task.produced if f.kind == "mp4" and f.name not in names]
        # A stable sort: the MP4s of a segment stay in the order they were completed.
        entries = sorted(files, key=lambda f: (_segment_of(f.name), f.kind != "m3u8"))
        return [
            {
                "fileName": f.name,
                "trackType": f.track_type,
                "uid": "0",
                "mixedAllUser": True,
                "isPlayable": True,
                "sliceStartTime": f.slice_start_ms,
            }
            for f in entries
        ]

    def _file_list(self, task: Task, final: bool) -> dict[str, Any]:
        """``fileListMode`` / ``fileList`` per avFileType (docs/service/api-contract.md#file-lists).
        Caller holds the lock."""
        if not task.json_file_list:
            playlist = next((u.file for u in task.uploads if u.file.kind == "m3u8"), None)
            return {"fileListMode": "string", "fileList": playlist.name if playlist else ""}
        return {"fileListMode": "json", "fileList": self._file_entries(task, final)}

    @staticmethod
    def _echo(task: Task) -> dict[str, Any]:
        return {
            "cname": task.cname,
            "uid": task.uid,
            "resourceId": task.resource_id,
            "sid": task.sid,
        }

    # -- REST operations -----------------------------------------------------------------

    def acquire(self, appid: str, body: Any) -> ApiResult:
        cname = body.get("cname") if isinstance(body, dict) else None
        if isinstance(cname, str) and channel_name_problem(cname):
            # docs/service/api-contract.md#acquire: acquire answers 401, not 2
            raise errors.invalid_channel_name()
        request = _validate(ApiRequest[AcquireClientRequest], _optional_client_request(body))
        resource = Resource(
            resource_id=secrets.token_urlsafe(168),  # 224 URL-safe characters, opaque
            appid=appid,
            cname=request.cname,
            uid=request.uid,
            created=self._clock(),
            expired_hour=request.clientRequest.resourceExpiredHour,
        )
        with self._lock:
            self._resources[resource.resource_id] = resource
        return 200, {"cname": request.cname, "uid": request.uid, "resourceId": resource.resource_id}

    def start(self, appid: str, resource_id: str, mode: str, body: Any) -> ApiResult:
        self._check_mode(mode)
        with self._lock:
            resource = self._resources.get(resource_id)
        if resource is None:
            raise errors.resource_unparsable()
        request = _validate(ApiRequest[StartClientRequest], body)
        client = request.clientRequest
        if (appid, request.cname, request.uid) != (resource.appid, resource.cname, resource.uid):
            raise errors.parameter_mismatch()
        recording = client.recordingConfig
        recording_wire = recording.model_dump(mode="json", exclude_none=True)
        file_wire = client.recordingFileConfig.model_dump(mode="json", exclude_none=True)
        try:
            media_config = media_config_from_api(recording_wire, file_wire)
        except ValueError as exc:
            raise errors.invalid_parameter(f"clientRequest.recordingConfig: {exc}") from None
        now = self._clock()
        with self._lock:
            if resource.sid is not None:
                started = self._tasks.get(resource.sid)
                if started is not None:
                    self._status_update_event(started)
                raise errors.already_started(resource_id)
            if now - resource.created > self.config.resource_ttl_seconds:
                raise errors.resource_expired()
            key = (appid, request.cname, request.uid)
            if any(
                (t.appid, t.cname, t.uid) == key and t.phase is not Phase.EXITED
                for t in self._tasks.values()
            ):
                raise errors.task_conflict()
            task = Task(
                sid=secrets.token_hex(16),
                resource_id=resource_id,
                appid=appid,
                cname=request.cname,
                uid=request.uid,
                mode=mode,
                recording=recording,
                av_file_types=tuple(client.recordingFileConfig.avFileType),
                media_config=media_config,
                storage=client.storageConfig,
                subscription=Subscription.from_recording(recording),
                started=now,
                started_wall=time.time(),
                api_deadline=now + resource.expired_hour * self.config.hour_seconds,
            )
            task.uploader = self._new_uploader(task)
            resource.sid = task.sid
            self._tasks[task.sid] = task
            self._history.append(task)
            del self._history[:-_HISTORY_LIMIT]
            self._event(task, 30, status=0)
            self._event(task, 40, status=0)
            if self._has_subscribed_publisher(task, self.channels.users(task.cname)):
                self._start_driver(task)  # someone publishes already: record from now
        log.info("recording %s started: cname=%r uid=%s", task.sid, task.cname, task.uid)
        return 200, self._echo(task)

    def query(self, appid: str, resource_id: str, sid: str, mode: str) -> ApiResult:
        self._check_mode(mode)
        with self._lock:
            task = self._task(appid, resource_id, sid, "query")
            server: dict[str, Any] = {
                "status": self._status(task),
                **self._file_list(task, final=task.phase is Phase.EXITED),
            }
            if task.recorder_start_ms is not None:
                server["sliceStartTime"] = task.recorder_start_ms
            return 200, {**self._echo(task), "serverResponse": server}

    def update(self, appid: str, resource_id: str, sid: str, mode: str, body: Any) -> ApiResult:
        self._check_mode(mode)
        request = _validate(ApiRequest[UpdateClientRequest], _optional_client_request(body))
        client = request.clientRequest
        with self._lock:
            task = self._task(appid, resource_id, sid, "update")
            self._check_identity(task, request.cname, request.uid)
            if task.phase is not Phase.LIVE:
                raise errors.worker_not_found()
            subscribe = client.streamSubscribe
            if subscribe is not None:
                task.subscription.apply(subscribe)
            if client.storageConfig is not None:
                task.storage = client.storageConfig
            return 200, self._echo(task)

    def update_layout(
        self, appid: str, resource_id: str, sid: str, mode: str, body: Any
    ) -> ApiResult:
        self._check_mode(mode)
        request = _validate(ApiRequest[LayoutUpdate], _optional_client_request(body))
        # docs/service/api-contract.md#updatelayout: the whole layout is replaced; omitted fields
        # are back to their defaults.
        spec = layout_spec_from_api(
            request.clientRequest.model_dump(mode="json", exclude_none=True)
        )
        with self._lock:
            task = self._task(appid, resource_id, sid, "updateLayout")
            self._check_identity(task, request.cname, request.uid)
            if task.phase is not Phase.LIVE:
                raise errors.worker_not_found()
            task.media_config = dataclasses.replace(task.media_config, layout=spec)
            if task.recorder is not None:
                task.recorder.set_layout(spec)  # thread-safe in CompositeRecorder
            return 200, self._echo(task)

    def stop(self, appid: str, resource_id: str, sid: str, mode: str, body: Any) -> ApiResult:
        self._check_mode(mode)
        request = _validate(ApiRequest[StopClientRequest], _optional_client_request(body))
        with self._lock:
            task = self._task(appid, resource_id, sid, "stop")
            self._check_identity(task, request.cname, request.uid)
            if task.phase is not Phase.LIVE:
                self._status_update_event(task)
                # already exiting (docs/service/api-contract.md#stop: code 49)
                raise errors.invalid_operation()
            self._begin_exit(task, "stop")
            if task.driver is None:  # nobody ever published: nothing to finish
                self._exit_empty(task)
                raise errors.no_recorded_data()
        self._spawn(self._finish, task, name=f"stop-{sid[:8]}")
        if request.clientRequest.async_stop:
            with self._lock:
                server = {**self._file_list(task, final=False), "uploadingStatus": "unknown"}
            return 200, {**self._echo(task), "serverResponse": server}
        if not task.done.wait(self.config.sync_stop_timeout_seconds):
            # docs/service/api-contract.md#stop: over 20 s, code 50
            raise errors.upload_timeout(**self._echo(task))
        with self._lock:
            if not task.uploads:
                task.exit_reason = "empty"
                raise errors.no_recorded_data()
            server = {
                **self._file_list(task, final=True),
                "uploadingStatus": "backuped" if task.backuped else "uploaded",
            }
            return 200, {**self._echo(task), "serverResponse": server}

    # -- dev API -------------------------------------------------------------------------

    def recordings(
        self, *, live: bool | None = None, resource_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The recordings started since the emulator started (``GET /dev/recordings``): all,
        or only the live (or ended) ones, or the one a resource started."""
        with self._lock:
            return [
                self._describe(task)
                for task in self._history
                if (live is None or (task.phase is Phase.LIVE) == live)
                and (resource_id is None or task.resource_id == resource_id)
            ]

    def recording(self, sid: str) -> dict[str, Any] | None:
        with self._lock:
            task = next((t for t in self._history if t.sid == sid), None)
            return self._describe(task) if task else None

    def failover(self, sid: str, seconds: float) -> dict[str, Any] | None:
        """``POST /dev/recordings/{sid}/failover``: fail the live recording over to a new
        server, the migration lasting ``seconds``; its dev view, or None if unknown."""
        with self._lock:
            task = next((t for t in self._history if t.sid == sid), None)
            if task is None:
                return None
            self._begin_failover(task, seconds)
            return self._describe(task)

    def _begin_failover(self, task: Task, seconds: float) -> None:
        """The task leaves its server: 404 and no recording for ``seconds`` (the driver
        finishes the current recorder). Caller holds the lock."""
        now = self._clock()
        if task.phase is not Phase.LIVE or task.sid not in self._tasks:
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
        log.info(
            "recording %s: HA failover %d, migrating for %.1fs", task.sid, failover.index, seconds
        )

    def _maybe_fail_over_all(self, now: float) -> None:
        """With ``failover`` in the faults, the opening of their 404 window fails over every
        live task for the rest of the window, once per window. Caller holds the lock."""
        window = self.faults.failover_window()
        if window is None or window[0] == self._failover_window:
            return
        self._failover_window, seconds = window
        for task in self._tasks.values():
            if task.phase is Phase.LIVE and not task.migrating(now):
                self._begin_failover(task, seconds)

    def _new_recorder_uid(self, task: Task) -> str:
        """A random uid for the rejoining recorder (docs/service/behaviour.md#identity), clashing
        with no uid the task had and no user of its channel. Caller holds the lock."""
        taken = {task.uid, task.recorder_uid, *(f.new_uid for f in task.failovers)}
        taken |= {user.uid for user in self.channels.users(task.cname)}
        while True:
            uid = str(secrets.randbelow(_MAX_UID) + 1)
            if uid not in taken:
                return uid

    def _rejoin(self, task: Task) -> None:
        """The migration is over: event 12 with the new uid, which later events carry
        (docs/service/behaviour.md#identity, docs/service/ncs.md#event-types). Idempotent. Caller
        holds the lock."""
        failover = task.failovers[-1] if task.failovers else None
        if failover is None or failover.rejoined:
            return
        failover.rejoined = True
        self._event(task, 12, newUid=int(failover.new_uid))
        task.recorder_uid = failover.new_uid

    def _describe(self, task: Task) -> dict[str, Any]:
        removed = task.sid not in self._tasks
        status = self._status(task)
        uploads = task.uploads
        uploading: str | None = None
        if task.phase is Phase.EXITED and uploads:
            uploading = "backuped" if task.backuped else "uploaded"
        storage = task.storage
        return {
            "sid": task.sid,
            "resourceId": task.resource_id,
            "appId": task.appid,
            "cname": task.cname,
            "uid": task.uid,
            "mode": task.mode,
            "status": status,
            "live": task.phase is Phase.LIVE,
            "recorderUid": task.recorder_uid,
            "migrating": task.migrating(self._clock()),
            "failovers": [failover.to_json() for failover in task.failovers],
            "removed": removed,
            "startedAt": _iso(task.started_wall),
            "stoppedAt": _iso(task.stopped_wall),
            "exitReason": task.exit_reason,
            "error": task.error,
            "recorderStartedAt": (
                _iso(task.recorder_start_ms / 1000) if task.recorder_start_ms else None
            ),
            "uploadingStatus": uploading,
            "storage": {
                "vendor": storage.vendor,
                "region": storage.region,
                "bucket": storage.bucket,
                "fileNamePrefix": storage.fileNamePrefix or [],
            },
            "files": [upload.to_json() for upload in uploads],
        }

    def users_seen_by(self, sid: str) -> list[UserSnapshot]:
        """What the recording ``sid`` records right now (its subscription applied)."""
        with self._lock:
            task = next(t for t in self._history if t.sid == sid)
        return self.snapshots(task)

    def wait_done(self, sid: str, timeout: float) -> bool:
        """Block until the task has exited (tests, offline use)."""
        with self._lock:
            task = next((t for t in self._history if t.sid == sid), None)
        return task is not None and task.done.wait(timeout)

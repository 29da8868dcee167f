"""What the emulator knows: resources, recording tasks and their history, behind one lock.

The data of a recording (:class:`Task`, :class:`Failover`), of a resource, and the
:class:`Registry` that holds them with what every part of the service shares: the config, the
clock, the simulated channels and the event log. The other modules of the service
(``operations``, ``lifecycle``, ``driver``, ``failover``, ``listing``) act on tasks found here,
holding :attr:`Registry.lock` while they read or change one.
"""

from __future__ import annotations

import enum
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from contract.models import RecordingConfig, StorageConfig
from contract.naming import failover_prefix
from emulator.channels import ChannelRegistry, SimUser, iso_utc
from emulator.config import EmulatorConfig
from emulator.events import EventLog
from emulator.media import LayoutSpec, MediaConfig, OutputFile, UserSnapshot
from emulator.subscription import Subscription, recorded_users
from emulator.uploads import TaskUploader, Upload

_BAK_PREFIX = re.compile(r"bak(\d+)_")  # a sid is hex, so an original name never matches


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


@dataclass
class RealTime:
    """Whether a recording keeps up with the wall clock (``GET /dev/recordings``).

    The recorder composes every frame, however late (a file never lacks a frame), so falling
    behind shows as lateness: a frame composed more than ``late_frame_seconds`` after its media
    time is one a real-time recorder would have dropped (counted in ``late_frames``);
    ``max_lag_seconds`` is the worst delay between a frame's time and its composition.
    """

    frames: int = 0  # video frames composed
    late_frames: int = 0
    max_lag_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "lateFrames": self.late_frames,
            "maxLagSeconds": round(self.max_lag_seconds, 3),
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
    # With an App Certificate (emulator.tokens): Unix time the recorder's token ends its stay
    # (it is dropped then), and what the dev view shows of the token (never the token).
    token_valid_until: float | None = None
    token_view: dict[str, Any] | None = None
    realtime: RealTime = field(default_factory=RealTime)

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


def segment_of(name: str) -> int:
    """0 for a file recorded before any failover, n + 1 for a bak<n>_ file."""
    match = _BAK_PREFIX.match(name)
    return int(match.group(1)) + 1 if match else 0


def unique_files(files: Sequence[OutputFile]) -> list[OutputFile]:
    """``files`` without repeated names, the first of each kept."""
    seen: set[str] = set()
    unique = []
    for output in files:
        if output.name not in seen:
            seen.add(output.name)
            unique.append(output)
    return unique


def task_key(task: Task) -> tuple[str, str, str]:
    """What a second start of the same recorder would clash on: app, channel, uid."""
    return (task.appid, task.cname, task.uid)


class Registry:
    """Resources, tasks (by sid, until removed after the linger) and the history of every task
    started (the last ``history_limit``, for ``/dev/recordings``), with the lock that guards
    them and every task's state."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        channels: ChannelRegistry,
        events: EventLog,
        clock: Callable[[], float],
        history_limit: int,
    ) -> None:
        self.config = config
        self.channels = channels
        self.events = events
        self.clock = clock
        self.history_limit = history_limit
        self.lock = threading.RLock()
        self.resources: dict[str, Resource] = {}  # in the order they were acquired
        self.tasks: dict[str, Task] = {}
        self.history: list[Task] = []
        # Every per-call lookup is by key, never a pass over the tasks: an emulator holds
        # 100,000 live recordings in benchmarks/scale.py, and a pass per start is quadratic.
        self._unexited: dict[tuple[str, str, str], Task] = {}  # (appid, cname, uid) -> task
        self._exits: deque[Task] = deque()  # EXITED tasks in the order they exited
        self._to_tend: list[Task] = []  # started or woken since housekeeping last looked

    def add_task(self, task: Task, resource: Resource) -> None:
        """Record the start of ``resource`` as ``task``. Caller holds the lock."""
        resource.sid = task.sid
        self.tasks[task.sid] = task
        self._unexited[task_key(task)] = task
        self.history.append(task)
        del self.history[: -self.history_limit]
        self.wake(task)

    def unexited(self, appid: str, cname: str, uid: str) -> Task | None:
        """The task of this app, channel and uid that has not exited, if any (at most one:
        a second start is refused). Caller holds the lock."""
        return self._unexited.get((appid, cname, uid))

    def mark_exited(self, task: Task) -> None:
        """The task is EXITED from now on. Caller holds the lock."""
        task.phase = Phase.EXITED
        task.exited = self.clock()
        key = task_key(task)
        if self._unexited.get(key) is task:
            del self._unexited[key]
        self._exits.append(task)
        self.wake(task)  # housekeeping lets go of it

    def wake(self, task: Task) -> None:
        """Housekeeping looks at ``task`` at its next tick, even if it was resting (a
        failover began, ...). Caller holds the lock."""
        self._to_tend.append(task)

    def take_to_tend(self) -> list[Task]:
        """The tasks started or woken since the last call. Caller holds the lock."""
        tasks, self._to_tend = self._to_tend, []
        return tasks

    def find(self, sid: str) -> Task | None:
        """The task ``sid`` from the history (live or not, removed or not)."""
        with self.lock:
            return next((t for t in self.history if t.sid == sid), None)

    def clear(self) -> None:
        with self.lock:
            self.resources.clear()
            self.tasks.clear()
            self.history.clear()
            self._unexited.clear()
            self._exits.clear()
            self._to_tend.clear()

    def forget_old(self, now: float) -> None:
        """Drop tasks past their exit linger and resources past their keep time. Caller holds
        the lock. Both are looked at oldest first, up to the first one still kept."""
        linger = self.config.exit_linger_seconds
        while self._exits:
            task = self._exits[0]
            if task.exited is not None and now - task.exited <= linger:
                break
            self._exits.popleft()
            if self.tasks.get(task.sid) is task:
                del self.tasks[task.sid]
        keep = max(self.config.resource_keep_seconds, self.config.resource_ttl_seconds)
        old = []
        for rid, resource in self.resources.items():
            if now - resource.created <= keep:
                break
            old.append(rid)
        for rid in old:
            del self.resources[rid]

    def status(self, task: Task) -> int:
        """The task's status number (docs/service/api-contract.md#status-values): climbing 0 -> 5
        while it starts, then the exit statuses 6, 7, 8 or 20."""
        if task.phase is not Phase.LIVE:
            return task.exit_status
        startup = self.config.startup_seconds
        if startup <= 0:
            return 5
        return min(5, int((self.clock() - task.started) * 5 / startup))

    def event(self, task: Task, event_type: int, **details: Any) -> None:
        # After a failover the events carry the recorder's new uid
        # (docs/service/behaviour.md#identity).
        self.events.emit(
            event_type, sid=task.sid, cname=task.cname, uid=task.recorder_uid, **details
        )

    def snapshots(self, task: Task, users: list[SimUser] | None = None) -> list[UserSnapshot]:
        """The channel as this recording sees it (docs/service/api-contract.md#recordingconfig; see
        ``recorded_users``)."""
        if users is None:
            users = self.channels.users(task.cname)
        with self.lock:
            return recorded_users(users, task.subscription, task.seen_publishers)

    def has_subscribed_publisher(self, task: Task, users: list[SimUser]) -> bool:
        return any(s.video is not None or s.audio is not None for s in self.snapshots(task, users))

    def staging_dir(self, task: Task) -> Path:
        return self.config.staging_root / task.sid

"""The recorder driver: one thread per recording that records.

It is started when the first subscribed user publishes (event 42, slice start). It advances
the task's compositor to wall-clock time a few times per second with the channel as the task
sees it; every finished file goes to the task's uploader, which never blocks the compositor.
An HA failover ends a segment (its files are finished, its playlist ended), waits out the
migration, then a new recorder writes the next segment's ``bak<n>_`` files. A recorder that
fails hands the task to ``on_failure`` (``Lifecycle.fail``: the abnormal exit).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from contract.naming import failover_prefix
from emulator.failover import Failovers
from emulator.lifecycle import safe_reason
from emulator.media import CompositeRecorder, MediaConfig, OutputFile, UserSnapshot
from emulator.media.access import MediaDirs
from emulator.registry import Recorder, RecorderFactory, Registry, Task, unique_files
from emulator.subscription import recorded_users

log = logging.getLogger(__name__)


def default_recorder_factory(
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
        # Each recording has this driver thread, which advances it a few frames per tick:
        # encoding on it saves two threads per recording and their hand-overs every tick.
        encoder_threads=False,
    )


class _Pace:
    """Counts, for one segment, the frames composed later than real time allows
    (``Task.realtime``); logs once when the recording first falls behind."""

    def __init__(self, task: Task, late_seconds: float) -> None:
        self._task = task
        self._late_seconds = late_seconds
        config = task.media_config
        self._fps = config.fps if config.has_video else 0
        self._frames = 0  # frames of this segment composed so far
        self._media_time = 0.0
        self._warned = False

    def advanced(self, t: float, now: float) -> None:
        """The recorder was advanced to media time ``t``; ``now`` is the media clock after."""
        realtime = self._task.realtime
        # the oldest thing composed by this advance: its first frame (or audio sample)
        first_due = self._frames / self._fps if self._fps else self._media_time
        self._media_time = t
        frames = _frames_until(t, self._fps) if self._fps else self._frames
        if frames > self._frames or not self._fps:
            realtime.max_lag_seconds = max(realtime.max_lag_seconds, now - first_due)
        if not self._fps:
            return
        on_time = _frames_until(now - self._late_seconds, self._fps)
        # frame i (of this batch: self._frames <= i < frames) is late if i / fps < now - late
        late = max(0, min(frames, on_time) - self._frames)
        realtime.frames += frames - self._frames
        realtime.late_frames += late
        self._frames = frames
        if late > 0 and not self._warned:
            self._warned = True
            log.warning(
                "recording %s fell behind real time: frames composed %.2f s after their time",
                self._task.sid,
                now - first_due,
            )


def _frames_until(t: float, fps: int) -> int:
    """How many frames (frame i at i / fps s) have a time <= ``t``."""
    return max(0, math.floor(t * fps + 1e-9) + 1) if t >= 0 else 0


class RecorderDriver:
    """Starts and runs the driver threads of tasks."""

    def __init__(
        self,
        registry: Registry,
        failovers: Failovers,
        recorder_factory: RecorderFactory,
        on_failure: Callable[[Task, str], None],
    ) -> None:
        self._registry = registry
        self._failovers = failovers
        self._recorder_factory = recorder_factory
        self._on_failure = on_failure

    def start(self, task: Task) -> None:
        """Record ``task`` from now on. Caller holds the lock."""
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
            recorder, generation, started, start_ms = opened
            if not self._record(task, recorder, generation, started, start_ms):
                return
            if not self._end_segment(task, recorder):
                return

    def _open_recorder(self, task: Task) -> tuple[Recorder, int, float, int] | None:
        """A new recorder for the task's current segment, with its event 42; how many
        failovers it follows; the clock time of its media time 0 and that time in epoch ms.
        None (the task failing) if it could not be created."""
        start_ms = int(time.time() * 1000)
        started = self._registry.clock()  # media time 0 is start_ms, however long creation takes
        with self._registry.lock:
            config = self._media_config_for_recorder(task)
            generation = len(task.failovers)
        uploader = task.uploader
        assert uploader is not None
        try:
            recorder = self._recorder_factory(
                config,
                sid=task.sid,
                cname=task.cname,
                out_dir=self._registry.staging_dir(task),
                start_epoch_ms=start_ms,
                on_file=uploader.submit,
                name_prefix=failover_prefix(generation - 1) if generation else "",
            )
        except Exception as exc:
            log.exception("recording %s: the recorder could not start", task.sid)
            self._on_failure(task, f"recorder failed to start: {safe_reason(exc)}")
            return None
        with self._registry.lock:
            self._install(task, recorder, config, start_ms, started)
        return recorder, generation, started, start_ms

    def _install(
        self, task: Task, recorder: Recorder, config: MediaConfig, start_ms: int, started: float
    ) -> None:
        """Make ``recorder`` the task's and send its event 42. Caller holds the lock."""
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
        self._registry.event(
            task,
            42,
            startUtcMs=first_start or start_ms,
            discontinueUtcMs=start_ms,
            mixedAllUser=True,
            streamUid="0",
            trackType=config.track_type,
        )

    def _record(
        self, task: Task, recorder: Recorder, generation: int, started: float, start_ms: int
    ) -> bool:
        """Advance ``recorder`` to wall-clock time until the task stops (False) or fails
        over again (True)."""
        tick = self._registry.config.tick_seconds
        pace = _Pace(task, self._registry.config.late_frame_seconds)
        while True:
            stopping = task.stop_event.wait(tick)
            if not stopping:
                with self._registry.lock:
                    if len(task.failovers) != generation:
                        return True
            try:
                t = self._registry.clock() - started
                if stopping and task.stopped_wall is not None:
                    # A driver running late must not record past the stop.
                    t = max(task.media_time, min(t, task.stopped_wall - start_ms / 1000))
                self._advance(task, recorder, t)
            except Exception as exc:
                log.exception("recording %s: compositing failed", task.sid)
                self._on_failure(task, f"compositing failed: {safe_reason(exc)}")
                return False
            pace.advanced(t, self._registry.clock() - started)
            if stopping:
                return False

    def _end_segment(self, task: Task, recorder: Recorder) -> bool:
        """The server went away: finish what it recorded (the playlist ends there) and hand
        the files to the uploader. False if that failed (the task is failing)."""
        try:
            produced = recorder.finish()
        except Exception as exc:
            log.exception("recording %s: finishing a segment failed", task.sid)
            self._on_failure(task, f"finishing failed: {safe_reason(exc)}")
            return False
        assert task.uploader is not None
        for output in produced:  # anything on_file did not see in its final form
            task.uploader.submit(output)
        with self._registry.lock:
            task.produced = unique_files([*task.produced, *produced])
            self._report_stream_states(task, [])  # nothing is received while migrating
        return True

    def _wait_for_migration(self, task: Task) -> bool:
        """Wait until the task is on its new server (if it is migrating); False if it was
        stopped meanwhile."""
        while True:
            with self._registry.lock:
                now = self._registry.clock()
                if not task.migrating(now):
                    self._failovers.rejoin(task)
                    return True
                wait = min(self._registry.config.tick_seconds, task.failovers[-1].until - now)
            if task.stop_event.wait(wait):
                return False

    def _advance(self, task: Task, recorder: Recorder, t: float) -> None:
        """Advance the recorder to media time ``t`` with the channel as the task sees it."""
        users = self._registry.channels.users(task.cname)
        with self._registry.lock:
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
        with self._registry.lock:
            for kind, event_type in (("audio", 43), ("video", 44)):
                if now[kind] != task.receiving[kind]:
                    task.receiving[kind] = now[kind]
                    state = 0 if now[kind] else 1
                    self._registry.event(
                        task, event_type, streamUid="0", state=state, UtcMs=int(time.time() * 1000)
                    )

    def _media_config_for_recorder(self, task: Task) -> MediaConfig:
        config = self._registry.config
        media = dataclasses.replace(
            task.media_config,
            slice_seconds=config.slice_seconds,
            mp4_max_seconds=config.mp4_max_seconds,
            mp4_max_bytes=config.mp4_max_bytes,
        )
        width, height = media.width, media.height
        if media.has_video and (width % 2 or height % 2):
            # yuv420p needs even sizes; the encoder rounds down as real encoders do.
            width, height = max(2, width - width % 2), max(2, height - height % 2)
            log.warning(
                "recording %s: canvas %dx%d rounded to %dx%d",
                task.sid,
                media.width,
                media.height,
                width,
                height,
            )
            media = dataclasses.replace(media, width=width, height=height)
        return media

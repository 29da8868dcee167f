"""The reconciler: one round every ~30 s (beat) that makes the job store and the service agree
(docs/design.md#scheduling). Plain functions, no Celery: the task layer sends what a round asks for.

A round, cheapest first:

1. **Re-drive stuck jobs** (no API call). A job whose task was lost (its worker died, the message
   waits for the broker's visibility timeout) is sent its step again: ``queued``/``acquiring`` or
   ``starting`` without a sid and no start in flight -> the acquire -> start chain; ``starting``
   with a sid and no watch for a while -> watch. Every active job must have its stop deadline in
   the due-queue; a missing one is put back, and a ``recording`` job far past its deadline is
   sent its stop directly. Each step is idempotent against the record, so a re-drive that races
   the original delivery costs at most a wasted call, never a second recording.
2. **Query recordings believed live**, within a bounded budget (``reconcile_query_budget`` per
   round; queries have the lowest priority in the rate limiter and the round stops querying the
   moment the limiter says wait). Past-deadline jobs first, then the ones being proven missing,
   then the ones checked longest ago; a job is re-queried at most every
   ``reconcile_check_interval``. A 404 "failed to find worker" is only believed once nothing
   but 404s answered for longer than a failover takes (``failover_window``,
   docs/service/errors.md#not-found, over several probes): the job is then stopped through the stop
   step, which ends it ``idle_exit`` (the recorder left by itself) unless the stop finds it alive
   after all. Status 6/7/8 also means it left; 20 means it died (``failed``).
   Before any query, the NCS ledger (:mod:`worker.ncs`) is read for the same jobs, free: a
   recording whose session NCS saw end (31/32 with the files, 11, or 41 long enough ago) ends
   its job with those files and upload status (``idle_exit``: the recorder left by itself),
   event 12's new uids are recorded, and a recording heard from within
   ``reconcile_check_interval`` (event 33 comes every minute) is not queried.
   Jobs that ended "sid unknown" are matched against the ledger too: a late event still gets
   their recording stopped.
3. **Find recordings whose job lost track** (only where the service can list them: the
   emulator's dev API). A live recording that no active job holds by sid is either adopted by the
   job whose start it answered (matched by resourceId: the start's answer was lost) or, once
   older than ``orphan_grace``, stopped. The list is fetched at most every
   ``orphan_scan_interval``. With the real service this step does not exist; there a
   job record's resourceId and sid are the only handle, and steps 1-2 use them.

Size: over 400 lines because one round is one bounded budget shared by its steps (adopt,
re-drive, NCS, scan); they are kept together so that budget reads in one place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from config import DEFAULT_APP
from contract import codes
from worker import keys
from worker.errors import ApiError, LocatorUnavailable, RateLimitWait, WorkerNotFound
from worker.locator import KnownRecording, RecordingLocator
from worker.ncs import NcsRecording
from worker.planner import PlannedStop
from worker.recording import (
    DONE,
    NCS_SETTLE_SECONDS,
    SID_UNKNOWN_KEY,
    Next,
    clear_missing,
    expected_playlist_name,
    missing_probe_interval,
    ncs_end_fields,
    note_missing,
    stop_release,
)
from worker.recording import find_sid as find_job_sid
from worker.states import ACTIVE_STATES, JobState
from worker.steps import Step
from worker.store import FileRecord, JobRecord, peek

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = logging.getLogger("cloudrec.reconcile")

S = JobState
# A recording job this far past its deadline is sent its stop directly, not only via the queue.
OVERDUE_FACTOR = 2.0
# With messages waiting in the queue, a job waiting for its step is given this many times longer.
BACKLOG_PATIENCE = 10


@dataclass
class ReconcileReport:
    """What one round did. ``redrive`` lists the steps the task layer must send."""

    redrive: list[tuple[str, Next]] = field(default_factory=list)
    deadlines_restored: int = 0
    queried: int = 0
    idle_exits: int = 0
    died: int = 0
    adopted: int = 0
    orphans_stopped: int = 0
    ncs_ended: int = 0  # jobs ended from NCS events, without a query
    ncs_fresh: int = 0  # live jobs not queried: NCS heard from them within the check interval
    late_adopted: int = 0  # "sid unknown" jobs whose sid NCS told later (their stop is sent)
    budget_exhausted: bool = False

    def summary(self) -> dict[str, int | bool]:
        return {
            "redriven": len(self.redrive),
            "deadlines_restored": self.deadlines_restored,
            "queried": self.queried,
            "idle_exits": self.idle_exits,
            "died": self.died,
            "adopted": self.adopted,
            "orphans_stopped": self.orphans_stopped,
            "ncs_ended": self.ncs_ended,
            "ncs_fresh": self.ncs_fresh,
            "late_adopted": self.late_adopted,
            "budget_exhausted": self.budget_exhausted,
        }


def reconcile(rt: Runtime, now: float | None = None, *, backlog: int = 0) -> ReconcileReport:
    """One reconciler round (see the module docstring). Safe to run concurrently with
    everything else, and with itself: every change it makes is a compare-and-set.

    ``backlog``: messages waiting in the recording queue. While there are any, a job waiting
    for its acquire or start may simply be behind them, so it counts as stuck only after
    ``BACKLOG_PATIENCE`` times the usual wait (re-driving 10,000 queued jobs would double the
    backlog).
    """
    now = time.time() if now is None else now
    report = ReconcileReport()
    seen = Seen()
    # Records are read a chunk at a time and only a small summary of each is kept: the round's
    # memory (and every connection's read buffer) must not grow with the number of jobs.
    ids = rt.store.active_ids(ACTIVE_STATES)
    for start in range(0, len(ids), READ_CHUNK):
        chunk = ids[start : start + READ_CHUNK]
        recording, others = glance(rt, chunk, now)
        jobs = rt.store.records(others)
        redrive_stuck(rt, jobs, now, report, backlog=backlog)
        seen.add(jobs)
        restore_recording_deadlines(rt, recording, report)
        seen.add_recording(recording)
    adopt_late(rt, now, report)
    live = apply_ncs(rt, seen.live, now, report)
    budget = rt.settings.reconcile_query_budget
    budget -= check_live(rt, live, now, budget, report)
    if rt.locator is not None and not report.budget_exhausted and _scan_due(rt, now):
        scan_service(rt, rt.locator, seen, now, budget, report)
    return report


READ_CHUNK = 500
# What a round reads of every active job. A whole record is built only for the jobs this does
# not show to be plainly recording: at 100,000 recording jobs, building every record every
# round kept a core busy (benchmarks/scale.py); a recording job before its deadline needs
# nothing but these.
GLANCE_FIELDS = ("state", "sid", "resource_id", "stop_reason", "stop_at", "missing_since")


@dataclass(frozen=True)
class LiveJob:
    """A job as a round needs it to choose which recordings to query (and, for the jobs seen
    at a glance, whether a stop was asked)."""

    job_id: str
    stop_at: float
    missing_since: float | None
    sid: str = ""
    stop_reason: str | None = None


def glance(rt: Runtime, job_ids: Sequence[str], now: float) -> tuple[list[LiveJob], list[str]]:
    """Split the jobs into those plainly recording (before their deadline's overdue mark:
    nothing for step 1 to re-drive) and the others, whose whole records the round reads
    (jobs gone meanwhile are among them: reading them leaves them out)."""
    overdue_before = now - OVERDUE_FACTOR * rt.settings.stop_lease
    recording: list[LiveJob] = []
    others: list[str] = []
    for job_id, fields in zip(job_ids, peek(rt.redis, job_ids, GLANCE_FIELDS), strict=True):
        if (
            fields is None
            or str(fields["state"]) != S.RECORDING
            or float(fields["stop_at"]) < overdue_before
        ):
            others.append(job_id)
            continue
        missing = fields["missing_since"]
        recording.append(
            LiveJob(
                job_id=job_id,
                stop_at=float(fields["stop_at"]),
                missing_since=None if missing is None else float(missing),
                sid=fields["sid"] or "",
                stop_reason=fields["stop_reason"] or None,
            )
        )
    return recording, others


@dataclass
class Seen:
    """The round's summary of the active jobs (small per job)."""

    live: list[LiveJob] = field(default_factory=list)  # recording, with a sid, no stop asked
    held: set[str] = field(default_factory=set)  # every sid an active job holds
    waiting: dict[str, str] = field(default_factory=dict)  # resourceId -> job (no sid yet)

    def add(self, jobs: Sequence[JobRecord]) -> None:
        for job in jobs:
            if job.sid:
                self.held.add(job.sid)
            elif job.state == S.STARTING and job.resource_id:
                self.waiting[job.resource_id] = job.job_id
            if job.state == S.RECORDING and job.sid and not job.stop_reason:
                self.live.append(LiveJob(job.job_id, job.stop_at, job.missing_since, job.sid))

    def add_recording(self, jobs: Sequence[LiveJob]) -> None:
        """As :meth:`add`, for jobs seen at a glance (all of them recording)."""
        for job in jobs:
            if job.sid:
                self.held.add(job.sid)
                if not job.stop_reason:
                    self.live.append(job)


SCANNED_KEY = keys.SCANNED_KEY


def _scan_due(rt: Runtime, now: float) -> bool:
    """Whether this round lists the service's recordings (at most every
    ``orphan_scan_interval``: the list of 10,000 recordings is not free for the service)."""
    interval = rt.settings.orphan_scan_interval
    if interval <= 0:
        return True
    return bool(rt.redis.set(SCANNED_KEY, repr(now), nx=True, px=int(interval * 1000)))


# -- 1. stuck jobs ---------------------------------------------------------------------------------
def redrive_stuck(
    rt: Runtime,
    jobs: Sequence[JobRecord],
    now: float,
    report: ReconcileReport,
    *,
    backlog: int = 0,
) -> None:
    """Re-send the step of every job that made no progress for ``reconcile_stuck_after``."""
    restore_deadlines(rt, jobs, report)
    planned = planned_stops(rt, jobs, now)
    for job in jobs:
        nxt = stuck_step(rt, job, now, backlog=backlog, stop_planned=job.job_id in planned)
        if nxt.step is not None:
            log.info(
                "reconcile: job %s stuck in %s: sending %s",
                job.job_id,
                job.state,
                nxt.step,
                extra={"job_id": job.job_id, "cname": job.cname, "sid": job.sid},
            )
            report.redrive.append((job.job_id, nxt))


def stuck_step(
    rt: Runtime, job: JobRecord, now: float, *, backlog: int = 0, stop_planned: bool = False
) -> Next:
    """The step a job needs re-sent, or ``DONE`` if it is moving (or waiting on purpose).
    ``stop_planned``: the job's stop waits in the plan of its API budget (worker.planner): a
    recording past its deadline then waits for its planned turn."""
    stuck = rt.settings.reconcile_stuck_after
    if backlog:
        stuck *= BACKLOG_PATIENCE
    if job.state == S.QUEUED:
        if job.start_at is not None and job.start_at > now - stuck:
            return DONE  # a scheduled start: the dispatcher fires it
        return Next(Step.ACQUIRE) if _quiet_since(job, now) > stuck else DONE
    if job.state == S.STARTING and not job.sid and job.sid_wait_since is not None:
        # Its sid is being sought (worker.recording.seek_sid): re-drive the search if it went
        # quiet (the search repeats the start at least every half of the time it has spent).
        quiet = now - max(job.sid_wait_since, job.sid_provoked_at or 0.0)
        return (
            Next(Step.WATCH)
            if quiet > stuck and not rt.leases.held(Step.START, job.job_id)
            else DONE
        )
    if job.state == S.ACQUIRING or (job.state == S.STARTING and not job.sid):
        if rt.leases.held(Step.START, job.job_id):
            return DONE  # a start request is in flight
        # acquire -> start: the acquire step passes a job already starting on to start.
        return Next(Step.ACQUIRE) if _quiet_since(job, now) > stuck else DONE
    if job.state == S.STARTING:
        # The watch concludes within start_confirm_timeout of the start, one way or another.
        started = job.started_at or now
        return (
            Next(Step.WATCH) if now - started > rt.settings.start_confirm_timeout + stuck else DONE
        )
    overdue = job.stop_at < now - OVERDUE_FACTOR * rt.settings.stop_lease
    if job.state == S.RECORDING and overdue and not stop_planned:
        return Next(Step.STOP)
    return DONE


def _quiet_since(job: JobRecord, now: float) -> float:
    """Seconds since the job last showed progress (a transition or a recorded step)."""
    marks = [job.created_at, job.acquired_at, job.history[-1].at if job.history else None]
    return now - max(m for m in marks if m is not None)


def planned_stops(rt: Runtime, jobs: Sequence[JobRecord], now: float) -> set[str]:
    """The overdue recording jobs whose stop waits in its app's budget's plan (worker.planner)."""
    limit = now - OVERDUE_FACTOR * rt.settings.stop_lease
    overdue = [j for j in jobs if j.state == S.RECORDING and j.stop_at < limit]
    plans = rt.stop_plans()
    waiting: set[str] = set()
    for name, plan in plans.items():
        mine = [j for j in overdue if j.app.lower() == name]
        stops = [PlannedStop(j.job_id, j.stop_at, j.stop_early_max) for j in mine]
        found = plan.planned(stops)
        waiting.update(stop.job_id for stop, yes in zip(stops, found, strict=True) if yes)
    return waiting


def restore_deadlines(rt: Runtime, jobs: Sequence[JobRecord], report: ReconcileReport) -> None:
    """Every active job has its stop deadline in the due-queue; put back any that is missing."""
    present = rt.store.due_scores("stop", [j.job_id for j in jobs])
    for job, score in zip(jobs, present, strict=True):
        if score is None and rt.store.restore_deadline(job.job_id, stop_release(job)):
            report.deadlines_restored += 1
            log.warning(
                "reconcile: job %s had no stop deadline; restored",
                job.job_id,
                extra={"job_id": job.job_id},
            )


def restore_recording_deadlines(
    rt: Runtime, jobs: Sequence[LiveJob], report: ReconcileReport
) -> None:
    """:func:`restore_deadlines` for the jobs seen at a glance: only those whose deadline is
    missing are read whole."""
    present = rt.store.due_scores("stop", [j.job_id for j in jobs])
    missing = [job.job_id for job, score in zip(jobs, present, strict=True) if score is None]
    if missing:
        restore_deadlines(rt, rt.store.records(missing), report)


# -- 2. recordings believed live -------------------------------------------------------------------
NCS_CHUNK = 500


def apply_ncs(
    rt: Runtime, live: Sequence[LiveJob], now: float, report: ReconcileReport
) -> list[LiveJob]:
    """Settle what the NCS ledger already tells about the live jobs; returns the ones that
    still need a query (not ended, not heard from within ``reconcile_check_interval``)."""
    remaining: list[LiveJob] = []
    for start in range(0, len(live), NCS_CHUNK):
        chunk = live[start : start + NCS_CHUNK]
        heard = rt.ncs.get_many([j.sid for j in chunk])
        for candidate, rec in zip(chunk, heard, strict=True):
            if rec is None or not _settle_from_ncs(rt, candidate, rec, now, report):
                remaining.append(candidate)
    return remaining


def _settle_from_ncs(
    rt: Runtime, candidate: LiveJob, rec: NcsRecording, now: float, report: ReconcileReport
) -> bool:
    """True if NCS settles this job for the round (ended, or recently heard from)."""
    ended = rec.settled(now, NCS_SETTLE_SECONDS)
    job = rt.store.find(candidate.job_id)
    if job is None or job.state != S.RECORDING or job.stop_reason:
        return True  # it moved on since the round read it
    if ended:
        _ended_per_ncs(rt, job, rec)
        report.ncs_ended += 1
        return True
    if rec.over:
        return True  # it left: its files (31/32) are waited for, then it ends (settled)
    if rec.new_uids and any(u not in job.failover_uids for u in rec.new_uids):
        uids = [*job.failover_uids, *(u for u in rec.new_uids if u not in job.failover_uids)]
        rt.store.transition(job.job_id, {S.RECORDING}, None, failover_uids=uids)
    fresh = (
        rec.last_ms is not None and now - rec.last_ms / 1000 < rt.settings.reconcile_check_interval
    )
    if fresh and candidate.missing_since is None:
        report.ncs_fresh += 1
        return True
    return False


def _ended_per_ncs(rt: Runtime, job: JobRecord, rec: NcsRecording) -> None:
    """The recorder left by itself (nobody asked it to stop): the job ends with the files and
    upload status the events gave, ``failed`` if the session exited abnormally."""
    abnormal = rec.exit_status == 1 or rec.error is not None
    code = "unknown" if rec.leave_code is None else str(rec.leave_code)
    reason = f"recorder left by itself (NCS: leaveCode {code}, exitStatus {rec.exit_status})"
    if rec.error is not None:  # event 1: e.g. 109, the RTC token expired and it was dropped
        reason += f"; error {rec.error.get('code')}: {rec.error.get('msg')}"
    moved, _ = rt.store.transition(
        job.job_id,
        {S.RECORDING},
        S.FAILED if abnormal else S.IDLE_EXIT,
        error={"operation": "ncs", "reason": reason},
        **ncs_end_fields(job, rec),
    )
    if moved:
        log.info(
            "reconcile: job %s ended per NCS: %s",
            job.job_id,
            reason,
            extra={"job_id": job.job_id, "sid": job.sid},
        )


def adopt_late(rt: Runtime, now: float, report: ReconcileReport) -> None:
    """Jobs that ended "sid unknown": if NCS has told their sid since, record it on the job and
    make its stop due (the stop step stops the recording of a failed job that holds a sid)."""
    rt.redis.zremrangebyscore(SID_UNKNOWN_KEY, "-inf", now - rt.settings.ncs_ttl)
    for raw in rt.redis.zrange(SID_UNKNOWN_KEY, 0, NCS_CHUNK - 1):
        job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        job = rt.store.find(job_id)
        if job is None or job.sid:
            rt.redis.zrem(SID_UNKNOWN_KEY, job_id)
            continue
        found = find_job_sid(rt, job)
        if found is None:
            continue
        sid, source = found
        rt.ncs.claim(sid, job_id)
        moved, _ = rt.store.transition(job_id, {job.state}, None, sid=sid, sid_source=source)
        rt.redis.zrem(SID_UNKNOWN_KEY, job_id)
        if moved:
            log.warning(
                "reconcile: job %s learnt its sid late (from %s): stopping its recording",
                job_id,
                source,
                extra={"job_id": job_id, "sid": sid},
            )
            rt.store.schedule(Step.STOP, job_id, now)
            report.late_adopted += 1
            report.redrive.append((job_id, Next(Step.STOP)))


def check_live(
    rt: Runtime, live: Sequence[LiveJob], now: float, budget: int, report: ReconcileReport
) -> int:
    """Query up to ``budget`` recording jobs (most urgent first); returns queries spent."""
    spent = 0
    for candidate in query_order(rt, live, now)[:budget]:
        job = rt.store.find(candidate.job_id)
        if job is None or job.state != S.RECORDING or job.stop_reason:
            continue  # it moved on since the round read it
        try:
            check_one(rt, job, now, report)
        except RateLimitWait:
            report.budget_exhausted = True  # queries back off first: leave the rest for later
            break
        except ApiError as exc:
            log.info("reconcile: query of job %s failed: %s", job.job_id, exc)
        spent += 1
    report.queried += spent
    return spent


def query_order(rt: Runtime, jobs: Sequence[LiveJob], now: float) -> list[LiveJob]:
    """The jobs due for a query, most urgent first: past their deadline, then missing (a 404
    being confirmed), then the ones checked longest ago (never checked first)."""
    interval = rt.settings.reconcile_check_interval
    rt.store.forget_checks_before(now - interval)
    checked = rt.store.last_checked([j.job_id for j in jobs])
    due: list[tuple[tuple[int, float], LiveJob]] = []
    probe = missing_probe_interval(rt.settings)
    for job, last in zip(jobs, checked, strict=True):
        if job.missing_since is not None:
            if last is None or now - last >= probe:
                due.append(((1, job.missing_since), job))
        elif last is None or now - last >= interval:
            overdue = job.stop_at < now
            due.append(((0 if overdue else 2, last or 0.0), job))
    due.sort(key=lambda item: item[0])
    return [job for _, job in due]


def check_one(rt: Runtime, job: JobRecord, now: float, report: ReconcileReport) -> None:
    """Query one recording job and settle what the answer proves."""
    assert job.sid is not None and job.resource_id is not None
    rt.store.mark_checked(job.job_id, now)
    try:
        status = rt.client_for(job.app).query(job.resource_id, job.sid).serverResponse.status
    except WorkerNotFound:
        _missing(rt, job, now, report)
        return
    except ApiError:
        clear_missing(rt, job, {S.RECORDING})  # not a 404: no longer a run of them
        raise
    clear_missing(rt, job, {S.RECORDING})
    if status in codes.LEFT:
        _ended_by_itself(rt, job, S.IDLE_EXIT, f"recorder left by itself (status {status})")
        report.idle_exits += 1
    elif status == codes.RecordingStatus.EXITED_ABNORMALLY:
        _ended_by_itself(rt, job, S.FAILED, "recorder exited abnormally (status 20)")
        report.died += 1


def _missing(rt: Runtime, job: JobRecord, now: float, report: ReconcileReport) -> None:
    """One more 404. Proven gone (worker.recording.note_missing): stop it anyway, through the
    stop step: if it was in fact alive the stop ends it, else the job ends ``idle_exit``."""
    if not note_missing(rt, job, {S.RECORDING}, now):
        return  # maybe a failover (docs/service/errors.md#not-found): probed again shortly
    moved, _ = rt.store.transition(job.job_id, {S.RECORDING}, S.STOPPING, stop_reason="gone")
    if moved:
        report.idle_exits += 1
        report.redrive.append((job.job_id, Next(Step.STOP)))


def _ended_by_itself(rt: Runtime, job: JobRecord, target: JobState, reason: str) -> None:
    rt.store.transition(
        job.job_id,
        {S.RECORDING},
        target,
        error={"operation": "query", "reason": reason},
        uploading_status="unknown",
        files=_expected_files(job),
    )


def _expected_files(job: JobRecord) -> list[FileRecord]:
    assert job.sid is not None
    name = expected_playlist_name(job.sid, job.cname)
    prefix = job.job_spec.fileNamePrefix
    return [FileRecord(fileName=name, key="/".join([*prefix, name]))]


# -- 3. recordings the service knows and no job holds ----------------------------------------------
def scan_service(
    rt: Runtime,
    locator: RecordingLocator,
    seen: Seen,
    now: float,
    budget: int,
    report: ReconcileReport,
) -> None:
    """Adopt or stop every live recording of our App ID that no active job holds by sid."""
    try:
        known = locator.recordings(live_only=True)  # bounded by what runs, not by history
    except LocatorUnavailable as exc:
        log.warning("reconcile: cannot list recordings: %s", exc)
        return
    apps = {p.app_id: name for name, p in rt.settings.app_profiles().items()}
    for rec in known:
        app = DEFAULT_APP if rec.app_id is None else apps.get(rec.app_id)
        if not rec.live or rec.sid in seen.held or app is None:
            continue  # not ours: another project's recording is not ours to stop
        job_id = seen.waiting.get(rec.resource_id)
        if job_id is not None:
            report.redrive.append((job_id, adopt(rt, job_id, rec.sid)))
            report.adopted += 1
        elif budget > 0 and _older_than(rec, now, rt.settings.orphan_grace):
            budget -= 1
            if not stop_orphan(rt, rec, app):
                report.budget_exhausted = True
                return
            report.orphans_stopped += 1


def adopt(rt: Runtime, job_id: str, sid: str) -> Next:
    """The job whose start this recording answered takes it on (its start answer was lost)."""
    job = rt.store.find(job_id)
    if job is None or job.sid or job.state != S.STARTING:
        return DONE
    moved, _ = rt.store.transition(
        job_id, {S.STARTING}, None, sid=sid, started_at=time.time(), sid_source="dev_api"
    )
    if not moved:
        return DONE
    rt.ncs.claim(sid, job_id)
    log.info(
        "reconcile: job %s adopts recording %s",
        job_id,
        sid,
        extra={"job_id": job_id, "sid": sid, "cname": job.cname},
    )
    return Next(Step.WATCH)


def stop_orphan(rt: Runtime, rec: KnownRecording, app: str = DEFAULT_APP) -> bool:
    """Stop a recording no job holds. False: the rate limiter said wait (try next round)."""
    log.warning(
        "reconcile: stopping recording %s of channel %s: no job holds it",
        rec.sid,
        rec.cname,
        extra={"sid": rec.sid, "cname": rec.cname},
    )
    try:
        rt.client_for(app).stop(rec.resource_id, rec.sid, rec.cname, rec.uid)
    except RateLimitWait:
        return False
    except ApiError as exc:
        log.info("reconcile: orphan stop of %s answered %s", rec.sid, exc)
    return True


def _older_than(rec: KnownRecording, now: float, seconds: float) -> bool:
    return rec.started_at is not None and now - rec.started_at >= seconds


__all__ = [
    "ReconcileReport",
    "adopt",
    "adopt_late",
    "apply_ncs",
    "check_live",
    "reconcile",
    "redrive_stuck",
    "scan_service",
    "stuck_step",
]

"""The recording logic: one plain function per step, no Celery (docs/design.md#the-job,
docs/design.md#scheduling).

Each step loads the job record, decides from its state what (if anything) is left to do,
persists every side effect's output before the next step (``resourceId`` right after acquire,
``sid`` right after start), and returns a :class:`Next` telling the task layer what to schedule.
A redelivered or retried step therefore resumes from the record instead of repeating a call.

Errors: retryable API errors (:attr:`Action.RETRY`) and :class:`RateLimitWait` propagate to the
task layer, which retries with backoff. Every other outcome is decided here.

The invariant this module keeps: once a ``sid`` exists, something will call stop for it: the
scheduled deadline, a cancel, the reconciler, or the service's own idle exit.

Size: over 400 lines on purpose: that invariant is kept across the steps (a start that answers
after its job ended schedules its own stop; a stop finds the sid a lost start left), so the
whole step machine reads in one file. The step names and their table are :mod:`worker.steps`.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from config import DEFAULT_APP, Settings
from contract import codes
from contract.models import (
    AcquireClientRequest,
    StartClientRequest,
    StopResponse,
    StorageConfig,
    StorageExtension,
    file_names,
)
from contract.naming import playlist_name
from worker import keys
from worker.errors import (
    AlreadyStarted,
    AlreadyStopping,
    ApiError,
    EmptyRecording,
    JobSpecError,
    PermanentApiError,
    RateLimitedByService,
    RateLimitWait,
    ReacquireError,
    TaskConflict,
    TransportError,
    WorkerNotFound,
)
from worker.jobs import JobSpec, parse_job_spec, resolve_times
from worker.ncs import NcsRecording
from worker.planner import release_time
from worker.runtime import Runtime
from worker.states import LIVE_STATES, JobState
from worker.steps import Step, StopReason
from worker.store import FileRecord, JobRecord
from worker.tokens import recorder_token
from worker.vault import is_sealed

log = logging.getLogger("cloudrec.recording")

S = JobState

# A resourceId is valid 5 minutes (docs/service/api-contract.md#acquire); do not start on one older
# than this.
RESOURCE_FRESH_SECONDS = 240.0
# How often a repeated stop may answer 49 before we conclude the other stop died.
MAX_ALREADY_STOPPING = 6


@dataclass(frozen=True)
class Next:
    """What the task layer should do after a step. ``step=None``: nothing."""

    step: Step | None = None
    delay: float = 0.0
    reason: str = ""


DONE = Next()


# -- submit ------------------------------------------------------------------------------------
def submit(
    rt: Runtime,
    data: Any,
    now: float | None = None,
    *,
    via_broker: bool = False,
    minted: bool = False,
) -> tuple[JobRecord, bool]:
    """Validate and store a job. Returns (job, created). Idempotent on ``job_id``.

    Nothing is sent to the API here, and an invalid spec leaves nothing behind. The caller
    (task layer or CLI) starts the chain when ``created`` and the job has no ``start_at``.
    ``via_broker``: the spec came in a task message, so a token in it must be sealed
    (:func:`worker.vault.seal_token`); a plain one is refused, naming the field.
    """
    now = time.time() if now is None else now
    spec = parse_job_spec(data, rt.settings, minted=minted)  # minted: a schedule's firing
    token = _job_token(rt, spec, via_broker)
    job_id = spec.job_id or uuid.uuid4().hex
    try:
        times = resolve_times(spec, rt.settings, now)
    except JobSpecError:
        # The same spec submitted again once its times are past still returns its job.
        existing = rt.store.find(job_id)
        if existing is not None:
            return existing, False
        raise
    record = JobRecord(
        job_id=job_id,
        state=S.QUEUED,
        cname=spec.cname,
        uid=spec.uid or allocate_uid(rt.settings, job_id, 0),
        spec=spec.wire(),
        storage=spec.storage.lower(),
        app=spec.app.lower(),
        has_token=token is not None,
        has_callback=spec.has_callback,
        merge=rt.settings.merge_default if spec.merge is None else spec.merge,
        created_at=now,
        start_at=times.start_at,
        stop_at=times.stop_at,
        stop_early_max=times.stop_early_max,
        history=[],
    )
    # The deadline exists from the first moment, written with the job: a job is never without
    # its stop. It is due from its release (the deadline, or up to stop_early_max before:
    # worker.planner). An existing job_id returns that job (the store checks, in the same
    # round trips: a read before would cost one more per submit).
    due = {Step.STOP.value: stop_release(record)}
    if record.start_at is not None:
        due[Step.START.value] = record.start_at
    record, created = rt.store.create(record, due)
    if created and token is not None:
        rt.vault.put(job_id, token, int(times.stop_at - now) + 86_400)
    return record, created


def stop_release(job: JobRecord) -> float:
    """When the job's deadline stop is due in the due-queue: its deadline, less the tolerance
    the job gives (the planner never sends it earlier, and sends it that early only when the
    API budget needs it)."""
    return release_time(job.stop_at, job.stop_early_max)


def _job_token(rt: Runtime, spec: JobSpec, via_broker: bool) -> SecretStr | None:
    """The plain RTC token of a spec (unsealed), checked before anything is stored."""
    if spec.token is None:
        return None
    if via_broker and not is_sealed(spec.token.get_secret_value()):
        raise JobSpecError(
            "token: a plain RTC token must not travel in a task message (the broker keeps it and "
            "Flower shows it); seal it with worker.vault.seal_token, or submit through "
            "tasks.recording.submit_and_start / cloudrec record"
        )
    token = rt.vault.unseal(spec.token)
    # A sealed empty token is no token either: the start then carries no token field.
    return token if token.get_secret_value() else None


def allocate_uid(settings: Settings, job_id: str, attempt: int) -> str:
    """A recorder uid from the configured range, stable per (job, attempt).

    A new attempt (after 53 "task conflict") gives another uid (docs/service/behaviour.md#identity).
    """
    span = settings.recorder_uid_max - settings.recorder_uid_min + 1
    digest = hashlib.sha256(f"{job_id}:{attempt}".encode()).digest()
    return str(settings.recorder_uid_min + int.from_bytes(digest[:8], "big") % span)


# -- acquire -----------------------------------------------------------------------------------
def acquire_step(rt: Runtime, job_id: str, now: float | None = None) -> Next:
    """Get a resourceId for the job (queued/acquiring -> acquiring)."""
    now = time.time() if now is None else now
    job = rt.store.get(job_id)
    if job.start_at is not None:  # only a scheduled start has a due entry to clear
        rt.store.unschedule(Step.START, job_id)
    if job.state == S.STARTING and not job.sid:
        # A start may have gone out (the task running acquire and start died, or its start was
        # re-driven): the start step sends it again on the same resource, under the start claim.
        return Next(Step.START)
    if job.state not in (S.QUEUED, S.ACQUIRING):
        return DONE  # already past this step, or finished
    if _too_late_to_start(job, now):
        return _end_unstarted(rt, job)
    if job.state == S.QUEUED:
        moved, state = rt.store.transition(job_id, {S.QUEUED}, S.ACQUIRING)
        if not moved and state != S.ACQUIRING:
            return DONE
    if job.resource_id and job.acquired_at and now - job.acquired_at < RESOURCE_FRESH_SECONDS:
        return Next(Step.START)  # a redelivery after a successful acquire: reuse it
    response = rt.client_for(job.app).acquire(job.cname, job.uid, AcquireClientRequest())
    rt.store.transition(
        job_id, {S.ACQUIRING}, None, resource_id=response.resourceId, acquired_at=time.time()
    )
    return Next(Step.START)


# -- start -------------------------------------------------------------------------------------
def start_step(rt: Runtime, job_id: str, now: float | None = None) -> Next:
    """Start the recording on the acquired resource (acquiring -> starting, sid persisted).

    One recording per job, whatever is redelivered or re-driven:

    - a start request goes out only under the job's *start claim* (a Redis lock kept alive on
      the lease heartbeat while the request is in flight); a duplicate delivery that cannot
      take it leaves the start to the holder; if the holder died, its claim lapses within a
      lease and its message is restored (worker.restorer), or the reconciler re-drives the job;
    - a start is only ever repeated on the *same* resource (a resource starts at most one
      recording: a repeat that reaches the service after the first one answers 201/7), and a
      new resource is acquired only after the service said the old one did not start
      (433/432/1001/502, or 53 with another uid);
    - 201/7 without a known sid: the sid is looked up (NCS events, :mod:`worker.ncs`; the
      emulator's dev API where it is enabled); until it is found the job keeps looking
      (:func:`seek_sid`), and ends "sid unknown" only after ``sid_unknown_window``.
    """
    now = time.time() if now is None else now
    job = rt.store.get(job_id)
    if job.terminal:
        return DONE
    if job.sid:
        return Next(Step.WATCH) if job.state == S.STARTING else DONE
    if job.state not in (S.ACQUIRING, S.STARTING):
        return DONE
    if job.state == S.ACQUIRING and _too_late_to_start(job, now):
        return _end_unstarted(rt, job)  # no start went out on this resource: nothing runs
    if job.state == S.ACQUIRING and (
        not job.resource_id or not job.acquired_at or now - job.acquired_at > RESOURCE_FRESH_SECONDS
    ):
        return _reacquire(rt, job, "resource missing or too old to start")
    try:
        request = build_start_request(rt, job)
    except PermanentApiError as exc:
        return _fail(rt, job_id, exc.as_record(), sources={job.state})
    # The claim is kept on the lease heartbeat (worker.leases): held for as long as the request
    # is in flight, however long that takes, and lapsing within a lease if this process dies,
    # before the dead worker's message is restored (worker.restorer) and tries again.
    with rt.leases.hold(Step.START, job_id) as mine:
        if not mine:
            return DONE  # another delivery's request is in flight
        # From here on a recording may exist at the service: remember since when.
        moved, _ = rt.store.transition(
            job_id,
            {job.state},
            S.STARTING,
            resource_id=job.resource_id,
            start_sent_at=job.start_sent_at or now,
        )
        return _send_start(rt, job, request) if moved else DONE


def _send_start(rt: Runtime, job: JobRecord, request: StartClientRequest) -> Next:
    assert job.resource_id is not None
    try:
        response = rt.client_for(job.app).start(job.resource_id, job.cname, job.uid, request)
    except AlreadyStarted:
        return _recover_sid(rt, job)
    except TaskConflict:
        if job.start_sent_at is not None:
            # A start went out on this resource before, unanswered: the recording holding this
            # channel and uid may be that one. Look for its sid; never start a second one.
            return _recover_sid(rt, job)
        return _reacquire(rt, job, "task conflict (53): another recorder uid", new_uid=True)
    except ReacquireError as exc:
        return _reacquire(rt, job, str(exc))
    except PermanentApiError as exc:
        return _fail(rt, job.job_id, exc.as_record(), sources={S.STARTING})
    # Anything else propagates with no definite answer: the retry sends the start again, on
    # the same resource, which cannot start a second recording.
    return _record_sid(rt, job.job_id, response.sid)


def build_start_request(rt: Runtime, job: JobRecord) -> StartClientRequest:
    """The start body for a job: its recording profile, the storage profile's credentials."""
    spec = job.job_spec
    given = rt.vault.get(job.job_id) if job.has_token else None
    if job.has_token and given is None:
        raise PermanentApiError("start", reason="the job's RTC token is no longer available")
    # Built anew for every start request, restarts included: a minted token is for the job's
    # current uid and lasts from now to the deadline (worker.tokens).
    token = recorder_token(
        rt.settings,
        job_id=job.job_id,
        cname=job.cname,
        uid=job.uid,
        stop_at=job.stop_at,
        given=given,
        app=job.app,
    )
    return StartClientRequest(
        token=token,
        recordingConfig=spec.recordingConfig,
        recordingFileConfig=spec.recordingFileConfig,
        storageConfig=storage_config(rt.settings, job.storage, spec.fileNamePrefix),
    )


def storage_config(
    settings: Settings, profile_name: str, prefix: list[str] | None
) -> StorageConfig:
    profile = settings.storage_profile(profile_name)
    return StorageConfig(
        vendor=profile.vendor,
        region=profile.region,
        bucket=profile.bucket,
        accessKey=profile.access_key.get_secret_value(),
        secretKey=SecretStr(profile.secret_key.get_secret_value()),
        fileNamePrefix=prefix or None,
        extensionParams=StorageExtension(endpoint=profile.endpoint) if profile.endpoint else None,
    )


def _record_sid(rt: Runtime, job_id: str, sid: str, source: str = "start") -> Next:
    started = time.time()
    rt.ncs.claim(sid, job_id)  # its notifications belong to this job now
    done, state = rt.store.transition(
        job_id, {S.STARTING}, None, sid=sid, started_at=started, sid_source=source
    )
    if done:
        return Next(Step.WATCH, delay=2.0)
    # Ended while start was in flight (cancel, deadline): keep the sid so it can be stopped, and
    # make the stop due now, so it survives this process dying before the stop task is sent.
    rt.store.transition(job_id, set(JobState), None, sid=sid, started_at=started, sid_source=source)
    rt.store.schedule(Step.STOP, job_id, started)
    log.warning(
        "job %s: started after it ended (%s); stopping it",
        job_id,
        state,
        extra={"job_id": job_id, "sid": sid},
    )
    return Next(Step.STOP)


def _recover_sid(rt: Runtime, job: JobRecord) -> Next:
    """201/7: this resource already started a recording, whose answer was lost. Adopt its sid
    if it is known already, else keep looking for it (:func:`seek_sid`)."""
    current = rt.store.get(job.job_id)
    if current.sid:
        return Next(Step.WATCH) if current.state == S.STARTING else DONE
    found = find_sid(rt, current)
    if found is not None:
        return _adopt_sid(rt, current, *found)
    now = time.time()
    rt.store.transition(
        job.job_id,
        {S.STARTING},
        None,
        sid_wait_since=current.sid_wait_since or now,
        sid_provoked_at=now,  # this 201/7 made the service say "already started" (event 3)
    )
    return Next(Step.WATCH, delay=SID_POLL_SECONDS)


# -- a start whose sid is not known --------------------------------------------------------------
# How often a job looks in the NCS ledger for the sid of its start (Redis only, no API call).
SID_POLL_SECONDS = 1.0
# The first repeated start on the resource goes out this long after the sid went missing; later
# ones at half the time spent looking (5, 10, 20 s ... apart).
SID_PROVOKE_SECONDS = 5.0
SID_UNKNOWN_REASON = "sid unknown: a recording may be running that cloudrec cannot stop"
SID_UNKNOWN_KEY = keys.SID_UNKNOWN_KEY  # zset job id -> when it ended "sid unknown"


def find_sid(rt: Runtime, job: JobRecord) -> tuple[str, str] | None:
    """(sid, how it was learnt) of the recording the job's start began, if anything tells.

    NCS first: a recording of the job's channel by its recorder uid that began after the job's
    resource was acquired and that no other job holds (the service runs one recording per
    channel and uid). Then the emulator's dev API, where it is enabled (never in real-service
    mode, ``CLOUDREC_DEV_API=false``)."""
    since = job.acquired_at or job.created_at
    sid = rt.ncs.find_sid(job.cname, job.uid, since, job.job_id)
    if sid is not None:
        return sid, "ncs"
    if job.resource_id and rt.locator is not None:
        sid = rt.locate_sid(job.resource_id)
        if sid is not None:
            return sid, "dev_api"
    return None


def _adopt_sid(rt: Runtime, job: JobRecord, sid: str, source: str) -> Next:
    log.info(
        "job %s: recovered the sid of a start whose answer was lost (from %s)",
        job.job_id,
        source,
        extra={"job_id": job.job_id, "sid": sid},
    )
    return _record_sid(rt, job.job_id, sid, source)


def seek_sid(rt: Runtime, job: JobRecord, now: float) -> Next:
    """One look for the sid of a start that may have reached the service (no answer, or 201/7).

    The job is never closed as "never started" while that is unknown. It looks in the NCS
    ledger every ``SID_POLL_SECONDS``; now and then it repeats the start on the same resource
    (which cannot start a second recording: 201/7, and the service's event 3 carries the sid;
    a start that had not arrived starts now and answers its sid). After ``sid_unknown_window``
    without a sid the job ends failed with :data:`SID_UNKNOWN_REASON`, counted and alerted on.
    """
    found = find_sid(rt, job)
    if found is not None:
        return _adopt_sid(rt, job, *found)
    if rt.leases.held(Step.START, job.job_id):
        return Next(Step.WATCH, delay=SID_POLL_SECONDS)  # a start is in flight: its answer tells
    since = job.sid_wait_since or now
    if job.sid_wait_since is None:
        rt.store.transition(job.job_id, {S.STARTING}, None, sid_wait_since=since)
    waited = now - since
    if waited >= rt.settings.sid_unknown_window:
        return _end_sid_unknown(rt, job, now)
    last = job.sid_provoked_at or job.start_sent_at or since
    if now - last >= max(SID_PROVOKE_SECONDS, waited / 2):
        rt.store.transition(job.job_id, {S.STARTING}, None, sid_provoked_at=now)
        return Next(Step.ACQUIRE)  # acquire -> start: a job already starting sends its start again
    return Next(Step.WATCH, delay=SID_POLL_SECONDS)


def _end_sid_unknown(rt: Runtime, job: JobRecord, now: float) -> Next:
    error = {"operation": "start", "kind": "SidUnknown", "reason": SID_UNKNOWN_REASON}
    moved, _ = rt.store.transition(
        job.job_id, {S.STARTING}, S.FAILED, stop_reason=StopReason.SID_UNKNOWN, error=error
    )
    if moved:
        rt.metrics.sid_unknown()
        # The reconciler keeps looking in the NCS ledger: a late event still gets it stopped.
        rt.redis.zadd(SID_UNKNOWN_KEY, {job.job_id: now})
        log.error(
            "job %s: %s (resource started %.0f s ago, channel %s, uid %s)",
            job.job_id,
            SID_UNKNOWN_REASON,
            now - (job.start_sent_at or now),
            job.cname,
            job.uid,
            extra={"job_id": job.job_id, "cname": job.cname},
        )
    return DONE


def _too_late_to_start(job: JobRecord, now: float) -> bool:
    """No start has gone out on the job's resource and it should no longer start one."""
    return job.stop_reason is not None or now >= job.stop_at


def _reacquire(rt: Runtime, job: JobRecord, why: str, *, new_uid: bool = False) -> Next:
    # The old resource's start was refused (an answer, not 201/7): nothing runs from it.
    fields: dict[str, Any] = {
        "resource_id": None,
        "acquired_at": None,
        "start_sent_at": None,
        "sid_wait_since": None,
        "sid_provoked_at": None,
    }
    if new_uid:
        attempt = job.uid_attempt + 1
        fields |= {"uid_attempt": attempt, "uid": allocate_uid(rt.settings, job.job_id, attempt)}
    moved, _ = rt.store.transition(job.job_id, {S.ACQUIRING, S.STARTING}, S.ACQUIRING, **fields)
    if not moved:
        return DONE
    log.info("job %s: acquiring again: %s", job.job_id, why, extra={"job_id": job.job_id})
    return Next(Step.ACQUIRE)


# -- watch -------------------------------------------------------------------------------------
def watch_step(rt: Runtime, job_id: str, now: float | None = None) -> Next:
    """Query until the recording is running (status 4 or 5): starting -> recording."""
    now = time.time() if now is None else now
    job = rt.store.get(job_id)
    if job.state == S.STARTING and not job.sid:
        return seek_sid(rt, job, now)
    if job.state != S.STARTING or not job.sid or not job.resource_id:
        return DONE
    age = now - (job.started_at or now)
    heard = rt.ncs.get(job.sid)
    if heard is not None and heard.started and not heard.over:
        # Event 40 (recorder_started, status 0) says what a query's status 4/5 would.
        rt.store.transition(job_id, {S.STARTING}, S.RECORDING)
        return DONE
    try:
        status = rt.client_for(job.app).query(job.resource_id, job.sid).serverResponse.status
    except WorkerNotFound as exc:
        # Straight after start a 404 may mean "not registered yet" or an HA move
        # (docs/service/errors.md#not-found).
        if age < rt.settings.start_confirm_timeout:
            return Next(Step.WATCH, delay=_watch_backoff(age))
        error = exc.as_record() | {"reason": "recording never started (404)"}
        return _stop_failed_start(rt, job_id, _with_join_failure(rt, job, error))
    if status in codes.RUNNING:
        rt.store.transition(job_id, {S.STARTING}, S.RECORDING)
        return DONE
    if status in codes.ENDED:
        error = {"operation": "query", "reason": f"recorder exited (status {status})"}
        return _stop_failed_start(rt, job_id, _with_join_failure(rt, job, error))
    if age >= rt.settings.start_confirm_timeout:
        error = {"operation": "query", "reason": f"not started after {age:.0f} s (status {status})"}
        return _stop_failed_start(rt, job_id, error)
    return Next(Step.WATCH, delay=_watch_backoff(age))


_TOKEN_CODES = {
    codes.ErrorCode.TOKEN_EXPIRED: "RTC token expired",
    codes.ErrorCode.TOKEN_INVALID: "RTC token invalid",
}


def _with_join_failure(rt: Runtime, job: JobRecord, error: dict[str, Any]) -> dict[str, Any]:
    """``error`` made telling for a recorder that never got going. The service's answers only
    say "exited" or 404 (a bad token surfaces later, docs/service/api-contract.md#start); its
    notifications carry the recorder's error code (event 1: 109 token expired, 110 invalid),
    and a start without any token is the likeliest cause when nothing tells more."""
    heard = rt.ncs.get(job.sid) if job.sid else None
    failure = heard.error if heard is not None else None
    code = failure.get("code") if failure else None
    if isinstance(code, int) and code in _TOKEN_CODES:
        return error | {
            "code": code,
            "reason": f"{error['reason']}: {_TOKEN_CODES[codes.ErrorCode(code)]} ({code})",
        }
    if job.has_token:
        return error
    if _certificate_of(rt, job.app) is None:
        hint = (
            "the start carried no RTC token; if the project has an App Certificate, set "
            "CLOUDREC_APP_CERTIFICATE (CLOUDREC_APPS__<NAME>__APP_CERTIFICATE for another app; "
            "the worker then mints one) or give the job a token"
        )
    else:
        names = (
            "CLOUDREC_APP_ID and CLOUDREC_APP_CERTIFICATE"
            if job.app == DEFAULT_APP
            else f"CLOUDREC_APPS__{job.app.upper()}__APP_ID and __APP_CERTIFICATE"
        )
        hint = (
            "if the recorder could not join with the token the worker minted, check that "
            f"{names} are the project's"
        )
    return error | {"reason": f"{error['reason']}: {hint}"}


def _certificate_of(rt: Runtime, app: str) -> SecretStr | None:
    """The job's app's App Certificate (None without one, or for an app no longer configured)."""
    try:
        return rt.settings.app_profile(app).app_certificate
    except KeyError:
        return None


def _stop_failed_start(rt: Runtime, job_id: str, error: dict[str, Any]) -> Next:
    """A start that never reached status 4/5 still holds a sid: stop it (it ends failed)."""
    moved, _ = rt.store.transition(
        job_id, {S.STARTING}, S.STOPPING, stop_reason=StopReason.START_TIMEOUT, error=error
    )
    return Next(Step.STOP) if moved else DONE


def _watch_backoff(age: float) -> float:
    # docs/service/behaviour.md#monitoring: query ~5 s after start, then back off; stay well inside
    # maxIdleTime (>= 5 s).
    return 1.0 if age < 10 else 3.0


# -- stop --------------------------------------------------------------------------------------
def request_stop(rt: Runtime, job_id: str, reason: StopReason) -> JobRecord:
    """Record why the job is being stopped ahead of its deadline (cloudrec stop/cancel)."""
    job = rt.store.get(job_id)
    if job.terminal:
        return job
    if job.sid is None and reason == StopReason.CANCEL and job.state in (S.QUEUED, S.ACQUIRING):
        # Nothing was started: cancel without a single API call.
        rt.store.transition(
            job_id, {S.QUEUED, S.ACQUIRING}, S.CANCELLED, stop_reason=StopReason.CANCEL
        )
        return rt.store.get(job_id)
    rt.store.transition(job_id, set(JobState) - {S.STOPPING}, None, stop_reason=reason)
    return rt.store.get(job_id)


def stop_step(
    rt: Runtime, job_id: str, now: float | None = None, *, call_at: float | None = None
) -> Next:
    """Stop the recording and collect its files: -> stopping -> a terminal state.

    ``call_at``: the stop call goes no earlier than this (the step was delivered ahead of it to
    do its Redis work first: tasks.recording.STOP_PREPARE_LEAD).

    A 404 ends the job only once it has lasted longer than a failover takes
    (docs/service/errors.md#not-found): inside that window the recording may come back, and a job
    that gave up on it would leave it running. The job then ends ``idle_exit`` if none of our stop
    requests can have reached the service, else as its stop reason says (the stop went through, its
    answer was lost).
    """
    now = time.time() if now is None else now
    job = rt.store.get(job_id)
    if job.terminal:
        if _needs_orphan_stop(job):
            return _stop_orphan(rt, job, now)
        rt.store.unschedule(Step.STOP, job_id)
        return DONE
    if job.sid is None and job.state == S.STARTING:
        job = _sid_for_stop(rt, job, now)
        if job.sid is None:
            return _stop_without_sid(rt, job, now)
    if job.sid is None:
        return _end_unstarted(rt, job)
    # Hold the deadline's lease on a heartbeat: if this process dies during the call, the
    # dispatcher sends the stop again within a lease, and not while this attempt may still be
    # waiting for its answer (a synchronous stop can take 45 s).
    with rt.leases.hold(Step.STOP, job_id) as mine:
        if not mine:
            return DONE  # another delivery's stop request is in flight
        return _send_stop(rt, job, now, call_at)


def _send_stop(rt: Runtime, job: JobRecord, now: float, call_at: float | None = None) -> Next:
    job_id = job.job_id
    assert job.resource_id is not None and job.sid is not None
    reason = job.stop_reason or StopReason.DEADLINE
    moved, _ = rt.store.transition(
        job_id,
        LIVE_STATES,
        S.STOPPING,
        stop_reason=reason,
        stop_sent_at=job.stop_sent_at or max(now, call_at or now),
        stop_uncertain=True,
    )
    if not moved:
        return DONE
    _wait_until(call_at)
    try:
        response = rt.client_for(job.app).stop(job.resource_id, job.sid, job.cname, job.uid)
    except EmptyRecording:
        # Nobody published: "empty" for a normal stop; a cancel or a failure keeps its word.
        _count_lateness(rt, job, reason)
        stopped = _stopped_state(job)
        _finish(rt, job, S.EMPTY if stopped == S.COMPLETED else stopped, empty=True)
        return DONE
    except AlreadyStopping:
        _not_sent(rt, job)
        clear_missing(rt, job, {S.STOPPING})
        return _after_already_stopping(rt, job, now)
    except WorkerNotFound as exc:
        _not_sent(rt, job)
        return _after_not_found(rt, job, exc, now)
    except PermanentApiError as exc:
        # The stop request itself is refused: the recording may still run until maxIdleTime.
        log.error("job %s: stop refused: %s", job_id, exc, extra={"job_id": job_id, "sid": job.sid})
        _finish(rt, job, S.FAILED, error=exc.as_record())
        return DONE
    except (RateLimitWait, RateLimitedByService):
        _not_sent(rt, job)  # the call never reached the recording
        raise
    except ApiError:
        clear_missing(rt, job, {S.STOPPING})  # not a 404: the run of 404s (if any) is broken
        raise
    _count_lateness(rt, job, reason)
    _finish(rt, job, _stopped_state(job), response=response)
    return DONE


def _wait_until(call_at: float | None) -> None:
    """Sleep until ``call_at`` (epoch seconds), if it is ahead."""
    if call_at is not None:
        ahead = call_at - time.time()
        if ahead > 0:
            time.sleep(ahead)


def _not_sent(rt: Runtime, job: JobRecord) -> None:
    """This attempt certainly did not stop anything: back to what earlier attempts left."""
    rt.store.transition(job.job_id, {S.STOPPING}, None, stop_uncertain=job.stop_uncertain)


def _count_lateness(rt: Runtime, job: JobRecord, reason: str) -> None:
    if reason == StopReason.DEADLINE:
        rt.metrics.stop_lateness(max(0.0, time.time() - job.stop_at), job.app)


def _stopped_state(job: JobRecord) -> JobState:
    if job.stop_reason == StopReason.CANCEL:
        return S.CANCELLED
    if job.stop_reason in (StopReason.START_TIMEOUT, StopReason.ERROR):
        return S.FAILED
    return S.COMPLETED


def _gone_state(job: JobRecord) -> JobState:
    """How a job whose recording is gone ends: stopped by us, or it left by itself. A recording
    that never confirmed its start (or failed) and is gone did not end idle: it failed."""
    if job.stop_uncertain or job.stop_reason in (StopReason.START_TIMEOUT, StopReason.ERROR):
        return _stopped_state(job)
    return S.IDLE_EXIT


def _stop_again(rt: Runtime, job_id: str, delay: float, reason: str) -> Next:
    # The retry is already scheduled: keep the dispatcher from sending a second one meanwhile.
    rt.store.extend_due(Step.STOP, job_id, time.time() + delay + rt.settings.stop_lease)
    return Next(Step.STOP, delay=delay, reason=reason)


# NCS told the recording is over (41, 11) but not its files (31/32): they are waited for this
# long after the last event (delivery is not ordered), then the job ends without them.
NCS_SETTLE_SECONDS = 15.0


def _finish_from_ncs(rt: Runtime, job: JobRecord, target: JobState) -> bool:
    """End a stopping job from what NCS said, if it says the session is over (31/32 with the
    files, or 41/11 and then quiet): no more probes of a task that is gone. Returns whether it
    did."""
    heard = rt.ncs.get(job.sid) if job.sid else None
    if heard is None or not heard.settled(time.time(), NCS_SETTLE_SECONDS):
        return False
    rt.store.transition(job.job_id, {S.STOPPING}, target, **ncs_end_fields(job, heard))
    return True


def ncs_end_fields(job: JobRecord, heard: NcsRecording) -> dict[str, Any]:
    """The files, upload status and failover uids a finished recording's events gave."""
    names = heard.file_names or ([expected_playlist_name(job.sid, job.cname)] if job.sid else [])
    prefix = job.job_spec.fileNamePrefix
    return {
        "files": [FileRecord(fileName=n, key="/".join([*prefix, n])) for n in names],
        "uploading_status": heard.upload_status or "unknown",
        "failover_uids": _merged_uids(job, heard),
    }


def _merged_uids(job: JobRecord, heard: NcsRecording) -> list[str]:
    return [*job.failover_uids, *(u for u in heard.new_uids if u not in job.failover_uids)]


def _after_already_stopping(rt: Runtime, job: JobRecord, now: float) -> Next:
    # 49: the task is exiting (our own earlier stop, or the recorder leaving by itself). Give
    # the stop that is under way time to record the files, then settle for what we know.
    if _finish_from_ncs(rt, job, _gone_state(job)):
        return DONE
    count = rt.store.count_delivery(job.job_id, "stop49")
    if count < MAX_ALREADY_STOPPING:
        return _stop_again(rt, job.job_id, 5.0, "the task is already exiting (49)")
    _finish(rt, job, _gone_state(job), uploading_status="unknown")
    return DONE


def _after_not_found(rt: Runtime, job: JobRecord, exc: ApiError, now: float) -> Next:
    if _finish_from_ncs(rt, job, _gone_state(job)):
        return DONE  # NCS saw the session end: the 404 is not a failover
    if not note_missing(rt, job, {S.STOPPING}, now):
        return _stop_again(rt, job.job_id, missing_probe_interval(rt.settings), "404")
    target = _gone_state(job)
    error = exc.as_record() if target == S.IDLE_EXIT else None
    _finish(rt, job, target, error=error, uploading_status="unknown")
    return DONE


# -- 404 evidence ------------------------------------------------------------------------------
MIN_MISSING_PROBES = 3


def missing_probe_interval(settings: Settings) -> float:
    """How long to wait between 404 probes: several fit in one failover window."""
    return min(10.0, max(1.0, settings.failover_window / 4))


def note_missing(rt: Runtime, job: JobRecord, sources: set[JobState], now: float) -> bool:
    """Record one more 404 for the job's task; True once the task is proven gone.

    A 404 "failed to find worker" also answers during a failover (docs/service/errors.md#not-found),
    and failovers can come back to back. Gone means: 404 and nothing but 404 for longer than the
    failover window, over at least ``MIN_MISSING_PROBES`` answers. Any other answer resets the run
    (:func:`clear_missing`).
    """
    since = job.missing_since if job.missing_since is not None else now
    count = job.missing_count + 1
    rt.store.transition(job.job_id, sources, None, missing_since=since, missing_count=count)
    return count >= MIN_MISSING_PROBES and now - since >= rt.settings.failover_window


def clear_missing(rt: Runtime, job: JobRecord, sources: set[JobState]) -> None:
    """An answer other than 404: whatever run of 404s there was is broken."""
    if job.missing_since is not None or job.missing_count:
        rt.store.transition(job.job_id, sources, None, missing_since=None, missing_count=0)


_UNSTARTED: dict[str, str] = {
    StopReason.STOP: "stopped before the recording started",
    StopReason.ERROR: "failed before the recording started",
}


def _end_unstarted(rt: Runtime, job: JobRecord) -> Next:
    """The deadline, a stop or a cancel reached a job that never got a sid."""
    if job.stop_reason == StopReason.CANCEL:
        rt.store.transition(job.job_id, {S.QUEUED, S.ACQUIRING}, S.CANCELLED)
        return DONE
    why = _UNSTARTED.get(job.stop_reason or "", "the deadline passed before the recording started")
    # STARTING is left out on purpose: its start may have reached the service (seek_sid).
    _fail(rt, job.job_id, {"reason": why}, sources={S.QUEUED, S.ACQUIRING})
    return DONE


def _sid_for_stop(rt: Runtime, job: JobRecord, now: float) -> JobRecord:
    """The job, with the sid of its start if anything tells it now."""
    found = find_sid(rt, job)
    if found is None:
        return job
    sid, source = found
    rt.ncs.claim(sid, job.job_id)
    rt.store.transition(job.job_id, {S.STARTING}, None, sid=sid, started_at=now, sid_source=source)
    log.info(
        "job %s: stopping the recording whose start answer was lost (sid from %s)",
        job.job_id,
        source,
        extra={"job_id": job.job_id, "sid": sid},
    )
    return rt.store.get(job.job_id)


def _stop_without_sid(rt: Runtime, job: JobRecord, now: float) -> Next:
    """The deadline (or a stop, a cancel) reached a job whose start may be running, sid unknown:
    keep the stop coming back every second while the sid is sought; never close the job as
    "never started"."""
    nxt = seek_sid(rt, job, now)
    if nxt.step == "watch":
        return _stop_again(rt, job.job_id, SID_POLL_SECONDS, "sid not known yet")
    if nxt.step == "acquire":
        # The start goes out again; the deadline's lease brings this stop back after it.
        rt.store.extend_due(Step.STOP, job.job_id, now + rt.settings.stop_lease)
    return nxt


def _needs_orphan_stop(job: JobRecord) -> bool:
    """A job that ended while its start was in flight, holding a sid never stopped."""
    return bool(job.sid) and job.stop_sent_at is None and job.state in (S.CANCELLED, S.FAILED)


def _stop_orphan(rt: Runtime, job: JobRecord, now: float) -> Next:
    """Stop the recording of a job that already ended (its stop deadline entry is the handle
    that keeps this going until it is done)."""
    with rt.leases.hold(Step.STOP, job.job_id) as mine:
        return _send_orphan_stop(rt, job, now) if mine else DONE


def _send_orphan_stop(rt: Runtime, job: JobRecord, now: float) -> Next:
    assert job.sid is not None and job.resource_id is not None
    fields: dict[str, Any] = {"stop_sent_at": now}
    try:
        response = rt.client_for(job.app).stop(job.resource_id, job.sid, job.cname, job.uid)
        fields |= _file_fields(job, response)
    except WorkerNotFound:
        if not note_missing(rt, job, {job.state}, now):
            return _stop_again(rt, job.job_id, missing_probe_interval(rt.settings), "404")
    except (EmptyRecording, AlreadyStopping, PermanentApiError):
        pass
    except ApiError:
        clear_missing(rt, job, {job.state})
        raise
    rt.store.transition(job.job_id, {job.state}, None, **fields)
    rt.store.unschedule(Step.STOP, job.job_id)
    return DONE


def _finish(
    rt: Runtime,
    job: JobRecord,
    target: JobState,
    *,
    response: StopResponse | None = None,
    error: dict[str, Any] | None = None,
    uploading_status: str | None = None,
    empty: bool = False,
) -> None:
    # An empty recording has no files; elsewhere, without a file list, the name is derivable,
    # except for a failed recording: its files may never have been written, and a job never
    # lists a file that does not exist.
    unknown = response is None and target == S.FAILED
    fields = {"files": []} if empty or unknown else _file_fields(job, response)
    heard = rt.ncs.get(job.sid) if job.sid else None
    if heard is not None and heard.new_uids:
        fields["failover_uids"] = _merged_uids(job, heard)
    if uploading_status is not None:
        fields["uploading_status"] = uploading_status
    if error is not None:
        fields["error"] = error
    rt.store.transition(job.job_id, {S.STOPPING}, target, **fields)


def _file_fields(job: JobRecord, response: StopResponse | None) -> dict[str, Any]:
    server = response.serverResponse if response else None
    names = file_names(server.fileList) if server else []
    if not names and job.sid:
        names = [expected_playlist_name(job.sid, job.cname)]
    prefix = job.job_spec.fileNamePrefix
    files = [FileRecord(fileName=n, key="/".join([*prefix, n])) for n in names]
    fields: dict[str, Any] = {"files": files}
    if server and server.uploadingStatus:
        fields["uploading_status"] = server.uploadingStatus
    return fields


def expected_playlist_name(sid: str, cname: str) -> str:
    """``<sid>_<cname>.m3u8`` with special characters replaced by ``-``
    (docs/service/files.md#naming)."""
    return playlist_name(sid, cname)


def _fail(
    rt: Runtime, job_id: str, error: dict[str, Any], *, sources: set[JobState] | frozenset[JobState]
) -> Next:
    rt.store.transition(job_id, sources, S.FAILED, error=error)
    return DONE


def fail_job(rt: Runtime, job_id: str, error: ApiError | dict[str, Any]) -> Next:
    """Give up on a job after its retries ran out; a job holding a sid is stopped, not failed."""
    record = error.as_record() if isinstance(error, ApiError) else error
    job = rt.store.get(job_id)
    if job.terminal:
        return DONE
    if job.sid:
        rt.store.transition(job_id, LIVE_STATES, None, error=record, stop_reason=StopReason.ERROR)
        return Next(Step.STOP)
    if job.state == S.STARTING and _start_may_have_run(error):
        # The last start got no answer (or its worker died): it may be recording. Stop it as
        # soon as its sid is known, through the stop step's search (never "never started").
        rt.store.transition(job_id, {S.STARTING}, None, error=record, stop_reason=StopReason.ERROR)
        rt.store.schedule(Step.STOP, job_id, time.time())
        return Next(Step.STOP)
    return _fail(rt, job_id, record, sources={S.QUEUED, S.ACQUIRING, S.STARTING})


def _start_may_have_run(error: ApiError | dict[str, Any]) -> bool:
    """Whether the last failure leaves open that a start took effect: no answer (a timeout, a
    lost connection) or a worker lost mid-step. An answer means it did not: a resource that
    started answers every later start with 201/7."""
    return not isinstance(error, ApiError) or isinstance(error, TransportError)


__all__ = [
    "DONE",
    "JobSpec",
    "JobSpecError",
    "Next",
    "acquire_step",
    "allocate_uid",
    "fail_job",
    "find_sid",
    "ncs_end_fields",
    "request_stop",
    "seek_sid",
    "start_step",
    "stop_release",
    "stop_step",
    "submit",
    "watch_step",
]

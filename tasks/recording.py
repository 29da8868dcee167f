"""Celery tasks: thin adapters from messages to :mod:`worker.recording` steps.

Every message carries a job id and nothing else (Flower and the broker show task arguments),
except ``recording.submit``, whose argument is the caller's spec (a token in it must be sealed,
see :mod:`worker.vault`). A task loads nothing itself: it runs one step, then turns the step's
:class:`Next` and its errors into Celery actions (retry with backoff, the next task, a failed
job). Task names are stable: other services and Flower rely on them.

The public tasks (``recording.submit``, ``status``, ``cancel``, ``stop_now``) are what callers
send, on the intake queue (docs/tasks.md is their contract); every other task is an internal
step on cloudrec's own queues (:mod:`worker.queues`).

How each step is routed, prioritised and retried is one table, :data:`worker.steps.STEPS`;
how each is sent is :data:`SENDERS`. Size: over 400 lines because every task Celery registers
from this module shares the one retry policy and sender table; splitting them would make the
task modules import each other.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Task, signals
from celery.exceptions import Retry
from celery.signals import worker_init

from config import DEFAULT_APP
from worker import callbacks, merge, recording
from worker.celery_app import PRIORITY_STEPS, RECORDING_QUEUE, app, runtime
from worker.errors import (
    Action,
    ApiError,
    JobNotFound,
    JobSpecError,
    NotDurable,
    RateLimitedByService,
    RateLimitWait,
    TransportError,
)
from worker.keys import job_key
from worker.leases import PendingSends
from worker.planner import PlannedStop
from worker.reconcile import reconcile as reconcile_round
from worker.recording import DONE, Next
from worker.redis_conn import confirm_replicated
from worker.restorer import Holdings, dead_workers, kombu_restorer, restore_dead_workers
from worker.runtime import Runtime
from worker.states import TERMINAL_STATES, JobState
from worker.steps import Step, StopReason, attempts, due_leases, priority, task_name
from worker.store import DueEntry, JobRecord, JobStore, peek

log = logging.getLogger("cloudrec.tasks")

StepFunc = Callable[[Runtime, str], Next]
# Sends a step's task for a job: (job id, countdown, producer).
Sender = Callable[[str, float | None, Any], None]

MAX_BACKOFF = 60.0  # countdowns stay short: see worker.celery_app
DISPATCH_BATCH = 500  # due entries claimed per round trip
DISPATCH_TIME_BUDGET = 0.8  # seconds one dispatch may keep claiming (the next one is 1 s away)
# How long a stop the dispatcher sent counts as on its way (worker.leases.PendingSends): a stop
# task lost in the instant a worker takes it is sent again after this.
PENDING_SEND_TTL = 20.0
# How long a claimed due entry stays claimed, per action (worker.steps.STEPS; a stop's lease is
# CLOUDREC_STOP_LEASE).
DUE_LEASES = due_leases()


def backoff(attempt: int, base: float = 1.0) -> float:
    """Exponential backoff with jitter: about base * 2^attempt, capped, never all at once."""
    ceiling = min(MAX_BACKOFF, base * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)


def start_chain(job_id: str) -> Any:
    """acquire -> start, back to back in one task (:func:`start_inline`): a resourceId is only
    good for minutes (docs/service/api-contract.md#acquire)."""
    return acquire.si(job_id)


def follow(job_id: str, nxt: Next) -> None:
    """Send whatever the finished step asked for. ``None`` means nothing to do; a start follows
    its acquire inside the acquire's task (:func:`start_inline`), so a step asking for it sends
    nothing."""
    if nxt.step is not None and nxt.step != Step.START:
        SENDERS[nxt.step](job_id, nxt.delay or None, None)


def run_step(task: Task, step: Step, job_id: str, func: StepFunc) -> None:
    """Run one step with the redelivery cap and the retry policy of the error tree."""
    rt = runtime()
    delivery = f"{step}:{task.request.id}"
    redelivered = is_redelivery(task)
    if redelivered and _redelivered_too_often(rt, delivery, job_id):
        follow(job_id, recording.fail_job(rt, job_id, _redelivery_error(step)))
        return

    def retry(countdown: float) -> None:
        raise task.retry(countdown=countdown, max_retries=None)

    nxt = attempt_step(rt, step, job_id, func, retry, delivery, task.request.retries or 0)
    if nxt is None:
        return
    if redelivered:
        rt.store.forget_delivery(job_id, delivery)
    if step == Step.ACQUIRE and nxt.step == Step.START:
        nxt = start_inline(rt, job_id, delivery)
    follow(job_id, nxt)


def start_inline(rt: Runtime, job_id: str, delivery: str) -> Next:
    """The start step, run in the acquire's task rather than a task of its own: a resourceId is
    good for minutes, and a message less per job is about a sixth less Celery work per job.

    The guarantees are the chain's. A retry is sent as the start task (its countdown, its
    attempt count), as the chain's start would have retried. If the worker dies in the middle,
    the acquire's message is delivered again (acks_late) and the acquire step passes a job
    already starting on to start, which sends its start again only on the same resource and
    under the start claim: never a second recording.
    """

    def retry(countdown: float) -> None:
        # retries=1: the message is a retry (worker.restorer, the redelivery cap count so).
        start.apply_async((job_id,), countdown=countdown, retries=1)

    nxt = attempt_step(rt, Step.START, job_id, recording.start_step, retry, delivery, 0)
    return DONE if nxt is None else nxt


# Sends (or raises) a step's retry, given its countdown.
Retrier = Callable[[float], None]


def attempt_step(
    rt: Runtime,
    step: Step,
    job_id: str,
    func: StepFunc,
    retry: Retrier,
    delivery: str,
    retries: int,
) -> Next | None:
    """Run ``func`` under the retry policy of the error tree. Returns what the step asks for
    next, or None when it was handled here (a retry sent, or the job failed after its last
    attempt). ``delivery``: the task delivery whose counter to forget if the job fails."""
    try:
        return func(rt, job_id)
    except (redis.ConnectionError, redis.TimeoutError):
        # Redis (the job store and the broker) went away mid-step. The record is durable (AOF)
        # and every step resumes from it: try again shortly. If even the retry cannot be
        # published, the reconciler re-drives the job once Redis is back.
        log.warning("job %s: %s: Redis unreachable, retrying", job_id, step)
        countdown = backoff(retries)
    except RateLimitWait as exc:
        # Not a failure: the shared budget is spent. Come back later without holding the slot.
        rt.metrics.limiter_wait(exc.priority or step, exc.app)
        countdown = _retry_countdown(rt, step, job_id, exc.retry_after + random.uniform(0, 0.25))
    except ApiError as exc:
        if exc.action not in (Action.RETRY, Action.AMBIGUOUS):
            raise  # every other class is decided inside the step; reaching here is a bug
        failures = rt.store.count_delivery(job_id, f"{step}:failures")
        if failures >= attempts(step):
            log.warning(
                "job %s: %s gave up after %d attempts: %s",
                job_id,
                step,
                failures,
                exc,
                extra={"job_id": job_id},
            )
            rt.store.forget_delivery(job_id, delivery)
            follow(job_id, recording.fail_job(rt, job_id, exc))
            return None
        rt.metrics.retry(step, type(exc).__name__, exc.app)
        countdown = _retry_countdown(rt, step, job_id, backoff(failures, _backoff_base(exc, step)))
    retry(countdown)
    return None


def _backoff_base(exc: ApiError, step: Step | None = None) -> float:
    """Where a class's exponential backoff starts. No answer at all is most often a pooled
    connection the server had just closed: the first retry comes within 0.2 s (a deadline stop
    must not lose seconds to it), then 0.4, 0.8, ... A 429 means we were too fast: start at 2-4 s,
    except for a stop: stops are paced at the budget's rate (worker.planner), so a 429 is one
    call arriving a hair early in the service's window; the client has already sent it again
    at once a few times (worker.client.STOP_429_RESENDS), and the task tries again within 0.5 s
    (through the shared limiter). Everything else: 1-2 s, doubling."""
    if isinstance(exc, TransportError):
        return 0.1
    if isinstance(exc, RateLimitedByService):
        return 0.25 if step == Step.STOP else 2.0
    return 1.0


def _retry_countdown(rt: Runtime, step: Step, job_id: str, countdown: float) -> float:
    if step == Step.STOP:
        # The retry is the next attempt: the deadline's lease must not fire a second one first.
        rt.store.extend_due(Step.STOP, job_id, time.time() + countdown + rt.settings.stop_lease)
    return countdown


def is_redelivery(task: Task) -> bool:
    """Whether this message was taken before by a worker that died holding it: whoever put it
    back (kombu's own restore, worker.restorer) marked it redelivered."""
    return bool((task.request.delivery_info or {}).get("redelivered"))


def _redelivered_too_often(rt: Runtime, delivery: str, job_id: str) -> bool:
    # Cap the redeliveries of one message (its worker died running it each time) so a poison
    # job cannot loop forever. Only a redelivery is counted: a first delivery and a retry (a
    # new message with the same task id) cannot be one, and counting every run cost two round
    # trips per task (benchmarks/README.md, session 11).
    return rt.store.count_delivery(job_id, delivery) > rt.settings.max_deliveries


def _redelivery_error(step: Step) -> dict[str, Any]:
    return {"operation": step, "reason": f"{step} redelivered too often (worker lost)"}


# -- the tasks -----------------------------------------------------------------------------
def submit_and_start(
    rt: Runtime,
    spec: Any,
    *,
    via_broker: bool = False,
    minted: bool = False,
    redelivered: bool = False,
) -> tuple[JobRecord, bool]:
    """Store a job and send its acquire -> start task (unless it has a later ``start_at``).

    If the task cannot be sent, the job is removed again: nothing is left half-done. This is
    also the way to submit a spec with a plain RTC token: it goes into the vault encrypted
    before anything is queued.

    ``redelivered``: this submit's message was taken before by a worker that died. The job may
    exist already, its start unsent or cut short: it is resumed (:func:`resume_submit`).
    """
    job, created = recording.submit(rt, spec, via_broker=via_broker, minted=minted)
    if not created and redelivered:
        resume_submit(rt, job)
    if created and job.start_at is None:
        try:
            start_chain(job.job_id).apply_async()
        except Exception:
            rt.store.delete(job.job_id)
            rt.vault.delete(job.job_id)
            raise
    # Acknowledged only once a replica holds the job, its deadline and its first message
    # (CLOUDREC_REDIS_WAIT_REPLICAS): a failover then loses no job its caller was told of.
    # NotDurable otherwise; the same spec submitted again returns this job (job_id).
    confirm_replicated(
        rt.redis, [job_key(job.job_id)], rt.settings.wait_replicas, rt.settings.redis_wait_timeout
    )
    return job, created


def resume_submit(rt: Runtime, job: JobRecord) -> None:
    """Finish what a submit that died after storing its job may have left undone: the stop
    deadline, the scheduled start, the acquire -> start chain. A job still ``queued`` (nothing
    ran yet) gets its chain again; should the first one be on its way after all, the second
    acquire finds the job moving on and its start finds the claim or the sid (one recording).

    A job acquiring, or starting without a sid, may have been cut short (its acquire task's
    worker died; that message comes back too): its acquire task goes again, and passes a job
    already starting on to start, which only repeats the start on the same resource, under the
    start claim."""
    if job.start_at is None and (
        job.state == JobState.ACQUIRING or (job.state == JobState.STARTING and not job.sid)
    ):
        log.info(
            "job %s: submit redelivered while %s; sending its start again", job.job_id, job.state
        )
        start_chain(job.job_id).apply_async()
        return
    if job.state != JobState.QUEUED:
        return
    rt.store.restore_deadline(job.job_id, recording.stop_release(job))
    if job.start_at is not None:
        if rt.store.due_at(Step.START, job.job_id) is None:
            rt.store.schedule(Step.START, job.job_id, job.start_at)
        return
    log.info("job %s: submit redelivered; sending its start again", job.job_id)
    start_chain(job.job_id).apply_async()


def request_stop(rt: Runtime, job_id: str, reason: StopReason) -> JobRecord:
    """Stop (:attr:`StopReason.STOP`) or cancel (:attr:`StopReason.CANCEL`) a job now, before
    its deadline."""
    job = recording.request_stop(rt, job_id, reason)
    if not job.terminal:
        stop.apply_async((job_id,))
    return job


# -- the public tasks: served on the intake queue (docs/tasks.md is their contract) ----------
# A caller's mistake (a bad spec, an unknown id) is an expected outcome (``throws``): the worker
# logs it in one line, without a traceback, and the caller gets it as exc_type/exc_message.
CALLER_ERRORS = (JobSpecError, JobNotFound, NotDurable)


@app.task(
    name=task_name(Step.SUBMIT),
    bind=True,
    priority=priority(Step.SUBMIT),
    ignore_result=False,
    throws=CALLER_ERRORS,
    public=True,
)
def submit(self: Task, spec: dict[str, Any]) -> str:
    """Validate and store a job, start it (or schedule its start). Returns the job id.

    A token in ``spec`` must be sealed (:func:`worker.vault.seal_token`): this message sat in
    the broker.
    """
    job, _ = submit_and_start(runtime(), spec, via_broker=True, redelivered=is_redelivery(self))
    return job.job_id


@app.task(
    name=task_name(Step.STATUS),
    priority=priority(Step.STATUS),
    ignore_result=False,
    throws=CALLER_ERRORS,
    public=True,
)
def status(job_id: str) -> dict[str, Any]:
    """The job's status JSON (``cloudrec status JOB --json``)."""
    return runtime().store.get(job_id).status_json()


@app.task(
    name=task_name(Step.CANCEL),
    priority=priority(Step.CANCEL),
    ignore_result=False,
    throws=CALLER_ERRORS,
    public=True,
)
def cancel(job_id: str) -> dict[str, Any]:
    """``cloudrec cancel``: a job not started yet never starts; a live one is stopped now.
    Returns the status JSON after the request (the stop itself follows on the control queue)."""
    return request_stop(runtime(), job_id, StopReason.CANCEL).status_json()


@app.task(
    name=task_name(Step.STOP_NOW),
    priority=priority(Step.STOP_NOW),
    ignore_result=False,
    throws=CALLER_ERRORS,
    public=True,
)
def stop_now(job_id: str) -> dict[str, Any]:
    """``cloudrec stop``: stop the recording now, before its deadline; returns the status JSON."""
    return request_stop(runtime(), job_id, StopReason.STOP).status_json()


@app.task(
    name=task_name(Step.ACQUIRE), bind=True, priority=priority(Step.ACQUIRE), max_retries=None
)
def acquire(self: Task, job_id: str) -> None:
    run_step(self, Step.ACQUIRE, job_id, recording.acquire_step)


@app.task(name=task_name(Step.START), bind=True, priority=priority(Step.START), max_retries=None)
def start(self: Task, job_id: str) -> None:
    run_step(self, Step.START, job_id, recording.start_step)


@app.task(name=task_name(Step.WATCH), bind=True, priority=priority(Step.WATCH), max_retries=None)
def watch(self: Task, job_id: str) -> None:
    run_step(self, Step.WATCH, job_id, recording.watch_step)


@app.task(name=task_name(Step.STOP), bind=True, priority=priority(Step.STOP), max_retries=None)
def stop(self: Task, job_id: str, call_at: float | None = None) -> None:
    """``call_at``: the time its stop call goes (the task is delivered STOP_PREPARE_LEAD
    before it); a retry keeps it, by then past."""
    # Begun: from here the lease heartbeat (or this task's retry) keeps the deadline's lease.
    PendingSends(runtime().redis, PENDING_SEND_TTL).begun(Step.STOP, job_id)
    run_step(self, Step.STOP, job_id, functools.partial(recording.stop_step, call_at=call_at))


@app.task(
    name=task_name(Step.CALLBACK), bind=True, priority=priority(Step.CALLBACK), max_retries=None
)
def callback(self: Task, job_id: str) -> None:
    """Deliver a finished job's completion callbacks (:mod:`worker.callbacks`), in one of this
    worker's few delivery slots."""
    retry_in = callbacks.deliver(
        runtime(),
        job_id,
        _send_callback_task,
        node=self.request.hostname or "local",
        pool_size=_pool_size(),
        waited=self.request.retries or 0,
    )
    if retry_in is not None:
        raise self.retry(countdown=retry_in, max_retries=None)


@app.task(name=task_name(Step.MERGE), bind=True, priority=priority(Step.MERGE), max_retries=None)
def merge_job(self: Task, job_id: str) -> None:
    """Join a finished job's files into one MP4 (:mod:`worker.merge`), in one of this process's
    merge slots; its outcome (or error) is recorded on the job, never changing its state."""
    retry_in = merge.merge_step(runtime(), job_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in, max_retries=None)


_worker: dict[str, Any] = {}


@worker_init.connect
def _remember_worker(sender: Any = None, **_: Any) -> None:
    # The pool size is the worker's, not a setting: a task learns it from here (forked prefork
    # children inherit it).
    _worker["controller"] = sender


def _pool_size() -> int:
    controller = _worker.get("controller")
    sizes = (getattr(controller, "concurrency", 0), getattr(controller, "max_concurrency", 0))
    return max([s for s in sizes if isinstance(s, int)] or [1])


def _send_callback_task(name: str, args: list[Any]) -> None:
    app.send_task(name, args=args, queue=runtime().settings.callback_queue)


@app.task(name=task_name(Step.DISPATCH), ignore_result=True, priority=priority(Step.DISPATCH))
def dispatch() -> int:
    """Beat, every second: fire the scheduled starts, stop deadlines, callbacks and merges due
    (or due within the lookahead: those are sent to run at their second)."""
    rt = runtime()
    restore_lost_messages(rt)
    fired = 0
    started = time.monotonic()
    while time.monotonic() - started < DISPATCH_TIME_BUDGET:
        entries = rt.store.claim_due_entries(
            time.time(),
            lease=rt.settings.stop_lease,
            limit=DISPATCH_BATCH,
            lookahead=rt.settings.dispatch_lookahead,
            leases=DUE_LEASES,
        )
        send_due(plan_stops(rt, entries))
        fired += len(entries)
        if len(entries) < DISPATCH_BATCH:
            break
    return fired + send_planned(rt)


# A job in these states, stopped for its deadline, has its stop planned against the API budget;
# every other stop (a cancel, a stop-now, a failure, a stop in flight whose lease ran out) goes
# at once, as before.
_UNPLANNED_STATES = {str(JobState.STOPPING), *(str(s) for s in TERMINAL_STATES)}


def plan_stops(rt: Runtime, entries: list[DueEntry]) -> list[DueEntry]:
    """Take the claimed deadline stops into their app's budget's plan (:mod:`worker.planner`):
    each App ID's budget is planned on its own, at its rate. Returns the entries to send as
    they are."""
    stops = [e for e in entries if e.action == Step.STOP]
    if not stops:
        return entries
    names = ["state", "stop_reason", "stop_at", "stop_early_max", "app"]
    found = peek(rt.redis, [entry.job_id for entry in stops], names)
    plans = rt.stop_plans()
    planned: dict[str, list[PlannedStop]] = {}
    direct: set[str] = set()
    for entry, fields in zip(stops, found, strict=True):
        if fields is None:
            direct.add(entry.job_id)  # gone: the stop step says so
            continue
        stopped = fields["stop_reason"] is not None  # a stop or a cancel
        name = str(fields["app"] or DEFAULT_APP).lower()
        stop_at, early = fields["stop_at"], fields["stop_early_max"]
        if stopped or str(fields["state"]) in _UNPLANNED_STATES:
            direct.add(entry.job_id)
            continue
        if name not in plans:
            # An app no longer configured: no budget to plan on; the stop step says why.
            direct.add(entry.job_id)
            continue
        planned.setdefault(name, []).append(
            PlannedStop(entry.job_id, float(stop_at), float(early or 0))
        )
    for name, app_stops in planned.items():
        plans[name].admit(app_stops)
    return [e for e in entries if e.action != Step.STOP or e.job_id in direct]


def send_planned(rt: Runtime) -> int:
    """Send the planned stops whose time comes within this round, each to run at its time:
    every configured app's budget, each on its own."""
    settings = rt.settings
    sent = 0
    for plan in rt.stop_plans().values():
        now = time.time()
        sends = plan.round(
            now, horizon=max(1.0, settings.dispatch_lookahead), lease=settings.stop_lease
        )
        if sends:
            with app.producer_or_acquire() as producer:
                for stop_, at in sends:
                    _send_stop(stop_.job_id, countdown_to(at), producer)
        sent += len(sends)
    return sent


def restore_lost_messages(rt: Runtime) -> int:
    """Put back on their queues the messages held by workers that died (:mod:`worker.restorer`):
    within seconds, where the broker would wait for its visibility timeout."""
    now = time.time()
    if not dead_workers(rt.redis, now):
        return 0
    with app.connection_for_write() as conn:
        return restore_dead_workers(rt.redis, kombu_restorer(conn.default_channel), now)


# -- what this worker process holds (for the restorer) --------------------------------------------
_holdings: Holdings | None = None


@signals.task_received.connect
def _on_task_received(request: Any = None, **_: Any) -> None:
    """In the consuming process, as a message is handed over (before an ETA wait or a run)."""
    global _holdings
    message = getattr(request, "message", None)
    tag = getattr(message, "delivery_tag", None)
    if tag is None:
        return
    try:
        rt = runtime()
        if _holdings is None or _holdings.redis is not rt.redis:  # first, or re-configured
            if _holdings is not None:
                _holdings.close()
            _holdings = Holdings(rt.redis)
        _holdings.received(str(tag), message)
    except redis.RedisError as exc:  # the message still comes back after visibility_timeout
        log.warning("could not record a received message: %s", exc)


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    global _holdings
    if _holdings is not None:
        try:
            _holdings.close()
        except redis.RedisError as exc:  # its messages are restored as a dead worker's
            log.warning("could not forget this worker's holdings: %s", exc)
        _holdings = None


def send_due(entries: list[DueEntry]) -> None:
    """Send the task of each claimed due entry, timed to its due second, over one connection."""
    if not entries:
        return
    rt = runtime()
    sent = PendingSends(rt.redis, PENDING_SEND_TTL)
    entries = _not_pending(sent, entries)
    now = time.time()
    fire_at = fire_times(rt.store, entries, now)
    with app.producer_or_acquire() as producer:
        for entry, at in zip(entries, fire_at, strict=True):
            # Early entries (the lookahead) wait in the worker until their second; others go now.
            countdown = countdown_to(at)
            sender = SENDERS.get(entry.action)
            if sender is not None:
                sender(entry.job_id, countdown, producer)
    sent.mark(Step.STOP, [e.job_id for e in entries if e.action == Step.STOP])


def countdown_to(at: float) -> float | None:
    """The countdown that runs a task at ``at`` (epoch seconds), taken as the message is sent:
    a round sends hundreds, and a countdown taken once before them all would have each message
    run later than its time by what the sends before it took. None: at once."""
    countdown = at - time.time()
    return countdown if countdown > 0.01 else None


def _not_pending(sent: PendingSends, entries: list[DueEntry]) -> list[DueEntry]:
    """Leave out the stops whose task was sent and has not begun (worker.leases.PendingSends):
    their claim has pushed the lease on, and the task already on its way does the stop."""
    stops = [e.job_id for e in entries if e.action == Step.STOP]
    pending = {i for i, p in zip(stops, sent.pending(Step.STOP, stops), strict=True) if p}
    return [e for e in entries if not (e.action == Step.STOP and e.job_id in pending)]


def fire_times(store: JobStore, entries: list[DueEntry], now: float) -> list[float]:
    """When to run each entry's task: at its due time, except an early stop whose deadline has
    passed. That is a lease running out (the attempt it covered was lost with its worker, or it
    would have renewed the lease): it goes at once rather than wait in a worker's memory for
    the lease's own end, where another kill could lose it again."""
    early_stops = [e.job_id for e in entries if e.action == Step.STOP and e.due > now]
    if not early_stops:
        return [e.due for e in entries]
    deadlines = dict(zip(early_stops, store.stop_times(early_stops), strict=True))
    return [
        min(e.due, deadlines.get(e.job_id) or e.due) if e.action == Step.STOP else e.due
        for e in entries
    ]


@app.task(name=task_name(Step.RECONCILE), ignore_result=True, priority=priority(Step.RECONCILE))
def reconcile() -> dict[str, int | bool]:
    """Beat, every 30 s: one reconciler round (:mod:`worker.reconcile`); sends what it asks."""
    rt = runtime()
    report = reconcile_round(rt, backlog=queue_backlog(rt))
    for job_id, nxt in report.redrive:
        follow(job_id, nxt)
    summary = report.summary()
    if any(v for k, v in summary.items() if k != "budget_exhausted"):
        log.info("reconcile: %s", summary)
    return summary


def queue_backlog(rt: Runtime) -> int:
    """Messages waiting in the recording queue, every priority (kombu keeps one list each)."""
    sep = "\x06\x16"
    keys = [RECORDING_QUEUE] + [f"{RECORDING_QUEUE}{sep}{p}" for p in PRIORITY_STEPS if p]
    with rt.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())


# -- how each step is sent (follow, send_due) ------------------------------------------------
def _send_start_chain(job_id: str, countdown: float | None, producer: Any) -> None:
    # A job's start (follow: "acquire"; a due scheduled start: "start") is always the
    # acquire -> start chain.
    start_chain(job_id).apply_async(countdown=countdown, producer=producer)


def _send_watch(job_id: str, countdown: float | None, producer: Any) -> None:
    watch.apply_async((job_id,), countdown=countdown, producer=producer)


# A stop timed for a later second is delivered this much before it: the step does its Redis
# work (delivery count, lease, transition) first and then waits for the second to make its call.
# That work, and whatever held up the worker's timer or pool meanwhile, is then not added to
# the stop's lateness; the call itself never goes before its time.
STOP_PREPARE_LEAD = 0.25


def _send_stop(job_id: str, countdown: float | None, producer: Any) -> None:
    if countdown is None:
        stop.apply_async((job_id,), producer=producer)
        return
    call_at = time.time() + countdown
    early = countdown - STOP_PREPARE_LEAD
    stop.apply_async(
        (job_id,),
        {"call_at": call_at},
        countdown=early if early > 0.01 else None,
        producer=producer,
    )


def _send_callback(job_id: str, countdown: float | None, producer: Any) -> None:
    # At once: a callback's slot in the callbacks queue is its wait (countdown unused).
    callback.apply_async((job_id,), producer=producer)


def _send_merge(job_id: str, countdown: float | None, producer: Any) -> None:
    merge_job.apply_async((job_id,), producer=producer)


# Keyed by step, looked up by a due entry's action too (the same strings).
SENDERS: dict[str, Sender] = {
    Step.ACQUIRE: _send_start_chain,
    Step.START: _send_start_chain,
    Step.WATCH: _send_watch,
    Step.STOP: _send_stop,
    Step.CALLBACK: _send_callback,
    Step.MERGE: _send_merge,
}


__all__ = [
    "Retry",
    "acquire",
    "callback",
    "cancel",
    "dispatch",
    "fire_times",
    "follow",
    "merge_job",
    "reconcile",
    "send_due",
    "start",
    "start_chain",
    "status",
    "stop",
    "stop_now",
    "submit",
    "watch",
]

"""The Celery application: broker, queues, reliability settings, the beat schedule.

A worker or beat process builds its :class:`Settings` here, at import (its edge), and every task
gets its dependencies from :func:`runtime`. Tests and the CLI call :func:`configure` with their
own settings before starting a worker.

Reliability choices (docs/design.md#scheduling):

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task whose worker dies is delivered again.
  Safe only because every step is idempotent against the job record.
- ``worker_prefetch_multiplier = 1``: a busy process does not sit on messages others could run.
- No long countdowns or ETAs (a Redis broker redelivers unacked messages after
  ``visibility_timeout``, and ETA tasks sit unacked in worker memory): stop deadlines live in
  Redis and the 1-second ``recording.dispatch`` beat task fires them (each stop is sent up to
  ``dispatch_lookahead`` seconds early with a countdown to its second, so it is not up to a beat
  late). Countdowns are only used for that, retry backoff and short watch intervals, always
  under a minute. That is what lets ``visibility_timeout`` be 5 minutes instead of Celery's hour,
  and no healthy message is ever held that long.
- Nothing waits for ``visibility_timeout`` either: each worker says which messages it holds and
  beats a heartbeat (:mod:`worker.restorer`), and the dispatcher puts the messages of a worker
  silent for ``HEARTBEAT_TTL`` (6 s) back on their queues. The visibility timeout is only the
  last resort (a worker killed in the microseconds between taking a message and recording it).
- Message priorities (``worker.steps.STEPS``): a job's next step is served before new jobs.
- Three queues, consumed in this order (``queue_layout``):

  - ``cloudrec.control`` (stop, dispatch): nothing else ever waits there, so a backlog anywhere
    never delays a stop;
  - ``cloudrec.recording`` (acquire, start, watch, reconcile): jobs under way;
  - the public **intake**, ``CLOUDREC_INTAKE_QUEUE`` (default ``cloudrec``): the only queue
    callers send to, and only the public tasks (``PUBLIC_TASKS``) are served from it;
  - ``cloudrec.callbacks`` (``recording.callback``): completion deliveries, with a bounded
    share of each worker (:mod:`worker.callbacks`), so a slow webhook receiver never holds
    what a stop needs.

  The Redis transport polls every queue's priority-0 list before any queue's priority-3 list
  (``priority_steps``), then each in the order above. Callers' messages usually carry no
  priority (a plain ``send_task``, a hand-built message: priority 0), so the steps that must
  not wait behind a flood of new jobs are priority 0 too, on a queue polled before the intake:
  stops and the dispatcher (control), starts and watches (recording). Completion callback
  *tasks* named by a job go to ``CLOUDREC_CALLBACK_QUEUE`` (the caller's workers).
- No ``-Q`` needed: ``task_queues`` is the layout, and a worker started without ``-Q``
  (``celery -A worker.celery_app worker``) consumes exactly it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from celery import Celery, Task, signals
from celery.exceptions import Reject
from kombu import Exchange, Queue

from config import Settings

# The layout lives in worker.queues; re-exported here, where callers have always found it.
from worker.keys import REDBEAT_PREFIX
from worker.logs import connect_celery_logging
from worker.queues import CALLBACKS_QUEUE as CALLBACKS_QUEUE
from worker.queues import CONTROL_QUEUE as CONTROL_QUEUE
from worker.queues import PUBLIC_TASKS as PUBLIC_TASKS
from worker.queues import RECORDING_QUEUE as RECORDING_QUEUE
from worker.queues import intake_queues as intake_queues
from worker.queues import queue_layout as queue_layout
from worker.redis_conn import celery_redis_config
from worker.results import CloudrecCelery
from worker.runtime import Runtime
from worker.steps import STEPS, Step, priority, task_name
from worker.transport import transport_for

DISPATCH_INTERVAL = 1.0
RECONCILE_INTERVAL = 30.0
VISIBILITY_TIMEOUT = 300  # longer than any countdown (< 60 s) or task run (a stop: < 60 s)

# Message priorities (Redis transport: 0 is served first): each step's is in worker.steps.STEPS.
# Work on a job already under way jumps ahead of new jobs: a backlog of 10,000 submitted jobs
# must not stand between an acquire and its start (the resource is good for minutes, the service
# wants start within seconds), nor between a start and its watch.
PRIORITY_STEPS = [0, 3, 6, 9]

log = logging.getLogger("cloudrec.celery")


class CloudrecTask(Task):  # type: ignore[misc]  # Celery is untyped
    """Every cloudrec task: an internal one refuses a message that came in by the intake.

    The intake serves the public contract (docs/tasks.md) and nothing else: a step (acquire,
    stop, fire a schedule) sent there by mistake is refused and logged, not run. (This keeps the
    contract narrow; it is no security boundary: whoever can write to the broker can write to
    the internal queues as well.)
    """

    public = False
    # The steps a task sends (a submit's acquire) are not its caller's children: without this
    # Celery lists each in the task's stored answer, which callers keep for a day per job.
    trail = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.public and _by_intake(self.request):
            log.warning(
                "refused %s from the intake queue %r: only %s are served there",
                self.name,
                _routing_key(self.request),
                ", ".join(PUBLIC_TASKS),
            )
            raise Reject(f"{self.name} is not a public task", requeue=False)
        return super().__call__(*args, **kwargs)


def _routing_key(request: Any) -> str | None:
    info = getattr(request, "delivery_info", None) or {}
    key = info.get("routing_key")
    return str(key) if key is not None else None


def _by_intake(request: Any) -> bool:
    return _routing_key(request) in intake_queues(settings())


# Compact answers in the result backend (worker.results): a day of intake answers is a
# quarter of Redis's memory per job otherwise.
app = CloudrecCelery(
    "cloudrec", include=["tasks.recording", "tasks.schedules"], task_cls=CloudrecTask
)

_settings: Settings | None = None
_runtime: Runtime | None = None


def _queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from cloudrec's settings."""
    # Where Redis is (a URL, or Sentinel): broker_url, result_backend, redbeat_redis_url and
    # their options, from the one place that knows (worker.redis_conn). The result backend only
    # serves callers of send_task("recording.submit") who wait for the job id; job state lives
    # in the job store, never in Celery results.
    where = celery_redis_config(
        settings,
        {
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "priority_steps": PRIORITY_STEPS,
            # A worker on both queues serves by priority first, then queue order (control
            # first), instead of round robin.
            "queue_order_strategy": "priority",
        },
    )
    return where | {
        # kombu's Redis (or Sentinel) transport, except that a message Redis already popped
        # into a worker's socket is read at once, never left there for a SIGKILL to lose
        # (worker.transport).
        "broker_transport": transport_for(where["broker_url"]),
        "result_expires": 86_400,
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "task_default_priority": priority(Step.ACQUIRE),
        "worker_send_task_events": True,
        # Task events flushed twice a second rather than after each one (worker.consumer).
        "worker_consumer": "worker.consumer:BatchingEventsConsumer",
        "task_send_sent_event": True,
        "task_default_queue": RECORDING_QUEUE,
        # Each queue its own exchange and key: a bare Queue(name) would be bound to the default
        # exchange under the default queue's key, so both queues would share one binding.
        # Also what a worker without -Q consumes, in this order (see the module docstring).
        "task_queues": [_queue(name) for name in queue_layout(settings)],
        "task_routes": task_routes(settings),
        "worker_hijack_root_logger": False,
        # redbeat's scheduler, riding through a Redis failover (worker.schedules).
        "beat_scheduler": "worker.schedules:SteadyScheduler",
        "redbeat_key_prefix": REDBEAT_PREFIX,
        # A killed beat's lock lives this long, and a standby checks about once a second, so a
        # standby takes over within lock_timeout + ~2 s: 25 keeps that under 30 s.
        "redbeat_lock_timeout": 25,
        "beat_max_loop_interval": 1,
        "beat_schedule": {
            "cloudrec-dispatch": {
                "task": "recording.dispatch",
                "schedule": DISPATCH_INTERVAL,
                # A dispatch that waited this long is stale: the next one is already coming.
                "options": {"expires": 10, "priority": priority(Step.DISPATCH)},
            },
            "cloudrec-reconcile": {
                "task": "recording.reconcile",
                "schedule": RECONCILE_INTERVAL,
                "options": {
                    "expires": RECONCILE_INTERVAL,
                    "priority": priority(Step.RECONCILE),
                },
            },
        },
    }


def task_routes(settings: Settings) -> dict[str, dict[str, str]]:
    """Each step's queue (worker.steps.STEPS); any other cloudrec task: the recording queue."""
    routes = {
        task_name(step): {"queue": spec.queue or settings.intake_queue}
        for step, spec in STEPS.items()
    }
    return routes | {"recording.*": {"queue": RECORDING_QUEUE}}


def configure(settings: Settings) -> Celery:
    """Point the app (and every task's runtime) at ``settings``."""
    global _settings, _runtime
    if _runtime is not None:
        _runtime.close()
    moved = _settings is not None and _redis_place(_settings) != _redis_place(settings)
    _settings, _runtime = settings, None
    app.conf.update(celery_config(settings))
    if moved:
        _forget_connections(app)
    return app


def _redis_place(settings: Settings) -> tuple[object, ...]:
    return settings.redis_url, settings.redis_sentinels, settings.redis_master


def _forget_connections(celery: Celery) -> None:
    # Celery caches its producer pool and result backend on first use and does not rebuild them
    # when broker_url changes; without this, a process re-pointed at another Redis (tests, the
    # benchmarks' private Redis) would keep publishing to the old one. Same as Celery's own
    # after-fork reset. (The old pool stays open in kombu's registry, to be found again if the
    # process is pointed back at that Redis.)
    celery._pool = None
    amqp = celery.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    celery._backend_cache = None
    celery._local = threading.local()


def settings() -> Settings:
    if _settings is None:
        configure(Settings())
    assert _settings is not None
    return _settings


def runtime() -> Runtime:
    """This process's runtime, built on first use (after a prefork worker has forked). A
    worker's adds its metric counts up and writes them every METRICS_FLUSH_SECONDS."""
    global _runtime
    if _runtime is None:
        flush = METRICS_FLUSH_SECONDS if _worker_process.is_set() else None
        _runtime = Runtime.build(settings(), metrics_flush=flush)
    return _runtime


# A worker process writes its metric counts twice a second, in one round trip (worker.metrics):
# one round trip per count was five per job. Set by worker_init (before a prefork pool forks).
METRICS_FLUSH_SECONDS = 0.5
_worker_process = threading.Event()


def _counts_in_batches(**_: Any) -> None:
    _worker_process.set()


def _write_pending_counts(**_: Any) -> None:
    # A process that runs a worker for a while (a test's in-process worker) builds later
    # runtimes as before it.
    _worker_process.clear()
    if _runtime is not None:
        _runtime.metrics.flush()


signals.worker_init.connect(_counts_in_batches, weak=False)
signals.worker_shutdown.connect(_write_pending_counts, weak=False)


def job_log_fields(job_id: str) -> Mapping[str, str | None]:
    """The job's cname and sid from this process's job store (for its task's log lines)."""
    return runtime().store.log_fields(job_id)


configure(Settings())
# Every process started from this app (`celery -A worker.celery_app worker|beat` as much as
# `cloudrec worker|beat`) logs the same way: set up through Celery's own signals.
connect_celery_logging(settings, job_log_fields)

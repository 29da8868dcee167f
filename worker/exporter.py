"""The Prometheus exporter (``cloudrec metrics``): recording-level figures at ``/metrics``.

Nothing is kept in the exporter's memory. At each scrape :class:`CloudrecCollector` reads

- the counters every worker process adds to in Redis (:mod:`worker.metrics`): API calls by
  operation, HTTP status and API code; retries; rate-limiter waits; callback deliveries; the
  lateness of fired stops (a histogram);
- facts computed from the job store at that moment: jobs by state (and by state and app),
  recordings live and stops overdue (and by how much; both by app too), pending scheduled starts
  and stops, schedules;
- cloudrec task messages stranded on a queue no cloudrec worker serves (:mod:`worker.queues`:
  a caller that forgot ``queue="cloudrec"``).

So one exporter serves the whole deployment, however many workers there are, and any number of
exporters agree. If Redis does not answer, the scrape still succeeds with ``cloudrec_up 0``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from config import Settings
from config.settings import DEFAULT_APP
from worker.keys import ENDED_COUNT_APP_SEP, ENDED_COUNT_HOUR, ended_count_key
from worker.metrics import (
    API_CALLS,
    CALLBACKS,
    COUNTER_LABELS,
    LIMITER_WAITS,
    MERGES,
    NCS_EVENTS,
    NCS_REJECTED,
    RETRIES,
    SID_UNKNOWN,
    CounterSnapshot,
    read_counters,
)
from worker.ncs import UNCLAIMED_GRACE, NcsLedger
from worker.queues import stranded_counts
from worker.redis_conn import redis_client
from worker.schedules import SCHEDULES_KEY, schedule_key
from worker.states import ACTIVE_STATES, TERMINAL_STATES, JobState
from worker.store import DUE_KEY, peek, state_key

log = logging.getLogger("cloudrec.exporter")

DEFAULT_PORT = 9808
# A stop is "overdue" once its deadline is this far behind: the dispatcher runs every second.
OVERDUE_GRACE = 5.0
# Terminal jobs are counted among those that ended in this window (by the hour: the store counts
# them per hour, so a scrape costs the active jobs, not every job of the day).
TERMINAL_WINDOW = 24 * 3600.0

_COUNTERS = {
    API_CALLS: ("cloudrec_api_calls", "Recording API calls by operation, HTTP status and code"),
    RETRIES: ("cloudrec_retries", "Step retries by step and kind of failure"),
    LIMITER_WAITS: ("cloudrec_limiter_waits", "API calls deferred by the shared rate limiter"),
    CALLBACKS: ("cloudrec_callbacks", "Completion callback deliveries by kind and outcome"),
    MERGES: ("cloudrec_merges", "Merged MP4s of finished jobs by outcome (merged, error)"),
    NCS_EVENTS: ("cloudrec_ncs_events", "NCS notifications received by event type and outcome"),
    NCS_REJECTED: ("cloudrec_ncs_rejected", "NCS posts refused (unsigned, bad signature, ...)"),
    SID_UNKNOWN: (
        "cloudrec_sid_unknown",
        "Jobs ended not knowing the sid of a start that may have reached the service "
        "(a recording may be running that cloudrec cannot stop)",
    ),
}
_LIVE = (JobState.STARTING, JobState.RECORDING, JobState.STOPPING)


@dataclass
class JobFacts:
    """What the job store says at one moment."""

    active: dict[str, int] = field(default_factory=dict)
    # Active jobs by (state, app), from the records the scrape reads anyway (a job names its app;
    # absent: the default app).
    active_by_app: dict[tuple[str, str], int] = field(default_factory=dict)
    terminal: dict[str, int] = field(default_factory=dict)
    # Ended jobs by (state, app), from the same hourly counts; jobs counted by a version before
    # the by-app fields are in ``terminal`` only.
    terminal_by_app: dict[tuple[str, str], int] = field(default_factory=dict)
    recordings_live: int = 0
    recordings_live_by_app: dict[str, int] = field(default_factory=dict)
    stops_overdue: int = 0
    stops_overdue_by_app: dict[str, int] = field(default_factory=dict)
    max_overdue: float = 0.0
    due: dict[str, int] = field(default_factory=dict)
    schedules: dict[str, int] = field(default_factory=dict)
    ncs_unclaimed: int = 0


def read_job_facts(
    client: redis.Redis,
    now: float,
    *,
    window: float = TERMINAL_WINDOW,
    grace: float = OVERDUE_GRACE,
) -> JobFacts:
    """Jobs by state, live recordings, overdue stops, due-queue and schedules."""
    facts = JobFacts()
    active_ids = {str(s): _members(client, state_key(s)) for s in ACTIVE_STATES}
    facts.active = {state: len(ids) for state, ids in active_ids.items()}
    _read_deadlines(client, active_ids, now, grace, facts)
    facts.terminal, facts.terminal_by_app = _terminal_counts(client, now - window, now)
    facts.due = _due_counts(client)
    facts.schedules = _schedule_counts(client)
    facts.ncs_unclaimed = NcsLedger(client).count_unclaimed(now)
    return facts


def _members(client: redis.Redis, key: str) -> list[str]:
    return [_text(m) for m in client.smembers(key)]


def _read_deadlines(
    client: redis.Redis, active: dict[str, list[str]], now: float, grace: float, facts: JobFacts
) -> None:
    # Overdue is judged from the records, not the due-queue: a claimed stop leaves the queue's
    # score pushed forward by its lease while the job may still be running.
    ids = [job_id for ids in active.values() for job_id in ids]
    for fields in peek(client, ids, ["state", "stop_at", "sid", "app"]):
        if fields is None:
            continue  # ended between the two reads
        state, stop_at, sid = fields["state"], fields["stop_at"], fields["sid"]
        app = str(fields["app"] or DEFAULT_APP)
        if state in ACTIVE_STATES:
            by_app = (str(state), app)
            facts.active_by_app[by_app] = facts.active_by_app.get(by_app, 0) + 1
        if state in _LIVE and sid:
            facts.recordings_live += 1
            _add(facts.recordings_live_by_app, app)
        if isinstance(stop_at, int | float) and stop_at < now - grace:
            facts.stops_overdue += 1
            _add(facts.stops_overdue_by_app, app)
            facts.max_overdue = max(facts.max_overdue, now - stop_at)


def _add(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _terminal_counts(
    client: redis.Redis, since: float, now: float
) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Jobs that ended since ``since``, by state and by (state, app), from the hourly counts the
    job store keeps (worker.store): a few hashes, however many jobs ended (the hour ``since``
    falls in counts whole). A count written before the by-app fields existed adds to the
    by-state figures only: its jobs' apps were not counted, and guessing one would be wrong."""
    first, last = int(since) // ENDED_COUNT_HOUR, int(now) // ENDED_COUNT_HOUR
    with client.pipeline(transaction=False) as pipe:
        for hour in range(first, last + 1):
            pipe.hgetall(ended_count_key(hour))
        buckets = pipe.execute()
    counts = {str(s): 0 for s in TERMINAL_STATES}
    by_app: dict[tuple[str, str], int] = {}
    for bucket in buckets:
        for raw_field, raw_count in bucket.items():
            state, sep, app = _text(raw_field).partition(ENDED_COUNT_APP_SEP)
            if state not in counts:
                continue
            if sep:
                by_app[state, app] = by_app.get((state, app), 0) + int(raw_count)
            else:
                counts[state] += int(raw_count)
    return counts, by_app


def _due_counts(client: redis.Redis) -> dict[str, int]:
    counts = {"start": 0, "stop": 0}
    for member in client.zrange(DUE_KEY, 0, -1):
        action = _text(member).partition(":")[0]
        counts[action] = counts.get(action, 0) + 1
    return counts


def _schedule_counts(client: redis.Redis) -> dict[str, int]:
    names = _members(client, SCHEDULES_KEY)
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hget(schedule_key(name), "record")
        records = pipe.execute()
    counts = {"enabled": 0, "paused": 0}
    for raw in records:
        if raw is not None:
            counts["paused" if json.loads(raw).get("paused") else "enabled"] += 1
    return counts


class CloudrecCollector(Collector):
    """Renders :class:`CounterSnapshot` and :class:`JobFacts` at every scrape."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        window: float = TERMINAL_WINDOW,
        grace: float = OVERDUE_GRACE,
        clock: Callable[[], float] = time.time,
        settings: Settings | None = None,
    ) -> None:
        self._redis = client
        self._window = window
        self._grace = grace
        self._clock = clock
        # Only the queue layout is read from it; the defaults (no environment) if not given.
        self._settings = settings or Settings.model_construct()

    def describe(self) -> list[Metric]:
        return []  # registering must not read Redis

    def collect(self) -> Iterator[Metric]:
        try:
            counters = read_counters(self._redis)
            facts = read_job_facts(
                self._redis, self._clock(), window=self._window, grace=self._grace
            )
            stranded = stranded_counts(self._redis, self._settings)
        except redis.RedisError as exc:
            log.warning("metrics: Redis did not answer: %s", exc)
            yield _gauge("cloudrec_up", "1 if the exporter could read Redis", 0)
            return
        yield _gauge("cloudrec_up", "1 if the exporter could read Redis", 1)
        yield from counter_families(counters)
        yield lateness_family(counters)
        yield from fact_families(facts, self._window)
        yield from by_app_families(facts, self._settings.app_profiles(), self._window)
        yield stranded_family(stranded)


def counter_families(snapshot: CounterSnapshot) -> Iterator[Metric]:
    for key, (name, doc) in _COUNTERS.items():
        family = CounterMetricFamily(name, doc, labels=list(COUNTER_LABELS[key]))
        values = snapshot.counters.get(key, {})
        if not COUNTER_LABELS[key] and not values:
            # A counter without labels is exported from 0: increase() only sees a series that
            # existed before it went up, and its alert must fire on the very first one.
            values = {(): 0.0}
        for labels, value in sorted(values.items()):
            family.add_metric(list(labels), value)
        yield family


def lateness_family(snapshot: CounterSnapshot) -> Metric:
    family = HistogramMetricFamily(
        "cloudrec_stop_lateness_seconds",
        "Seconds from a job's stop_at to the service's answer to its stop, by app",
        labels=["app"],
    )
    for app, hist in snapshot.lateness.items():
        family.add_metric([app], hist.buckets, hist.sum)
    return family


def fact_families(facts: JobFacts, window: float) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "cloudrec_jobs",
        f"Jobs by state: active states now; terminal states: jobs that ended in the last "
        f"{window:.0f} s (counted by the hour)",
        labels=["state"],
    )
    for state in JobState:
        count = facts.active.get(str(state), facts.terminal.get(str(state), 0))
        jobs.add_metric([str(state)], count)
    yield jobs
    yield _gauge(
        "cloudrec_recordings_live",
        "Jobs holding a sid that are starting, recording or stopping",
        facts.recordings_live,
    )
    yield _gauge(
        "cloudrec_stops_overdue",
        "Unfinished jobs whose stop_at is more than the grace period behind",
        facts.stops_overdue,
    )
    yield _gauge(
        "cloudrec_stop_overdue_max_seconds",
        "How far behind its stop_at the most overdue unfinished job is (0: none)",
        facts.max_overdue,
    )
    yield _labelled("cloudrec_due", "Scheduled starts and stops waiting", "action", facts.due)
    yield _labelled("cloudrec_schedules", "Recurring schedules", "status", facts.schedules)
    yield _gauge(
        "cloudrec_ncs_unclaimed_recordings",
        f"Recordings heard of through NCS that no job holds, first heard over "
        f"{UNCLAIMED_GRACE:.0f} s ago (cloudrec ncs unclaimed)",
        facts.ncs_unclaimed,
    )


def by_app_families(
    facts: JobFacts, apps: Iterable[str], window: float = TERMINAL_WINDOW
) -> Iterator[Metric]:
    """The job figures by app (the app profile a job names), beside the fixed families without
    it (``cloudrec_jobs``, ``cloudrec_recordings_live``, ``cloudrec_stops_overdue``: a label
    added to those would change every series a dashboard reads). Summed over ``app``, each is
    its family without it (``cloudrec_jobs_ended`` once the 24 h window holds only counts with
    the by-app fields). Every configured app is exported from 0 (a dashboard's per-app line
    exists before its first job); an app a job names that this exporter's settings lack is
    exported too."""
    apps = list(apps)
    yield _by_state_and_app(
        "cloudrec_jobs_active",
        "Active jobs now, by state and app (the app profile the job names)",
        ACTIVE_STATES,
        apps,
        facts.active_by_app,
    )
    yield _by_state_and_app(
        "cloudrec_jobs_ended",
        f"Jobs that ended in the last {window:.0f} s (counted by the hour), by "
        "terminal state and app",
        TERMINAL_STATES,
        apps,
        facts.terminal_by_app,
    )
    yield _by_app(
        "cloudrec_recordings_live_by_app",
        "Jobs holding a sid that are starting, recording or stopping, by app",
        apps,
        facts.recordings_live_by_app,
    )
    yield _by_app(
        "cloudrec_stops_overdue_by_app",
        "Unfinished jobs whose stop_at is more than the grace period behind, by app",
        apps,
        facts.stops_overdue_by_app,
    )


def _by_state_and_app(
    name: str,
    doc: str,
    states: Iterable[JobState],
    apps: list[str],
    values: dict[tuple[str, str], int],
) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=["state", "app"])
    counts = {(str(s), app): 0 for s in states for app in apps}
    counts.update(values)
    for (state, app), count in sorted(counts.items()):
        family.add_metric([state, app], count)
    return family


def _by_app(name: str, doc: str, apps: list[str], values: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=["app"])
    for app, count in sorted({**dict.fromkeys(apps, 0), **values}.items()):
        family.add_metric([app], count)
    return family


def stranded_family(counts: dict[str, int]) -> Metric:
    return _labelled(
        "cloudrec_stranded_tasks",
        "cloudrec task messages waiting on a queue no cloudrec worker serves (callers must "
        "send to the intake queue; see cloudrec health)",
        "queue",
        counts,
    )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def build_registry(client: redis.Redis, **options: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CloudrecCollector(client, **options))
    return registry


def serve_metrics(
    redis_url: str,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    settings: Settings | None = None,
) -> tuple[WSGIServer, Thread]:
    """Serve ``/metrics`` in a daemon thread; returns the server (``.shutdown()``) and thread."""
    where = Settings(redis_url=redis_url) if settings is None else settings
    if where.redis_url != redis_url:
        where = where.model_copy(update={"redis_url": redis_url})
    registry = build_registry(redis_client(where, socket_timeout=5), settings=settings)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return server, thread


def _json(raw: bytes | str | None) -> Any:
    return json.loads(raw) if raw is not None else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

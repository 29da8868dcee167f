"""Recording-level counters, kept in Redis so every worker process on every machine adds to the
same figures; an exporter renders them in the Prometheus text format.

Counters are Redis hashes under ``cloudrec:metrics:``: one field per label combination,
incremented with HINCRBY / HINCRBYFLOAT (one round trip, no lock). Gauges that are facts about
the job store (jobs by state, recordings live, overdue stops) are computed at scrape time from
the store itself, so they can never drift.

Per-request and per-job figures carry the app (App ID profile) they are of: a field of the
default app is written exactly as before there were several apps (so its figures continue);
another app's field ends in ``|<app>`` (the lateness histogram's starts with ``<app>|``).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import redis

from worker.keys import metrics_key

log = logging.getLogger("cloudrec.metrics")

PREFIX = metrics_key("")
API_CALLS = metrics_key("api_calls")  # field "<operation>|<status>|<code>[|<app>]"
RETRIES = metrics_key("retries")  # field "<step>|<kind>[|<app>]"
LIMITER_WAITS = metrics_key("limiter_waits")  # field "<priority>[|<app>]"
CALLBACKS = metrics_key("callbacks")  # field "<kind>|<outcome>"
# histogram: field "[<app>|]in=<bound>" (the stops in that bucket only: one field written per
# stop; the reader adds them up to Prometheus's cumulative buckets), "[<app>|]count",
# "[<app>|]sum"; a version before session 11 wrote every cumulative "[<app>|]le=<bound>" per
# stop (eleven commands per stop instead of three), still read and added.
STOP_LATENESS = metrics_key("stop_lateness")
# field "<event type>|<outcome: stored, duplicate>[|<app>]"
NCS_EVENTS = metrics_key("ncs_events")
NCS_REJECTED = metrics_key("ncs_rejected")  # field "<reason>"
SID_UNKNOWN = metrics_key("sid_unknown")  # field "total": jobs ended "sid unknown"
MERGES = metrics_key("merges")  # field "<outcome: merged, error>" (worker.merge)
DEFAULT_APP = "default"
# Counters whose last label is the app (absent from the default app's fields).
APP_COUNTERS = frozenset({API_CALLS, RETRIES, LIMITER_WAITS, NCS_EVENTS})

# Seconds between a job's stop_at and the moment the service answered its stop.
LATENESS_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """Write side of the metrics. Failures to count never fail the work being counted.

    ``flush_every`` (seconds; a worker process's): counts are added up in the process and
    written that often, all in one round trip, instead of one round trip per count (a job's API
    calls and its stop were five per job, a sixth of a job's Redis round trips). A count is in
    Redis at most that long after it happened; :meth:`flush` (at a worker's shutdown, and at
    :meth:`close`) writes what is pending. A process killed outright loses its last fraction
    of a second of counts: figures, never a job's state. None: every count written at once.
    """

    def __init__(self, client: redis.Redis, flush_every: float | None = None) -> None:
        self._redis = client
        self._flush_every = flush_every
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._sums: dict[tuple[str, str], float] = {}
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        self._flusher_pid = 0

    def api_call(
        self, operation: str, status: int | None, code: int | None, app: str = DEFAULT_APP
    ) -> None:
        self._incr(
            API_CALLS,
            f"{operation}|{status if status is not None else 'none'}|"
            f"{code if code is not None else ''}" + _app_suffix(app),
        )

    def retry(self, step: str, kind: str, app: str = DEFAULT_APP) -> None:
        self._incr(RETRIES, f"{step}|{kind}" + _app_suffix(app))

    def limiter_wait(self, priority: str, app: str = DEFAULT_APP) -> None:
        self._incr(LIMITER_WAITS, priority + _app_suffix(app))

    def callback(self, kind: str, outcome: str) -> None:
        self._incr(CALLBACKS, f"{kind}|{outcome}")

    def merge(self, outcome: str) -> None:
        self._incr(MERGES, outcome)

    def ncs_event(self, event_type: int, outcome: str, app: str = DEFAULT_APP) -> None:
        self._incr(NCS_EVENTS, f"{event_type}|{outcome}" + _app_suffix(app))

    def ncs_rejected(self, reason: str) -> None:
        self._incr(NCS_REJECTED, reason)

    def sid_unknown(self) -> None:
        """A job ended not knowing the sid of a start that may have reached the service."""
        self._incr(SID_UNKNOWN, "total")

    def stop_lateness(self, seconds: float, app: str = DEFAULT_APP) -> None:
        at = "" if app == DEFAULT_APP else f"{app}|"
        bucket = next((str(b) for b in LATENESS_BUCKETS if seconds <= b), "+Inf")
        counts = {(STOP_LATENESS, f"{at}in={bucket}"): 1, (STOP_LATENESS, f"{at}count"): 1}
        self._add(counts, {(STOP_LATENESS, f"{at}sum"): seconds})

    def flush(self) -> None:
        """Write the counts added up so far (one round trip; nothing when none are pending)."""
        with self._lock:
            counts, sums = self._counts, self._sums
            self._counts, self._sums = {}, {}
        if counts or sums:
            self._write(counts, sums)

    def close(self) -> None:
        """Stop the periodic writes and write what is pending."""
        self._closed.set()
        self.flush()

    def _incr(self, key: str, field: str) -> None:
        self._add({(key, field): 1}, {})

    def _add(self, counts: dict[tuple[str, str], int], sums: dict[tuple[str, str], float]) -> None:
        if self._flush_every is None:
            self._write(counts, sums)
            return
        with self._lock:
            for name, n in counts.items():
                self._counts[name] = self._counts.get(name, 0) + n
            for name, x in sums.items():
                self._sums[name] = self._sums.get(name, 0.0) + x
            # A prefork pool child inherits this object but not the thread: one per process.
            if self._flusher is None or self._flusher_pid != os.getpid():
                self._flusher_pid = os.getpid()
                self._flusher = threading.Thread(
                    target=self._flush_periodically, name="cloudrec-metrics", daemon=True
                )
                self._flusher.start()

    def _flush_periodically(self) -> None:
        assert self._flush_every is not None
        while not self._closed.wait(self._flush_every):
            self.flush()

    def _write(
        self, counts: dict[tuple[str, str], int], sums: dict[tuple[str, str], float]
    ) -> None:
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for (key, field), n in counts.items():
                    pipe.hincrby(key, field, n)
                for (key, field), x in sums.items():
                    pipe.hincrbyfloat(key, field, x)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("metrics: could not write %d counts: %s", len(counts) + len(sums), exc)


def _app_suffix(app: str) -> str:
    return "" if app == DEFAULT_APP else f"|{app}"


# Label names of each counter's fields, in the order they are joined with "|".
COUNTER_LABELS: dict[str, tuple[str, ...]] = {
    API_CALLS: ("operation", "status", "code", "app"),
    RETRIES: ("step", "kind", "app"),
    LIMITER_WAITS: ("priority", "app"),
    CALLBACKS: ("kind", "outcome"),
    NCS_EVENTS: ("event_type", "outcome", "app"),
    NCS_REJECTED: ("reason",),
    SID_UNKNOWN: (),
    MERGES: ("outcome",),
}


@dataclass
class Lateness:
    """One app's stop-lateness histogram."""

    buckets: list[tuple[str, float]] = field(default_factory=list)  # cumulative
    count: float = 0.0
    sum: float = 0.0


@dataclass
class CounterSnapshot:
    """Every counter and the lateness histograms (by app) as read at one moment."""

    counters: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    lateness: dict[str, Lateness] = field(default_factory=dict)


def read_counters(client: redis.Redis) -> CounterSnapshot:
    """Read side for the exporter: one pipelined round trip. Raises ``redis.RedisError``."""
    keys = [*COUNTER_LABELS, STOP_LATENESS]
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        raw = pipe.execute()
    snapshot = CounterSnapshot()
    for key, fields in zip(COUNTER_LABELS, raw, strict=False):
        width = len(COUNTER_LABELS[key])
        snapshot.counters[key] = {
            _labels(name, width, key in APP_COUNTERS): float(value)
            for name, value in _text_items(fields)
        }
    _read_lateness(snapshot, dict(_text_items(raw[-1])))
    return snapshot


def _read_lateness(snapshot: CounterSnapshot, fields: dict[str, str]) -> None:
    by_app: dict[str, dict[str, str]] = {DEFAULT_APP: {}}  # exported from 0, as before
    for name, value in fields.items():
        app, _, name = name.rpartition("|")
        by_app.setdefault(app or DEFAULT_APP, {})[name] = value
    for app, own in sorted(by_app.items()):
        hist = snapshot.lateness[app] = Lateness()
        below = 0.0  # the stops in this bucket or a lower one, written one bucket each
        for bound in (*LATENESS_BUCKETS, "+Inf"):
            below += float(own.get(f"in={bound}", 0))
            hist.buckets.append((str(bound), below + float(own.get(f"le={bound}", 0))))
        hist.count = float(own.get("count", 0))
        hist.sum = float(own.get("sum", 0))


def _labels(name: str, width: int, with_app: bool) -> tuple[str, ...]:
    parts = name.split("|")
    if with_app and len(parts) < width:
        # the default app's field has no app part (written as before there were several)
        parts = [*(parts + [""] * width)[: width - 1], DEFAULT_APP]
    return tuple((parts + [""] * width)[:width])


def _text_items(raw: dict[bytes | str, bytes | str]) -> list[tuple[str, str]]:
    return [(_text(k), _text(v)) for k, v in raw.items()]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

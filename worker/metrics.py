"""Recording-level counters, kept in Redis so every worker process on every machine adds to the
same figures; an exporter renders them in the Prometheus text format.

Counters are Redis hashes under ``cloudrec:metrics:``: one field per label combination,
incremented with HINCRBY / HINCRBYFLOAT (one round trip, no lock). Gauges that are facts about
the job store (jobs by state, recordings live, overdue stops) are computed at scrape time from
the store itself, so they can never drift.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis

from worker.keys import metrics_key

log = logging.getLogger("cloudrec.metrics")

PREFIX = metrics_key("")
API_CALLS = metrics_key("api_calls")  # field "<operation>|<status>|<code>"
RETRIES = metrics_key("retries")  # field "<step>|<kind>"
LIMITER_WAITS = metrics_key("limiter_waits")  # field "<priority>"
CALLBACKS = metrics_key("callbacks")  # field "<kind>|<outcome>"
STOP_LATENESS = metrics_key("stop_lateness")  # histogram: field "le=<bound>", "count", "sum"
NCS_EVENTS = metrics_key("ncs_events")  # field "<event type>|<outcome: stored, duplicate>"
NCS_REJECTED = metrics_key("ncs_rejected")  # field "<reason>"
SID_UNKNOWN = metrics_key("sid_unknown")  # field "total": jobs ended "sid unknown"
MERGES = metrics_key("merges")  # field "<outcome: merged, error>" (worker.merge)

# Seconds between a job's stop_at and the moment the service answered its stop.
LATENESS_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """Write side of the metrics. Failures to count never fail the work being counted."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def api_call(self, operation: str, status: int | None, code: int | None) -> None:
        self._incr(
            API_CALLS,
            f"{operation}|{status if status is not None else 'none'}|"
            f"{code if code is not None else ''}",
        )

    def retry(self, step: str, kind: str) -> None:
        self._incr(RETRIES, f"{step}|{kind}")

    def limiter_wait(self, priority: str) -> None:
        self._incr(LIMITER_WAITS, priority)

    def callback(self, kind: str, outcome: str) -> None:
        self._incr(CALLBACKS, f"{kind}|{outcome}")

    def merge(self, outcome: str) -> None:
        self._incr(MERGES, outcome)

    def ncs_event(self, event_type: int, outcome: str) -> None:
        self._incr(NCS_EVENTS, f"{event_type}|{outcome}")

    def ncs_rejected(self, reason: str) -> None:
        self._incr(NCS_REJECTED, reason)

    def sid_unknown(self) -> None:
        """A job ended not knowing the sid of a start that may have reached the service."""
        self._incr(SID_UNKNOWN, "total")

    def stop_lateness(self, seconds: float) -> None:
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for bound in LATENESS_BUCKETS:
                    if seconds <= bound:
                        pipe.hincrby(STOP_LATENESS, f"le={bound}", 1)
                pipe.hincrby(STOP_LATENESS, "le=+Inf", 1)
                pipe.hincrby(STOP_LATENESS, "count", 1)
                pipe.hincrbyfloat(STOP_LATENESS, "sum", seconds)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("metrics: could not record stop lateness: %s", exc)

    def _incr(self, key: str, field: str) -> None:
        try:
            self._redis.hincrby(key, field, 1)
        except redis.RedisError as exc:
            log.warning("metrics: could not count %s %s: %s", key, field, exc)


# Label names of each counter's fields, in the order they are joined with "|".
COUNTER_LABELS: dict[str, tuple[str, ...]] = {
    API_CALLS: ("operation", "status", "code"),
    RETRIES: ("step", "kind"),
    LIMITER_WAITS: ("priority",),
    CALLBACKS: ("kind", "outcome"),
    NCS_EVENTS: ("event_type", "outcome"),
    NCS_REJECTED: ("reason",),
    SID_UNKNOWN: (),
    MERGES: ("outcome",),
}


@dataclass
class CounterSnapshot:
    """Every counter and the lateness histogram as read at one moment."""

    counters: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    lateness_buckets: list[tuple[str, float]] = field(default_factory=list)  # cumulative
    lateness_count: float = 0.0
    lateness_sum: float = 0.0


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
            _labels(name, width): float(value) for name, value in _text_items(fields)
        }
    _read_lateness(snapshot, dict(_text_items(raw[-1])))
    return snapshot


def _read_lateness(snapshot: CounterSnapshot, fields: dict[str, str]) -> None:
    for bound in (*LATENESS_BUCKETS, "+Inf"):
        snapshot.lateness_buckets.append((str(bound), float(fields.get(f"le={bound}", 0))))
    snapshot.lateness_count = float(fields.get("count", 0))
    snapshot.lateness_sum = float(fields.get("sum", 0))


def _labels(name: str, width: int) -> tuple[str, ...]:
    parts = name.split("|")
    return tuple((parts + [""] * width)[:width])


def _text_items(raw: dict[bytes | str, bytes | str]) -> list[tuple[str, str]]:
    return [(_text(k), _text(v)) for k, v in raw.items()]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

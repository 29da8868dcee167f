"""The Prometheus exporter, scraped over HTTP while real jobs run through a worker process."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tasks.recording import submit_and_start
from tests.support.ports import free_port
from tests.support.processes import (
    processes,
    spawn,
    start_beat_process,
    start_worker_process,
    wait_http,
)
from tests.support.specs import process_spec
from tests.support.waiting import wait_for
from worker.celery_app import runtime
from worker.devapi import DevApiClient
from worker.exporter import OVERDUE_GRACE, build_registry
from worker.keys import ENDED_COUNT_HOUR, ended_count_key
from worker.metrics import Metrics, read_counters
from worker.states import JobState
from worker.store import JobRecord, JobStore

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    text = requests.get(url, timeout=5).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _if(samples: Samples, condition: Callable[[Samples], float]) -> Samples | None:
    return samples if condition(samples) else None


CALLBACKS = "cloudrec_callbacks_total"


def _wait_state(store: JobStore, job_id: str, done: Callable[[JobRecord], bool], what: str) -> None:
    wait_for(lambda: done(store.get(job_id)), 60, 0.3, what)


def test_the_figures_move_as_jobs_run(
    env: dict[str, str], log_dir: Path, redis_client: redis.Redis, emulator
) -> None:
    dev = DevApiClient(emulator.base_url)
    dev.join("metrics-live", "1", video={"color": "#FF0000"}, audio={"tone": 440})
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    store = JobStore(redis_client)
    # A tight API budget makes the limiter defer calls; one injected 503 makes acquire retry.
    worker_env = dict(env, CLOUDREC_API_RATE_LIMIT="2")
    dev.set_faults({"errors": [{"operations": ["acquire"], "status": 503, "code": 62, "count": 1}]})
    with processes() as procs:
        procs.append(
            spawn("metrics", ["metrics", "--host", "127.0.0.1", "--port", str(port)], env, log_dir)
        )
        wait_http(url)
        before = scrape(url)
        procs.append(start_worker_process(worker_env, log_dir))
        rt = runtime()
        callback = {"task": "ops.on_recording"}
        live, _ = submit_and_start(rt, process_spec("metrics-live", duration=8, callback=callback))
        empty, _ = submit_and_start(rt, process_spec("metrics-empty", duration=8))
        _wait_state(store, live.job_id, lambda j: j.state == "recording", "recording")
        during = scrape(url)
        # No beat yet: nothing fires the deadlines, so both stops become overdue.
        wait_for(
            lambda: time.time() > max(live.stop_at, empty.stop_at) + OVERDUE_GRACE + 1,
            20,
            0.2,
            "the deadlines to pass",
        )
        overdue = scrape(url)
        procs.append(start_beat_process(env, log_dir))
        for job in (live, empty):
            _wait_state(store, job.job_id, lambda j: j.terminal, "the job to end")
        # The completion callback is sent after the job ends (by the dispatcher).
        after = wait_for(
            lambda: _if(scrape(url), lambda s: value(s, CALLBACKS, kind="task", outcome="sent")),
            20,
            0.5,
            "the completion callback to be sent",
        )

    assert value(before, "cloudrec_up") == 1
    assert value(during, "cloudrec_recordings_live") >= 1
    assert value(during, "cloudrec_jobs", state="recording") >= 1
    assert value(during, "cloudrec_due", action="stop") == 2

    assert value(overdue, "cloudrec_stops_overdue") == 2
    assert value(overdue, "cloudrec_stop_overdue_max_seconds") >= OVERDUE_GRACE

    assert store.get(live.job_id).state == "completed"
    assert store.get(empty.job_id).state == "empty"
    assert value(after, "cloudrec_stops_overdue") == 0
    assert value(after, "cloudrec_recordings_live") == 0

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("cloudrec_jobs", state="completed") == 1
    assert delta("cloudrec_jobs", state="empty") == 1
    calls = "cloudrec_api_calls_total"
    assert delta(calls, operation="acquire", status="503", code="62", app="default") == 1
    assert delta(calls, operation="acquire", status="200", code="", app="default") == 2
    assert delta(calls, operation="start", status="200", code="", app="default") == 2
    assert delta(calls, operation="query", status="200", code="", app="default") >= 2
    assert delta(calls, operation="stop", status="200", code="", app="default") == 1
    assert delta(calls, operation="stop", status="206", code="435", app="default") == 1
    assert (
        delta("cloudrec_retries_total", step="acquire", kind="RetryableApiError", app="default")
        == 1
    )
    limiter_waits = sum(v for (n, _), v in after.items() if n == "cloudrec_limiter_waits_total")
    assert limiter_waits > 0
    assert delta(CALLBACKS, kind="task", outcome="sent") == 1
    # Both stops were fired more than the grace period late.
    lateness = "cloudrec_stop_lateness_seconds"
    assert delta(f"{lateness}_count", app="default") == 2
    assert delta(f"{lateness}_sum", app="default") >= 2 * OVERDUE_GRACE
    assert delta(f"{lateness}_bucket", le="1.0", app="default") == 0
    assert delta(f"{lateness}_bucket", le="+Inf", app="default") == 2


def test_a_scrape_without_redis_says_so_instead_of_failing() -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    registry = build_registry(dead)
    samples = {s.name: s.value for m in registry.collect() for s in m.samples}
    assert samples == {"cloudrec_up": 0.0}


def test_the_lateness_histogram_is_cumulative(redis_client: redis.Redis) -> None:
    metrics = Metrics(redis_client)
    for seconds in (0.1, 0.7, 3.0, 400.0):
        metrics.stop_lateness(seconds)
    registry = build_registry(redis_client)
    buckets = {
        s.labels["le"]: s.value
        for m in registry.collect()
        if m.name == "cloudrec_stop_lateness_seconds"
        for s in m.samples
        if s.name.endswith("_bucket")
    }
    assert buckets["0.25"] == 1
    assert buckets["1.0"] == 2
    assert buckets["5.0"] == 3
    assert buckets["300.0"] == 3
    assert buckets["+Inf"] == 4


def test_lateness_written_by_an_older_version_still_adds_up(redis_client: redis.Redis) -> None:
    """Before session 11 a stop wrote every cumulative bucket it fell in ("le=" fields); now it
    writes its own bucket only ("in=" fields, three commands instead of eleven) and the reader
    adds up. A hash holding both reads as one histogram."""
    from worker.metrics import LATENESS_BUCKETS, STOP_LATENESS

    for bound in (b for b in LATENESS_BUCKETS if b >= 1.0):  # an old stop 0.7 s late
        redis_client.hincrby(STOP_LATENESS, f"le={bound}", 1)
    redis_client.hincrby(STOP_LATENESS, "le=+Inf", 1)
    redis_client.hincrby(STOP_LATENESS, "count", 1)
    redis_client.hincrbyfloat(STOP_LATENESS, "sum", 0.7)
    Metrics(redis_client).stop_lateness(0.1)
    Metrics(redis_client).stop_lateness(400.0)
    snapshot = read_counters(redis_client).lateness["default"]
    buckets = dict(snapshot.buckets)
    assert (buckets["0.25"], buckets["0.5"], buckets["1.0"], buckets["300.0"]) == (1, 1, 2, 2)
    assert buckets["+Inf"] == snapshot.count == 3
    assert snapshot.sum == pytest.approx(400.8)


def test_a_worker_writes_its_counts_twice_a_second_in_one_round_trip(
    redis_client: redis.Redis,
) -> None:
    """A worker process's Metrics (flush_every) adds counts up and writes them together: none
    is in Redis at once, all are within the interval, and close() writes what is pending."""
    from worker.metrics import API_CALLS, STOP_LATENESS

    writes = _PipelinesCounted(redis_client)
    metrics = Metrics(writes, flush_every=0.3)  # type: ignore[arg-type]
    for _ in range(50):
        metrics.api_call("query", 200, None)
    metrics.stop_lateness(0.1)
    metrics.stop_lateness(0.2)
    assert redis_client.hgetall(API_CALLS) == {}  # not yet: added up in the process
    wait_for(lambda: redis_client.hget(API_CALLS, "query|200|") == b"50", 2, 0.05, "a write")
    assert writes.pipelines == 1  # 52 counts, one round trip
    assert redis_client.hget(STOP_LATENESS, "count") == b"2"
    metrics.api_call("stop", 200, None)
    metrics.close()
    assert redis_client.hget(API_CALLS, "stop|200|") == b"1"


class _PipelinesCounted:
    """A real client that counts the pipelines made from it (each one round trip)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self.pipelines = 0

    def pipeline(self, **kwargs: Any) -> Any:
        self.pipelines += 1
        return self._client.pipeline(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_per_request_and_per_job_figures_carry_the_app(redis_client: redis.Redis) -> None:
    metrics = Metrics(redis_client)
    metrics.api_call("stop", 200, None)
    metrics.api_call("stop", 200, None, app="school")
    metrics.api_call("stop", 200, None, app="school")
    metrics.retry("stop", "TransportError", app="school")
    metrics.limiter_wait("stop", app="school")
    metrics.limiter_wait("query")
    metrics.stop_lateness(0.1)
    metrics.stop_lateness(3.0, app="school")
    samples: Samples = {}
    for family in build_registry(redis_client).collect():
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    calls = "cloudrec_api_calls_total"
    assert value(samples, calls, operation="stop", status="200", code="", app="default") == 1
    assert value(samples, calls, operation="stop", status="200", code="", app="school") == 2
    assert value(samples, "cloudrec_retries_total", step="stop", kind="TransportError",
                 app="school") == 1  # fmt: skip
    assert value(samples, "cloudrec_limiter_waits_total", priority="stop", app="school") == 1
    assert value(samples, "cloudrec_limiter_waits_total", priority="query", app="default") == 1
    lateness = "cloudrec_stop_lateness_seconds"
    assert value(samples, f"{lateness}_count", app="default") == 1
    assert value(samples, f"{lateness}_count", app="school") == 1
    assert value(samples, f"{lateness}_bucket", app="school", le="1.0") == 0
    assert value(samples, f"{lateness}_bucket", app="school", le="5.0") == 1
    assert value(samples, f"{lateness}_bucket", app="default", le="0.25") == 1


def _active_job(job_id: str, state: JobState, app: str | None, now: float) -> JobRecord:
    named = {"app": app} if app is not None else {}  # None: the default, which is not stored
    return JobRecord(
        job_id=job_id,
        state=state,
        cname=job_id,
        uid="1",
        spec={"cname": job_id},
        created_at=now,
        stop_at=now + 600,
        history=[{"state": state, "at": now}],
        **named,
    )


def test_a_scrape_counts_active_jobs_by_state_and_app(
    env: dict[str, str], log_dir: Path, redis_client: redis.Redis
) -> None:
    """A ``cloudrec metrics`` process configured with two apps, scraped over HTTP: the active
    jobs of each app by state, every configured app from 0, and an app only a job names."""
    now = time.time()
    store = JobStore(redis_client)
    plan = [
        ("d-rec-1", JobState.RECORDING, None),
        ("d-rec-2", JobState.RECORDING, "default"),
        ("d-start", JobState.STARTING, None),
        ("s-rec-1", JobState.RECORDING, "school"),
        ("s-rec-2", JobState.RECORDING, "school"),
        ("s-rec-3", JobState.RECORDING, "school"),
        ("s-stop", JobState.STOPPING, "school"),
        ("gone-app", JobState.RECORDING, "evening"),  # named by a job, not configured here
    ]
    for job_id, state, app in plan:
        store.create(_active_job(f"metrics-app-{job_id}", state, app, now))
    samples = scrape_with_apps(env, log_dir, "school")

    def active(state: str, app: str) -> float:
        key = ("cloudrec_jobs_active", (("app", app), ("state", state)))
        assert key in samples, key  # exported, also at 0
        return samples[key]

    assert active("recording", "default") == 2
    assert active("starting", "default") == 1
    assert active("recording", "school") == 3
    assert active("stopping", "school") == 1
    assert active("acquiring", "school") == 0  # a configured app is exported from 0
    assert active("recording", "evening") == 1
    assert value(samples, "cloudrec_jobs", state="recording") == 6  # all apps, as before
    assert not any(
        n == "cloudrec_jobs_active" and dict(k)["state"] == "completed" for n, k in samples
    )


def test_a_scrape_counts_ended_jobs_live_recordings_and_overdue_stops_by_app(
    env: dict[str, str], log_dir: Path, redis_client: redis.Redis
) -> None:
    """Jobs of two apps end in different states through the store's real transitions (its Lua
    script counts them); a ``cloudrec metrics`` process configured with both apps is scraped
    over HTTP. Ended jobs by state and app, live recordings and overdue stops by app; the
    by-state figures stay what they were; an hour counted before the by-app fields existed
    adds to ``cloudrec_jobs`` only."""
    now = time.time()
    store = JobStore(redis_client)
    ended = [
        ("d-done-1", None, JobState.COMPLETED),  # no app stored: the default
        ("d-done-2", "default", JobState.COMPLETED),
        ("d-fail", None, JobState.FAILED),
        ("s-done", "school", JobState.COMPLETED),
        ("s-cancel-1", "school", JobState.CANCELLED),
        ("s-cancel-2", "school", JobState.CANCELLED),
        ("s-empty", "school", JobState.EMPTY),
        ("e-fail", "evening", JobState.FAILED),  # an app only a job names
    ]
    for job_id, app, final in ended:
        full = f"metrics-end-{job_id}"
        store.create(_active_job(full, JobState.STOPPING, app, now))
        store.transition(full, {JobState.STOPPING}, final)
    # Live: holding a sid. Overdue: stop_at more than the grace behind.
    live = [
        ("d-live", None, "sid-d1", now + 600),
        ("d-late", None, "sid-d2", now - 60),
        ("s-live-1", "school", "sid-s1", now + 600),
        ("s-live-2", "school", "sid-s2", now + 600),
        ("s-late-1", "school", "sid-s3", now - 60),
        ("s-late-2", "school", None, now - 30),  # no sid yet: overdue, not live
    ]
    for job_id, app, sid, stop_at in live:
        record = _active_job(f"metrics-live-{job_id}", JobState.RECORDING, app, now)
        store.create(record.model_copy(update={"sid": sid, "stop_at": stop_at}))
    # Counted by a worker before this version (by state only) in this hour.
    redis_client.hincrby(ended_count_key(int(now) // ENDED_COUNT_HOUR), "failed", 4)
    samples = scrape_with_apps(env, log_dir, "school", "night")

    def exported(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        assert key in samples, key  # exported, also at 0
        return samples[key]

    def jobs_ended(state: str, app: str) -> float:
        return exported("cloudrec_jobs_ended", state=state, app=app)

    assert jobs_ended("completed", "default") == 2
    assert jobs_ended("failed", "default") == 1
    assert jobs_ended("cancelled", "default") == 0
    assert jobs_ended("completed", "school") == 1
    assert jobs_ended("cancelled", "school") == 2
    assert jobs_ended("empty", "school") == 1
    assert jobs_ended("failed", "school") == 0
    assert jobs_ended("failed", "evening") == 1
    assert jobs_ended("idle_exit", "night") == 0  # every configured app from 0
    assert not any(
        n == "cloudrec_jobs_ended" and dict(k)["state"] == "recording" for n, k in samples
    )
    # The by-state family as before: every app, and the count from before the by-app fields.
    assert exported("cloudrec_jobs", state="completed") == 3
    assert exported("cloudrec_jobs", state="failed") == 2 + 4
    assert exported("cloudrec_jobs", state="recording") == 6

    live_by_app = "cloudrec_recordings_live_by_app"
    assert exported(live_by_app, app="default") == 2
    assert exported(live_by_app, app="school") == 3
    assert exported(live_by_app, app="night") == 0
    assert exported("cloudrec_recordings_live") == 5
    overdue_by_app = "cloudrec_stops_overdue_by_app"
    assert exported(overdue_by_app, app="default") == 1
    assert exported(overdue_by_app, app="school") == 2
    assert exported(overdue_by_app, app="night") == 0
    assert exported("cloudrec_stops_overdue") == 3
    # The shipped overdue alert fires per app, on the family just read.
    alerts = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"
    rules = yaml.safe_load(alerts.read_text())["groups"][0]["rules"]
    (rule,) = [r for r in rules if r["alert"] == "CloudrecStopsOverdue"]
    assert rule["expr"].strip() == f"{overdue_by_app} > 0"


def scrape_with_apps(env: dict[str, str], log_dir: Path, *apps: str) -> Samples:
    """One scrape of a `cloudrec metrics` process whose settings configure ``apps`` besides the
    default one (each with its own App ID and customer)."""
    profiles = {
        f"CLOUDREC_APPS__{app.upper()}__{name}": f"{app}-{value}"
        for app in apps
        for name, value in (("APP_ID", "app-id"), ("CUSTOMER_ID", "customer"))
    } | {f"CLOUDREC_APPS__{app.upper()}__CUSTOMER_SECRET": f"{app}-secret" for app in apps}
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    argv = ["metrics", "--host", "127.0.0.1", "--port", str(port)]
    with processes() as procs:
        procs.append(spawn("metrics", argv, {**env, **profiles}, log_dir))
        wait_http(url)
        return scrape(url)

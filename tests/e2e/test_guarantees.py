"""Tier 3: the worker's promises through the real Celery worker, the dispatcher and the
emulator: scheduled starts, cancel in every state, completion callbacks (a Celery task and a
signed webhook), the reconciler task, the redelivery cap, and waiting work not holding slots."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from standardwebhooks import Webhook

from contract.models import AcquireClientRequest
from tasks.recording import acquire, request_stop, submit_and_start
from tests.support.redelivery import send_as_redelivered
from tests.support.stack import WEBHOOK_SECRET
from tests.support.waiting import wait_for
from worker.celery_app import RECORDING_QUEUE, app, runtime
from worker.limiter import ApiRateLimiter, Priority
from worker.metrics import LIMITER_WAITS
from worker.recording import build_start_request
from worker.store import JobRecord

# A start_at a day ahead: later than any test runs, well within CLOUDREC_MAX_START_AHEAD.
TOMORROW = datetime.fromtimestamp(time.time() + 86400, UTC).isoformat()

pytestmark = pytest.mark.e2e

CALLBACK_KEY = "test:callbacks"


@app.task(name="tests.e2e.on_recording_done")
def on_recording_done(job_id: str, summary: dict[str, Any]) -> None:
    """A caller's callback task: keeps what it was sent, for the test to read."""
    runtime().redis.rpush(CALLBACK_KEY, json.dumps([job_id, summary, time.time()]))


def _spec(cname: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "cname": cname,
        "duration": 30,
        "recordingConfig": {
            "maxIdleTime": 30,
            "transcodingConfig": {"width": 160, "height": 120, "fps": 7, "bitrate": 100},
        },
    }
    spec.update(overrides)
    return spec


def _job(stack, job_id: str) -> JobRecord:
    return stack.runtime.store.get(job_id)


def _wait_state(stack, job_id: str, *states: str, timeout: float = 30.0) -> JobRecord:
    return wait_for(
        lambda: (job := _job(stack, job_id)).state in states and job,
        timeout,
        0.1,
        f"job {job_id} to reach {states}",
    )


def _recordings(stack, cname: str) -> list[dict[str, Any]]:
    return [r for r in stack.dev.recordings() if r["cname"] == cname]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_a_scheduled_start_goes_through_the_dispatcher_at_its_time(stack):
    start_at = time.time() + 3
    spec = _spec("sched", duration=3, start_at=datetime.fromtimestamp(start_at, UTC).isoformat())
    job, _ = submit_and_start(stack.runtime, spec)
    assert job.state == "queued" and stack.runtime.store.due_at(
        "start", job.job_id
    ) == pytest.approx(start_at)
    time.sleep(1)  # well before its time: nothing may happen yet (a deadline, not a poll)
    assert _job(stack, job.job_id).state == "queued" and _recordings(stack, "sched") == []
    job = _wait_state(stack, job.job_id, "empty", "completed")
    [emulated] = _recordings(stack, "sched")
    assert start_at - 0.1 <= _epoch(emulated["startedAt"]) <= start_at + 3
    assert abs(_epoch(emulated["stoppedAt"]) - job.stop_at) < 2.5


def test_cancel_while_acquiring_never_starts(stack):
    stack.dev.set_faults({"latency": [{"operations": ["acquire"], "seconds": 2, "count": 1}]})
    job, _ = submit_and_start(stack.runtime, _spec("cacq"))
    _wait_state(stack, job.job_id, "acquiring")
    job = request_stop(stack.runtime, job.job_id, "cancel")
    assert job.state == "cancelled"
    time.sleep(3)  # the acquire answers meanwhile; it must not lead to a start
    assert _job(stack, job.job_id).sid is None
    assert _recordings(stack, "cacq") == []


def test_cancel_while_starting_stops_the_recording_the_start_made(stack):
    stack.dev.set_faults({"latency": [{"operations": ["start"], "seconds": 1.5, "count": 1}]})
    job, _ = submit_and_start(stack.runtime, _spec("cstart"))
    _wait_state(stack, job.job_id, "starting")
    request_stop(stack.runtime, job.job_id, "cancel")
    job = _wait_state(stack, job.job_id, "cancelled")
    wait_for(lambda: _recordings(stack, "cstart"), 10, 0.1, "the delayed start to land")
    wait_for(lambda: not _recordings(stack, "cstart")[0]["live"], 15, 0.2, "the late start stopped")
    assert len(_recordings(stack, "cstart")) == 1
    assert _job(stack, job.job_id).state == "cancelled"


def test_cancel_while_recording_stops_at_once(stack):
    job, _ = submit_and_start(stack.runtime, _spec("crec", duration=300))
    _wait_state(stack, job.job_id, "recording")
    asked = time.time()
    request_stop(stack.runtime, job.job_id, "cancel")
    job = _wait_state(stack, job.job_id, "cancelled")
    [emulated] = _recordings(stack, "crec")
    assert not emulated["live"] and _epoch(emulated["stoppedAt"]) - asked < 3


def test_a_callback_task_gets_the_job_id_and_summary(stack, redis_client):
    spec = _spec("cbtask", duration=2, callback={"task": "tests.e2e.on_recording_done"})
    job, _ = submit_and_start(stack.runtime, spec)
    job = _wait_state(stack, job.job_id, "empty", "completed")
    raw = wait_for(lambda: redis_client.lrange(CALLBACK_KEY, 0, -1), 15, 0.1, "the callback")
    [(job_id, summary, _)] = [json.loads(r) for r in raw]
    assert job_id == job.job_id
    assert summary["state"] == job.state and summary["sid"] == job.sid
    status = wait_for(lambda: _job(stack, job.job_id).callback_status, 5, 0.1, "the outcome")
    assert status["task"]["state"] == "sent"


@pytest.fixture
def webhook() -> Iterator[dict[str, Any]]:
    box: dict[str, Any] = {"requests": [], "fail_first": 1}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            box["requests"].append((dict(self.headers), body))
            failing = box["fail_first"] > 0
            box["fail_first"] -= 1
            self.send_response(500 if failing else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["url"] = f"http://127.0.0.1:{server.server_port}/done"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield box
    server.shutdown()
    server.server_close()


def test_a_webhook_is_signed_retried_and_its_delivery_recorded(stack, webhook):
    spec = _spec("cbhook", duration=2, callback={"webhook": webhook["url"]})
    job, _ = submit_and_start(stack.runtime, spec)
    _wait_state(stack, job.job_id, "empty", "completed")
    status = wait_for(
        lambda: (
            ((_job(stack, job.job_id).callback_status or {}).get("webhook") or {}).get("state")
            == "delivered"
            and _job(stack, job.job_id).callback_status
        ),
        20,
        0.2,
        "the webhook delivery",
    )
    assert status["webhook"]["attempts"] == 2 and status["webhook"]["status"] == 204
    headers, body = webhook["requests"][-1]
    assert Webhook(WEBHOOK_SECRET).verify(body, headers)["job_id"] == job.job_id


def test_the_reconcile_task_stops_a_recording_no_job_holds(stack):
    rt = stack.runtime
    resource = rt.client.acquire("stray", "77", AcquireClientRequest()).resourceId
    job, _ = submit_and_start(rt, _spec("stray", start_at=TOMORROW))
    rt.client.start(resource, "stray", "77", build_start_request(rt, job))
    time.sleep(2.5)  # past the orphan grace of the stack's settings (a deadline, not a poll)
    app.send_task("recording.reconcile")
    wait_for(lambda: not _recordings(stack, "stray")[0]["live"], 15, 0.2, "the orphan stopped")


def test_redeliveries_of_a_step_are_capped_per_job(stack):
    rt = stack.runtime
    limit = rt.settings.max_deliveries
    delivery = f"acquire:{'the-same-message'}"

    def redeliver(job_id: str) -> None:
        send_as_redelivered(app, rt.redis, acquire, (job_id,), "the-same-message", RECORDING_QUEUE)

    # What `limit` deliveries of one message leave behind when each killed its worker mid-run
    # (the broker gives it back marked redelivered, with the same task id, each time): within
    # the cap, it still runs (the acquire task starts the job too).
    ok, _ = submit_and_start(rt, _spec("poison-ok", start_at=TOMORROW))
    for _ in range(limit - 1):
        rt.store.count_delivery(ok.job_id, delivery)
    redeliver(ok.job_id)
    _wait_state(stack, ok.job_id, "starting", "recording")
    wait_for(
        lambda: not rt.redis.hexists(f"cloudrec:deliveries:{ok.job_id}", delivery),
        10,
        0.05,
        "the delivery to finish",
    )
    request_stop(rt, ok.job_id, "cancel")
    # One more, and the job fails before any API call.
    job, _ = submit_and_start(rt, _spec("poison", start_at=TOMORROW))
    for _ in range(limit):
        rt.store.count_delivery(job.job_id, delivery)
    redeliver(job.job_id)
    job = _wait_state(stack, job.job_id, "failed", timeout=20)
    assert "redelivered too often" in job.error["reason"]
    assert _recordings(stack, "poison") == []


def test_a_first_delivery_is_not_counted_against_the_cap(stack):
    # A message delivered for the first time cannot be a redelivery: its run writes no count
    # (two round trips per task saved), whatever counts an earlier message of the job left.
    rt = stack.runtime
    job, _ = submit_and_start(rt, _spec("first-delivery", start_at=TOMORROW))
    delivery = "acquire:first-delivery-message"
    for _ in range(rt.settings.max_deliveries + 1):
        rt.store.count_delivery(job.job_id, delivery)
    acquire.apply_async((job.job_id,), task_id="first-delivery-message")
    _wait_state(stack, job.job_id, "starting", "recording")
    assert int(rt.redis.hget(f"cloudrec:deliveries:{job.job_id}", delivery) or 0) == (
        rt.settings.max_deliveries + 1
    )
    request_stop(rt, job.job_id, "cancel")


def test_work_waiting_for_the_budget_does_not_hold_worker_slots(stack, redis_client):
    rt = stack.runtime
    stop_hammer = threading.Event()

    def hammer() -> None:  # another process spending the whole shared budget on stops
        limiter = ApiRateLimiter(redis.Redis.from_url(rt.settings.redis_url), 10)
        while not stop_hammer.is_set():
            if limiter.try_acquire(Priority.STOP) > 0:
                time.sleep(0.01)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        jobs = [submit_and_start(rt, _spec(f"wait{i}"))[0] for i in range(12)]
        time.sleep(1.5)  # the 12 acquires are all waiting for budget by now
        assert all(_job(stack, j.job_id).sid is None for j in jobs)
        # A job that needs no API call still runs at once on the same 4 worker threads.
        quick, _ = submit_and_start(
            rt,
            _spec(
                "quick",
                start_at=TOMORROW,
                callback={"task": "tests.e2e.on_recording_done"},
            ),
        )
        asked = time.time()
        request_stop(rt, quick.job_id, "cancel")
        raw = wait_for(lambda: redis_client.lrange(CALLBACK_KEY, 0, -1), 10, 0.05, "callback")
        assert json.loads(raw[0])[2] - asked < 3.0
    finally:
        stop_hammer.set()
        thread.join()
    # Each wait was counted under the priority that waited (a worker writes its counts twice a
    # second: worker.metrics).
    wait_for(
        lambda: int(redis_client.hget(LIMITER_WAITS, "start") or 0) >= 12,
        5,
        0.1,
        "the waits to be counted",
    )
    for j in jobs:  # and once the budget is back, every waiting job goes on
        _wait_state(stack, j.job_id, "recording", timeout=60)
        request_stop(rt, j.job_id, "stop")


def test_a_recording_failing_over_at_its_deadline_is_stopped_and_keeps_every_file(stack):
    """An HA failover (docs/service/files.md#failover) that spans the deadline: the stop meets 404s
    (the task is between servers), keeps trying inside the failover window, stops the recording once
    it is back, and the job's files name both the original and the bak0_ segment."""
    stack.dev.join("fover", "1", video={"color": "#00FF00"}, audio={"tone": 440})
    files = {"avFileType": ["hls", "mp4"]}  # the JSON fileList: every segment is listed
    job, _ = submit_and_start(stack.runtime, _spec("fover", duration=8, recordingFileConfig=files))
    job = _wait_state(stack, job.job_id, "recording")
    wait_for(lambda: time.time() >= job.stop_at - 1.5, 20, 0.05, "1.5 s before the deadline")
    stack.dev.failover(job.sid, seconds=3)  # the server is gone until 1.5 s past the deadline
    job = _wait_state(stack, job.job_id, "completed", timeout=40)
    names = [f.fileName for f in job.files]
    original = f"{job.sid}_fover.m3u8"
    assert original in names and f"bak0_{original}" in names, names
    assert any(n.startswith(f"bak0_{job.sid}_fover_") and n.endswith(".mp4") for n in names)
    [emulated] = _recordings(stack, "fover")
    assert not emulated["live"]
    late = _epoch(emulated["stoppedAt"]) - job.stop_at
    assert 1.4 <= late < 6, late  # after the migration ended, and soon after

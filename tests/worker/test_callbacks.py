"""Tier 1 on a real Redis and a real HTTP server on loopback: completion callbacks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from config import Settings
from worker import recording
from worker.callbacks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    run_callbacks,
    verify_signature,
)
from worker.errors import JobSpecError
from worker.metrics import CALLBACKS
from worker.runtime import Runtime
from worker.states import JobState

S = JobState
SECRET = "hook-signing-key-123"


@dataclass
class Receiver:
    """A webhook receiver: answers with the queued statuses (then 200), keeps every request."""

    url: str
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append({"headers": dict(self.headers), "body": body})
            self.send_response(state.statuses.pop(0) if state.statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/hooks/recording"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def rt(redis_url: str) -> Iterator[Runtime]:
    runtime = Runtime.build(
        Settings(
            redis_url=redis_url, webhook_secret=SECRET, callback_give_up_after=600, dev_api=False
        )
    )
    yield runtime
    runtime.close()


def _finished_job(rt: Runtime, callback: dict[str, Any]) -> str:
    job, _ = recording.submit(
        rt,
        {
            "cname": "cb",
            "duration": 30,
            "labels": {"course": "bio"},
            "callback": callback,
            "token": "rtc-token-xyz",
        },
    )
    rt.store.transition(job.job_id, {S.QUEUED}, S.CANCELLED, stop_reason="cancel")
    return job.job_id


def test_a_finished_job_posts_its_summary_signed(rt, receiver, redis_client):
    job_id = _finished_job(rt, {"webhook": receiver.url})
    assert rt.store.due_at("callback", job_id) is not None  # due since the job ended
    assert run_callbacks(rt, job_id, send_task=_no_task) is None
    [request] = receiver.received
    headers = request["headers"]
    assert verify_signature(
        SECRET.encode(), headers[TIMESTAMP_HEADER], request["body"], headers[SIGNATURE_HEADER]
    )
    assert not verify_signature(
        b"another key", headers[TIMESTAMP_HEADER], request["body"], headers[SIGNATURE_HEADER]
    )
    body = json.loads(request["body"])
    assert body["job_id"] == job_id and body["state"] == "cancelled"
    assert body["labels"] == {"course": "bio"}
    assert b"rtc-token-xyz" not in request["body"] and SECRET.encode() not in request["body"]
    status = rt.store.get(job_id).callback_status
    assert status["webhook"]["state"] == "delivered" and status["webhook"]["status"] == 200
    assert rt.store.due_at("callback", job_id) is None
    assert redis_client.hget(CALLBACKS, "webhook|delivered") == b"1"


def test_a_failed_delivery_is_retried_with_backoff_until_delivered(rt, receiver):
    receiver.statuses = [500, 503]
    job_id = _finished_job(rt, {"webhook": receiver.url})
    waits = []
    for _ in range(2):
        wait = run_callbacks(rt, job_id, send_task=_no_task)
        assert wait is not None and 0 < wait < 60
        waits.append(wait)
        status = rt.store.get(job_id).callback_status["webhook"]
        assert status["state"] == "pending" and status["status"] in (500, 503)
        # The due entry stays, leased past the retry: a lost retry is fired again.
        assert rt.store.due_at("callback", job_id) > rt.store.get(job_id).history[-1].at + wait
    assert run_callbacks(rt, job_id, send_task=_no_task) is None
    status = rt.store.get(job_id).callback_status["webhook"]
    assert status == status | {"state": "delivered", "attempts": 3}
    assert len(receiver.received) == 3


def test_delivery_is_given_up_after_the_configured_time(rt, receiver):
    receiver.statuses = [500] * 3
    job_id = _finished_job(rt, {"webhook": receiver.url})
    ended = rt.store.get(job_id).history[-1].at
    assert run_callbacks(rt, job_id, send_task=_no_task, now=ended + 10) is not None
    assert run_callbacks(rt, job_id, send_task=_no_task, now=ended + 601) is None
    status = rt.store.get(job_id).callback_status["webhook"]
    assert status["state"] == "gave_up" and status["attempts"] == 2
    assert rt.store.due_at("callback", job_id) is None
    assert run_callbacks(rt, job_id, send_task=_no_task) is None  # settled: never again
    assert len(receiver.received) == 2


def test_an_unreachable_webhook_counts_as_a_failed_attempt(rt):
    job_id = _finished_job(rt, {"webhook": "http://127.0.0.1:9/nothing-listens"})
    assert run_callbacks(rt, job_id, send_task=_no_task) is not None
    status = rt.store.get(job_id).callback_status["webhook"]
    assert status["state"] == "pending" and "ConnectionError" in status["error"]


def test_a_task_callback_is_sent_once_with_the_job_id_and_summary(rt):
    job_id = _finished_job(rt, {"task": "billing.on_recording"})
    sent: list[tuple[str, list[Any]]] = []
    assert run_callbacks(rt, job_id, send_task=lambda n, a: sent.append((n, a))) is None
    assert run_callbacks(rt, job_id, send_task=lambda n, a: sent.append((n, a))) is None
    [(name, args)] = sent
    assert name == "billing.on_recording" and args[0] == job_id
    assert args[1]["state"] == "cancelled"
    assert rt.store.get(job_id).callback_status["task"]["state"] == "sent"


def test_a_webhook_needs_a_signing_key_configured(redis_url):
    runtime = Runtime.build(Settings(redis_url=redis_url, dev_api=False))
    try:
        with pytest.raises(JobSpecError, match=r"callback\.webhook: needs CLOUDREC_WEBHOOK_SECRET"):
            recording.submit(runtime, {"cname": "c", "callback": {"webhook": "http://x.test/"}})
        assert runtime.store.ids() == []
    finally:
        runtime.close()


def _no_task(name: str, args: list[Any]) -> None:
    raise AssertionError(f"no task callback expected, got {name}")

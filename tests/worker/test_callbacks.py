"""Tier 1 on a real Redis and a real HTTP server on loopback: completion callbacks.

Deliveries are checked with the ``standardwebhooks`` package from PyPI, as a receiver would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from config import Settings
from worker import recording
from worker.callbacks import ID_HEADER, deliver, delivery_slot, run_callbacks
from worker.errors import JobSpecError
from worker.metrics import CALLBACKS
from worker.runtime import Runtime
from worker.states import JobState

S = JobState
SECRET = "whsec_aG9vay1zaWduaW5nLWtleS0xMjMtZm9yLXRlc3Rz"  # 30 bytes, base64
OTHER_SECRET = "whsec_YW5vdGhlci1rZXktb2YtdGhpcnR5LWJ5dGVzLTA="


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
            redis_url=redis_url,
            webhook_secret=SECRET,
            webhook_allow="127.0.0.1/32",  # the receiver is on loopback
            callback_give_up_after=600,
            dev_api=False,
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
    assert Webhook(SECRET).verify(request["body"], headers)["job_id"] == job_id
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(request["body"], headers)
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
    # Every attempt is the same message to the receiver (it deduplicates on webhook-id), and
    # each is signed afresh.
    assert len({r["headers"][ID_HEADER] for r in receiver.received}) == 1
    for request in receiver.received:
        Webhook(SECRET).verify(request["body"], request["headers"])


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
    assert status["state"] == "pending" and "ConnectionRefusedError" in status["error"]


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


def test_a_webhook_to_a_name_that_resolves_to_loopback_is_given_up_unsent(redis_url, receiver):
    # The receiver listens on loopback, but this deployment lists nothing internal: "localhost"
    # passes submit (a name), is resolved at delivery and refused there, at once and for good.
    runtime = Runtime.build(Settings(redis_url=redis_url, webhook_secret=SECRET, dev_api=False))
    try:
        url = receiver.url.replace("127.0.0.1", "localhost")
        job_id = _finished_job(runtime, {"webhook": url})
        assert run_callbacks(runtime, job_id, send_task=_no_task) is None
        status = runtime.store.get(job_id).callback_status["webhook"]
        assert status["state"] == "gave_up" and status["attempts"] == 1
        assert "127.0.0.1 is a loopback address" in status["error"]
        assert "CLOUDREC_WEBHOOK_ALLOW" in status["error"]
        assert receiver.received == []
    finally:
        runtime.close()


def test_a_delivery_without_a_free_slot_waits_holding_none(rt, receiver):
    job_id = _finished_job(rt, {"webhook": receiver.url})
    slots = 2  # what a pool of 8 or 11 threads gets: a quarter
    with delivery_slot(rt, "node-a", slots) as first, delivery_slot(rt, "node-a", slots) as second:
        assert first and second
        with delivery_slot(rt, "node-a", slots) as third:
            assert not third
        wait = deliver(rt, job_id, _no_task, node="node-a", pool_size=8)
        assert wait is not None and 1 <= wait <= 2
        assert receiver.received == []  # nothing was sent, and the due entry waits with it
        assert rt.store.due_at("callback", job_id) > rt.store.get(job_id).history[-1].at + wait
        # Another worker has slots of its own.
        assert deliver(rt, job_id, _no_task, node="node-b", pool_size=8) is None
    assert len(receiver.received) == 1
    with delivery_slot(rt, "node-a", 1) as again:
        assert again  # released on the way out


def test_a_slot_held_by_a_dead_worker_lapses(rt, redis_client):
    # A worker killed mid-delivery never releases its slot: its hold runs out after the
    # webhook deadline and a margin.
    with delivery_slot(rt, "node-x", 1) as held:
        assert held
        key = "cloudrec:callback-slots:node-x"
        [(holder, until)] = redis_client.zrange(key, 0, -1, withscores=True)
        assert until <= time.time() + rt.settings.webhook_timeout + 30
        redis_client.zadd(key, {holder: time.time() - 1})  # as if that time had passed
        with delivery_slot(rt, "node-x", 1) as next_one:
            assert next_one


@pytest.mark.parametrize(
    "value",
    ["hook-signing-key-123", "whsec_not base64!", "whsec_c2hvcnQ=", "WHSEC_" + "A" * 40],
)
def test_the_webhook_secret_must_be_a_standard_webhooks_secret(value):
    with pytest.raises(ValidationError) as caught:
        Settings(webhook_secret=value)
    assert "CLOUDREC_WEBHOOK_SECRET must be 'whsec_' followed by the base64" in str(caught.value)
    assert value not in str(caught.value)


def _no_task(name: str, args: list[Any]) -> None:
    raise AssertionError(f"no task callback expected, got {name}")

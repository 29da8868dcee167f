"""The restorer against a real Redis and kombu's own Redis transport: a message a dead worker
held goes back to its queue once, however many dispatchers race; an acknowledged one, or one a
live worker holds, does not."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kombu import Connection, Exchange, Queue

from worker.restorer import (
    HEARTBEAT_TTL,
    Holdings,
    dead_workers,
    kombu_restorer,
    restore_dead_workers,
)

QUEUE = Queue("restorer-test", Exchange("restorer-test", type="direct"), routing_key="rt")


@pytest.fixture
def conn(redis_url: str) -> Iterator[Connection]:
    with Connection(redis_url, transport_options={"priority_steps": [0, 3, 6, 9]}) as c:
        yield c


def _take(conn: Connection, body: str) -> tuple[object, object]:
    """Publish ``body`` and take it without acknowledging (it is then in ``unacked``)."""
    channel = conn.channel()
    producer = conn.Producer(channel)
    producer.publish(body, exchange=QUEUE.exchange, routing_key="rt", declare=[QUEUE], priority=3)
    message = QUEUE(channel).get(no_ack=False)
    assert message is not None
    return channel, message


def _waiting(conn: Connection) -> list[str]:
    channel = conn.channel()
    bodies = []
    while (message := QUEUE(channel).get(no_ack=True)) is not None:
        bodies.append(message.payload)
    return bodies


@pytest.fixture
def holdings_of(redis_client):
    """Holdings for named workers, closed after the test: a heartbeat thread of a holding that
    never acknowledges would otherwise beat into the next test's Redis."""
    made: list[Holdings] = []

    def make(worker_id: str) -> Holdings:
        made.append(Holdings(redis_client, worker_id))
        return made[-1]

    yield make
    for holdings in made:
        holdings.close()


def test_a_dead_workers_message_is_restored_once_however_many_restore_it(
    conn, redis_client, holdings_of
):
    _channel, message = _take(conn, "hello")
    holdings = holdings_of("w1")
    holdings.received(message.delivery_tag, message)  # type: ignore[attr-defined]
    later = time.time() + HEARTBEAT_TTL + 1
    assert dead_workers(redis_client, later) == ["w1"]
    restore = kombu_restorer(conn.default_channel)
    assert restore(message.delivery_tag)  # type: ignore[attr-defined]
    assert not restore(message.delivery_tag)  # type: ignore[attr-defined]
    assert _waiting(conn) == ["hello"]
    assert redis_client.hlen("unacked") == 0


def test_the_dispatcher_restores_what_dead_workers_held_and_forgets_them(
    conn, redis_client, holdings_of
):
    _, held = _take(conn, "dead")
    _, acked = _take(conn, "done")
    dead = holdings_of("dead-worker")
    dead.received(held.delivery_tag, held)  # type: ignore[attr-defined]
    dead.received(acked.delivery_tag, acked)  # type: ignore[attr-defined]
    acked.ack()  # type: ignore[attr-defined]
    later = time.time() + HEARTBEAT_TTL + 1
    _, alive_msg = _take(conn, "alive")
    alive = holdings_of("live-worker")
    alive.received(alive_msg.delivery_tag, alive_msg)  # type: ignore[attr-defined]
    redis_client.zadd("cloudrec:workers", {"live-worker": later})  # it beat just now

    restore = kombu_restorer(conn.default_channel)
    assert restore_dead_workers(redis_client, restore, later) == 1
    assert restore_dead_workers(redis_client, restore, later) == 0  # reaped already
    assert _waiting(conn) == ["dead"]
    assert dead_workers(redis_client, later) == []
    assert redis_client.hexists("unacked", alive_msg.delivery_tag)  # type: ignore[attr-defined]


def test_a_heartbeat_keeps_a_worker_alive_and_prunes_what_it_acknowledged(conn, redis_client):
    _, message = _take(conn, "m")
    holdings = Holdings(redis_client, "w")
    holdings.received(message.delivery_tag, message)  # type: ignore[attr-defined]
    message.ack()  # type: ignore[attr-defined]
    holdings.beat()
    assert redis_client.smembers("cloudrec:worker:w:held") == set()
    assert dead_workers(redis_client, time.time()) == []
    holdings.close()
    assert redis_client.zcard("cloudrec:workers") == 0


def test_a_redelivered_submit_whose_job_exists_sends_its_start_again(redis_url, redis_client):
    """The worker died after storing the job and before sending its acquire -> start chain:
    the restored submit finds the job queued and sends the chain (and only then)."""
    from tasks.recording import submit_and_start
    from tests.support.stack import make_settings
    from worker import recording
    from worker.celery_app import RECORDING_QUEUE, configure, runtime
    from worker.store import DUE_KEY

    configure(make_settings(redis_url, "http://127.0.0.1:9"))
    rt = runtime()
    spec = {"cname": "resumed", "duration": 60, "job_id": "resumed-1"}
    job, created = recording.submit(rt, spec)  # stored; the chain never went out
    assert created
    redis_client.zrem(DUE_KEY, "stop:resumed-1")  # and it died before the deadline, too

    def queued() -> int:
        return sum(int(redis_client.llen(k)) for k in redis_client.keys(RECORDING_QUEUE + "*"))

    submit_and_start(rt, spec)  # a caller submitting again: nothing is resent
    assert queued() == 0
    submit_and_start(rt, spec, redelivered=True)
    assert queued() == 1
    assert rt.store.due_at("stop", job.job_id) == job.stop_at


def test_a_redelivered_submit_cut_short_in_its_start_sends_the_acquire_again(
    redis_url, redis_client
):
    """The submit task acquires and starts its job itself: a worker that died there left the
    job acquiring (or starting without a sid). The restored submit sends the acquire task,
    which takes the job from where it is; a job with a sid is left alone."""
    from tasks.recording import submit_and_start
    from tests.support.stack import make_settings
    from worker import recording
    from worker.celery_app import RECORDING_QUEUE, configure, runtime
    from worker.states import JobState

    configure(make_settings(redis_url, "http://127.0.0.1:9"))
    rt = runtime()

    def sent() -> list[bytes]:
        return [
            m
            for k in redis_client.keys(RECORDING_QUEUE + "*")
            for m in redis_client.lrange(k, 0, -1)
        ]

    for state, sid, resent in [
        ("acquiring", None, True),
        ("starting", None, True),
        ("starting", "s1", False),
    ]:
        spec = {"cname": f"cut-{state}-{sid}", "duration": 60, "job_id": f"cut-{state}-{sid}"}
        job, _ = recording.submit(rt, spec)
        rt.store.transition(job.job_id, {JobState.QUEUED}, JobState.ACQUIRING, resource_id="r1")
        if state == "starting":
            rt.store.transition(job.job_id, {JobState.ACQUIRING}, JobState.STARTING, sid=sid)
        before = len(sent())
        submit_and_start(rt, spec)  # a caller submitting again: nothing is resent
        assert len(sent()) == before
        submit_and_start(rt, spec, redelivered=True)
        messages = sent()[: len(sent()) - before]
        assert len(messages) == (1 if resent else 0), (state, sid)
        assert all(b"recording.acquire" in m for m in messages)

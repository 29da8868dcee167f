"""cloudrec's kombu Redis transport (worker.transport) against a real Redis: a channel builds
its publishing Redis client once per connection pool, not once per publish, and what it
publishes still arrives: from several threads at once, and after its pool was replaced (a
reconnect, a fork)."""

from __future__ import annotations

import threading

import redis
from kombu import Connection, Exchange, Producer, Queue
from kombu.message import Message

from worker.transport import TRANSPORT

QUEUE = Queue("cloudrec.test.transport", Exchange("cloudrec.test.transport"), "t")


def _publish(channel: object, n: int, tag: str) -> None:
    producer = Producer(channel)
    for i in range(n):
        producer.publish(
            {"i": i, "tag": tag},
            exchange=QUEUE.exchange,
            routing_key="t",
            declare=[QUEUE],
            serializer="json",
        )


def test_a_channel_publishes_through_one_client_per_pool(redis_url: str, redis_client: redis.Redis):
    with Connection(redis_url, transport=TRANSPORT) as conn:
        channel = conn.channel()
        try:
            with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
                assert first is second
            _publish(channel, 50, "a")
            with channel.conn_or_acquire() as after:
                assert after is first
            assert redis_client.llen(QUEUE.name) == 50

            # The pool replaced (kombu drops it after a fork and when the connection is lost):
            # a new client on the new pool, never the old pool's.
            channel._disconnect_pools()
            _publish(channel, 10, "b")
            with channel.conn_or_acquire() as renewed:
                assert renewed is not first
                assert renewed.connection_pool is channel.pool
            assert redis_client.llen(QUEUE.name) == 60
        finally:
            channel.close()


def test_threads_share_a_channels_client_and_every_message_arrives(
    redis_url: str, redis_client: redis.Redis
):
    with Connection(redis_url, transport=TRANSPORT) as conn:
        channel = conn.channel()
        try:
            # Declared once before the threads: a message published while another thread is
            # still declaring the binding finds no queue to go to (kombu routes by the binding).
            QUEUE.bind(channel).declare()
            threads = [
                threading.Thread(target=_publish, args=(channel, 100, f"t{k}")) for k in range(8)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert redis_client.llen(QUEUE.name) == 800
        finally:
            channel.close()


def test_a_channel_that_only_publishes_holds_one_redis_connection(
    redis_url: str, redis_client: redis.Redis
):
    """kombu checks a new channel with a PING through its consuming client, whose pool is the
    channel's second: a channel that only publishes (a worker's producers) kept a connection
    that never sent anything else. Consuming still opens its own when it begins."""
    db = int(redis_client.connection_pool.connection_kwargs.get("db", 0))

    def connections() -> int:
        return sum(1 for c in redis_client.client_list() if int(c["db"]) == db)

    before = connections()
    with Connection(redis_url, transport=TRANSPORT) as conn:
        channel = conn.channel()
        try:
            _publish(channel, 5, "c")
            assert connections() - before == 1
            got: list[int] = []

            def on_message(body: dict[str, object], message: Message) -> None:
                if body["tag"] == "c":
                    got.append(int(body["i"]))  # type: ignore[call-overload]
                message.ack()

            with conn.Consumer(QUEUE, channel=channel, callbacks=[on_message]):
                while len(got) < 5:
                    conn.drain_events(timeout=5)
            assert sorted(got) == [0, 1, 2, 3, 4]
            assert connections() - before == 2  # the consumer's own, for BRPOP
        finally:
            channel.close()

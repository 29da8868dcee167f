"""worker.consumer's hand-over of ``task-sent`` events to the consumer's dispatcher, in one
process: what it does when a second consumer is made in a process that had one (a worker
restarted in-process, the tests' in-process workers)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from celery import Celery

from worker.consumer import SentEventsThroughConsumer


class _Dispatcher:
    """An event dispatcher that keeps what it was given."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, type: str, **fields: Any) -> None:
        self.sent.append((type, fields))


class _Producer:
    """A kombu producer that keeps what Celery's own dispatcher publishes through it."""

    def __init__(self) -> None:
        self.published: list[Any] = []
        self.exchange = None
        self.serializer = "json"

    def publish(self, body: Any, **kwargs: Any) -> None:
        self.published.append(body)


def test_a_second_consumer_takes_over_from_the_first_not_through_it() -> None:
    app = Celery(set_as_current=False)
    first = SimpleNamespace(app=app, event_dispatcher=_Dispatcher())
    second = SimpleNamespace(app=app, event_dispatcher=None)  # not sending yet
    SentEventsThroughConsumer.install(first)  # type: ignore[arg-type]
    SentEventsThroughConsumer.install(second)  # type: ignore[arg-type]
    producer = _Producer()

    app.amqp._event_dispatcher.publish("task-sent", {"uuid": "t1"}, producer)

    # The first consumer is gone: its dispatcher (closed, in a real worker) gets nothing, and
    # with the second not sending yet, the event goes out as Celery sends it.
    assert first.event_dispatcher.sent == []
    assert len(producer.published) == 1 and producer.published[0]["uuid"] == "t1"

    second.event_dispatcher = _Dispatcher()
    app.amqp._event_dispatcher.publish("task-sent", {"uuid": "t2"}, producer)
    assert second.event_dispatcher.sent == [("task-sent", {"uuid": "t2"})]

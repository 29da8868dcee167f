"""Celery's worker consumer, with task events sent twice a second instead of at once.

A worker sends three task events per task (received, started, succeeded) when events are on
(Flower, ``celery events``). Celery buffers them per group but asks its loop to flush the
buffer after every single event, and an event sent from a pool thread wakes the loop at once:
in ``benchmarks/deployment.py`` each message published carried one or two events, and
publishing them was 6% of the workers' samples while jobs started (py-spy ``--gil``). Here a
buffered event asks for one flush half a second later, unless one is already asked for; Celery
still flushes at once when a buffer holds 24 events. A monitor sees each event at most about
half a second late.

The ``task-sent`` events of the tasks a worker sends itself (a job's next step: three per job)
go the same way. Celery publishes each at once, in its own message, through a dispatcher of its
own (3.7% of the workers' samples in the same benchmark); with the thread pool (compose's and
``cloudrec worker``'s) they are handed to this consumer's dispatcher and buffered with the rest
(:class:`SentEventsThroughConsumer`). A prefork pool's children keep Celery's way: they send
from processes the consumer is not in.

An ask whose flush never ran (the loop was reset by a lost broker connection, which drops its
timers) is forgotten after :data:`LOST_ASK` seconds, so the next event asks again. At shutdown
the buffer is flushed before the dispatcher closes.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from celery.concurrency.thread import TaskPool as ThreadTaskPool
from celery.worker.consumer import Consumer

# How long a buffered event may wait for its flush.
FLUSH_DELAY = 0.5
# An ask older than this did not run: its timer went with a reset loop.
LOST_ASK = 5.0


class BatchingEventsConsumer(Consumer):  # type: ignore[misc]
    """``worker_consumer``: Celery's consumer, flushing task events every :data:`FLUSH_DELAY`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flush_lock = threading.Lock()
        self._flush_asked_at: float | None = None
        if isinstance(self.pool, ThreadTaskPool):
            SentEventsThroughConsumer.install(self)

    def on_send_event_buffered(self) -> None:
        """Called by the event dispatcher (from any thread) after it buffered an event."""
        if not self.hub:
            return
        now = time.monotonic()
        with self._flush_lock:
            asked = self._flush_asked_at
            if asked is not None and now - asked < LOST_ASK:
                return
            self._flush_asked_at = now
        # call_soon is safe from a pool thread; the timer is the loop's, so set it there.
        self.hub.call_soon(self._flush_later)

    def _flush_later(self) -> None:
        self.hub.call_later(FLUSH_DELAY, self._timed_flush)

    def _timed_flush(self) -> None:
        with self._flush_lock:
            self._flush_asked_at = None
        self._flush_events()

    def shutdown(self) -> None:
        self._flush_events()  # the last events first: the dispatcher closes without flushing
        super().shutdown()


class SentEventsThroughConsumer:
    """Stands in for the dispatcher Celery publishes ``task-sent`` events with (the app's
    ``amqp._event_dispatcher``): each is buffered by the consumer's dispatcher instead, when
    that one is up and sending; otherwise published as Celery would."""

    def __init__(self, consumer: Consumer, celerys: Any) -> None:
        self._consumer = consumer
        self._celerys = celerys

    @classmethod
    def install(cls, consumer: Consumer) -> None:
        """Hand this consumer the app's ``task-sent`` events. A consumer made before it in the
        same process (a worker restarted in-process) is replaced, not wrapped: its dispatcher
        is closed, and an event must never fall back to it."""
        amqp = consumer.app.amqp
        celerys = amqp._event_dispatcher
        if isinstance(celerys, cls):
            celerys = celerys._celerys
        amqp.__dict__["_event_dispatcher"] = cls(consumer, celerys)
        # The task sender keeps the dispatcher it was made with: make it again.
        amqp.__dict__.pop("send_task_message", None)

    def publish(self, type: str, fields: dict[str, Any], producer: Any, **kwargs: Any) -> Any:
        dispatcher = getattr(self._consumer, "event_dispatcher", None)
        if dispatcher is None or not dispatcher.enabled:
            return self._celerys.publish(type, fields, producer, **kwargs)
        dispatcher.send(type, **fields)
        return None

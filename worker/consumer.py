"""The worker's consumer: task events published in batches on a short timer.

A worker started with ``-E`` (compose runs it so, for Flower) sends three task events per
message it runs: ``task-received``, ``task-started`` and ``task-succeeded`` (or failed, or
retried). Celery buffers them and publishes a buffer as one ``task.multi`` message, but it asks
the event loop to flush after every event, and an event sent from a pool thread (the threads
pool sends ``task-started`` and the outcome from there) wakes the loop at once: so a buffer
holds one or two events, and each costs a wake-up, a publish and a Redis round trip. Of a
worker's CPU in ``benchmarks/deployment.py`` that was about a tenth.

Here a buffered event asks for a flush :data:`EVENT_FLUSH_INTERVAL` later, unless one is asked
for already: every event of that interval goes in one message (Celery still flushes at once
when a buffer reaches its limit, 24 events). Flower shows a task's progress at most that much
later; nothing else reads task events. The consumer flushes what is buffered when it shuts
down, where Celery's own loop would have flushed it a moment before.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from celery.worker.consumer import Consumer

# How long a task event may wait in the buffer before it is published.
EVENT_FLUSH_INTERVAL = 0.5
# A flush asked for this long ago that has not run was lost (the event loop was replaced after
# a lost broker connection, with its timers): the next event asks again.
_LOST_AFTER = 10 * EVENT_FLUSH_INTERVAL


class BatchingEventsConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, flushing buffered task events every :data:`EVENT_FLUSH_INTERVAL`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flush_lock = threading.Lock()
        self._flush_asked_at: float | None = None

    def on_send_event_buffered(self) -> None:
        """Called in whichever thread sent the event (the loop's or a pool thread)."""
        if self.hub is None:
            return
        now = time.monotonic()
        with self._flush_lock:
            asked = self._flush_asked_at
            if asked is not None and now - asked < _LOST_AFTER:
                return  # this event goes with the flush already asked for
            self._flush_asked_at = now
        # The timer is the loop's: only the loop's thread may touch it.
        self.hub.call_soon(self._flush_later)

    def _flush_later(self) -> None:
        self.hub.call_later(EVENT_FLUSH_INTERVAL, self._timed_flush)

    def _timed_flush(self) -> None:
        with self._flush_lock:
            self._flush_asked_at = None
        self._flush_events()

    def shutdown(self) -> None:
        self._flush_events()
        super().shutdown()

"""Notification events like the real service's NCS (docs/service/ncs.md): an ordered event log, read
through ``GET /dev/events``, and optional delivery to a configured URL.

Each event is the NCS envelope exactly as it goes on the wire::

    {"noticeId": "<uuid4 hex>", "productId": 3, "eventType": 31, "notifyMs": 1700000000000,
     "sid": "<sid>", "payload": {"cname", "uid", "sid", "sequence", "sendts", "serviceType",
                                 "details": {"msgName": "uploaded", ...}}}

``sequence`` counts from 0 per sid. Delivery (when ``ncs_url`` is set) POSTs the raw JSON body
with ``Agora-Signature`` (HMAC-SHA1, hex) and ``Agora-Signature-V2`` (HMAC-SHA256, hex) of that
body keyed by ``ncs_secret``. An answer other than 200 with a JSON body within
``ncs_timeout_seconds`` is resent at once, then with growing intervals, 3 times at most, with
``notifyMs`` refreshed on each resend (docs/service/ncs.md#transport). Resends do not hold up later
events, so, as with the real NCS, delivery order is not guaranteed; the log's order is.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from contract.ncs import EVENTS, PRODUCT_CLOUD_RECORDING, EventType, LeaveCode, signatures

log = logging.getLogger(__name__)

# recorder_leave leaveCode bits (docs/service/behaviour.md#maxidletime), by the names the service's
# lifecycle uses.
LEAVE_INIT_FAILURE = LeaveCode.INIT_FAILURE
LEAVE_SIGINT = LeaveCode.SIGINT
LEAVE_NO_USERS = LeaveCode.NO_USERS
LEAVE_CALLED = LeaveCode.CALLED

_LOG_LIMIT = 10_000


_DUPLICATE = -2  # the attempt number of a deliberate duplicate (sent once, never resent)
_DUPLICATE_DELAY = 0.2  # seconds: late enough to arrive after later events
_LAST_CHANCE = -1  # the attempt number of a first send made while closing


@dataclass(order=True)
class _Attempt:
    due: float
    order: int
    attempt: int = field(compare=False)  # 0: first send; 1..3: resends; or the two above
    envelope: dict[str, Any] = field(compare=False)


class EventLog:
    """Thread-safe, ordered log of the events of every recording, plus their delivery."""

    def __init__(
        self,
        url: str | None = None,
        secret: str = "",
        *,
        timeout: float = 10.0,
        retry_delays: tuple[float, ...] = (0.0, 1.0, 3.0),
        duplicate: Callable[[], bool] = lambda: False,
        drop: Callable[[], bool] = lambda: False,
        delay: Callable[[], float] = lambda: 0.0,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.url = url
        self._duplicate = duplicate
        self._drop = drop
        self._delay = delay
        self._secret = secret
        self._timeout = timeout
        self._retry_delays = retry_delays
        self._wall_ms = wall_ms
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._sequence: dict[str, int] = {}
        self._outbox: list[_Attempt] = []
        self._order = 0
        self._closed = False
        self._stats = {
            "attempts": 0,
            "delivered": 0,
            "failed": 0,
            "duplicates": 0,
            "dropped": 0,
            "delayed": 0,
        }
        self._in_flight = 0
        self._sender: threading.Thread | None = None
        self._http: requests.Session | None = None
        if url:
            self._http = requests.Session()
            self._sender = threading.Thread(target=self._deliver, name="ncs-sender", daemon=True)
            self._sender.start()

    def emit(
        self, event_type: int, *, sid: str, cname: str, uid: str, **details: Any
    ) -> dict[str, Any]:
        """Append one event (and queue it for delivery); returns its envelope."""
        service_type, name = EVENTS[EventType(event_type)]
        with self._cond:
            sequence = self._sequence.get(sid, 0)
            self._sequence[sid] = sequence + 1
            now = self._wall_ms()
            envelope: dict[str, Any] = {
                "noticeId": uuid.uuid4().hex,
                "productId": PRODUCT_CLOUD_RECORDING,
                "eventType": event_type,
                "notifyMs": now,
                "sid": sid,
                "payload": {
                    "cname": cname,
                    "uid": uid,
                    "sid": sid,
                    "sequence": sequence,
                    "sendts": now,
                    "serviceType": int(service_type),
                    "details": {"msgName": name, **details},
                },
            }
            self._events.append(envelope)
            del self._events[:-_LOG_LIMIT]
            if self._sender is not None:
                self._queue_first_send(envelope)
        log.debug("event %s %s for %s", event_type, name, sid)
        return envelope

    def events(self, sid: str | None = None) -> list[dict[str, Any]]:
        """The log in emission order, optionally only one recording's events."""
        with self._cond:
            return [e for e in self._events if sid is None or e["sid"] == sid]

    def clear(self) -> None:
        """Forget the log and the per-sid sequences (deliveries under way go on)."""
        with self._cond:
            self._events.clear()
            self._sequence.clear()

    def delivery(self) -> dict[str, Any]:
        """Delivery counters: POSTs made, events delivered, events given up on, and events
        still queued or being sent (``pending``)."""
        with self._cond:
            return {
                "url": self.url,
                **self._stats,
                "pending": len(self._outbox) + self._in_flight,
            }

    def close(self, timeout: float = 5.0) -> None:
        """Stop delivering; first sends still queued go out, pending resends are dropped."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._sender is not None:
            self._sender.join(timeout)
        if self._http is not None:
            self._http.close()

    # -- delivery ------------------------------------------------------------------------------

    def _queue_first_send(self, envelope: dict[str, Any]) -> None:
        """Caller holds the lock. Faults: lose the event, or hold it back (later ones
        overtake it)."""
        if self._drop():
            self._stats["dropped"] += 1
            return
        held = self._delay()
        if held > 0:
            self._stats["delayed"] += 1
        self._schedule(envelope, 0, time.monotonic() + held)

    def _schedule(self, envelope: dict[str, Any], attempt: int, due: float) -> None:
        """Caller holds the lock."""
        self._order += 1
        heapq.heappush(self._outbox, _Attempt(due, self._order, attempt, envelope))
        self._cond.notify_all()

    def _next_attempt(self) -> _Attempt | None:
        with self._cond:
            while True:
                if self._closed:  # send what was never sent, once, now; drop resends
                    self._outbox = [a for a in self._outbox if a.attempt == 0]
                    heapq.heapify(self._outbox)
                    if not self._outbox:
                        return None
                    item = heapq.heappop(self._outbox)
                    item.attempt = _LAST_CHANCE
                    self._in_flight += 1
                    return item
                if self._outbox:
                    wait = self._outbox[0].due - time.monotonic()
                    if wait <= 0:
                        self._in_flight += 1
                        return heapq.heappop(self._outbox)
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _deliver(self) -> None:
        while (item := self._next_attempt()) is not None:
            envelope = item.envelope
            # docs/service/ncs.md#transport: notifyMs is refreshed on each resend
            if item.attempt != 0:
                envelope = {**envelope, "notifyMs": self._wall_ms()}
            ok = self._post(envelope)
            with self._cond:
                self._in_flight -= 1
                self._stats["attempts"] += 1
                if item.attempt == _DUPLICATE:
                    self._stats["duplicates"] += 1
                elif ok:
                    self._stats["delivered"] += 1
                    if item.attempt >= 0 and self._duplicate():
                        due = time.monotonic() + _DUPLICATE_DELAY
                        self._schedule(item.envelope, _DUPLICATE, due)
                elif 0 <= item.attempt < len(self._retry_delays):
                    delay = self._retry_delays[item.attempt]
                    self._schedule(item.envelope, item.attempt + 1, time.monotonic() + delay)
                else:
                    self._stats["failed"] += 1
                    log.warning(
                        "NCS gave up on event %s of %s after %d attempts",
                        envelope["eventType"],
                        envelope["sid"],
                        item.attempt + 1,
                    )

    def _post(self, envelope: dict[str, Any]) -> bool:
        """One POST; True when the receiver answered 200 with a JSON body."""
        assert self.url is not None and self._http is not None
        body = json.dumps(envelope, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", **signatures(body, self._secret)}
        try:
            response = self._http.post(self.url, data=body, headers=headers, timeout=self._timeout)
            if response.status_code != 200:
                return False
            response.json()
            return True
        except (requests.RequestException, ValueError) as exc:
            log.info("NCS delivery of %s failed: %s", envelope["noticeId"], type(exc).__name__)
            return False

"""Keeping a claimed stop's lease alive while its request is in flight.

A stop deadline stays in the due zset while it is being worked on: its score is pushed a lease
into the future, and the dispatcher sends the stop again when the lease runs out
(docs/design.md#scheduling: a worker killed mid-stop loses nothing). The lease must therefore be
*short*, or a killed worker costs that many seconds of lateness, and yet a stop request may
legitimately take 45 s (a synchronous stop waits for the uploads).

So a step in flight renews its lease on a heartbeat: :meth:`LeaseKeeper.hold` registers the
entry, one daemon thread per process pushes every registered entry out by ``lease`` seconds every
``lease / 3`` seconds (one pipeline for all of them), and the entry is dropped when the block
ends. If the process dies, the heartbeat dies with it and the entry comes back within ``lease``.

The same heartbeat keeps an exclusive *in-flight claim* (``cloudrec:claim:<action>:<id>``) alive,
so a duplicate delivery of the same step (a resend after a slow pickup) does not send a second
request while the first is still waiting for its answer. This is cloudrec's one "only one
request in flight" primitive: the start step holds ``start`` (the start claim) and the stop
steps hold ``stop`` with it; :meth:`LeaseKeeper.held` is how others (the reconciler, a start's
sid search) see that a request is in flight.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator

import redis

from worker.keys import DUE_KEY, due_member, sent_key
from worker.keys import claim_key as claim_key

log = logging.getLogger("cloudrec.leases")


class LeaseKeeper:
    """Renews the leases of the due entries this process is working on."""

    def __init__(self, client: redis.Redis, lease: float) -> None:
        self.redis = client
        self.lease = lease
        self._held: dict[tuple[str, str], int] = {}  # (action, job id) -> holders
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @contextlib.contextmanager
    def hold(self, action: str, job_id: str) -> Iterator[bool]:
        """Take the in-flight claim of ``action`` for this job and keep it and the due entry's
        lease alive until the block ends. Yields False (and holds nothing) if another process
        holds the claim: its request is in flight and the caller should leave it be."""
        key = claim_key(action, job_id)
        if not self.redis.set(key, os.getpid(), nx=True, px=self._lease_ms):
            yield False
            return
        self._renew([(action, job_id)])
        self._register(action, job_id, +1)
        try:
            yield True
        finally:
            self._register(action, job_id, -1)
            self.redis.delete(key)

    def held(self, action: str, job_id: str) -> bool:
        """Whether some process holds the in-flight claim (its heartbeat is alive)."""
        return bool(self.redis.exists(claim_key(action, job_id)))

    @property
    def _lease_ms(self) -> int:
        return int(self.lease * 1000)

    def _register(self, action: str, job_id: str, delta: int) -> None:
        with self._lock:
            count = self._held.get((action, job_id), 0) + delta
            if count > 0:
                self._held[(action, job_id)] = count
            else:
                self._held.pop((action, job_id), None)
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        # A prefork pool child inherits the object but not the thread: start one per process.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._beat, name="cloudrec-leases", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while True:
            time.sleep(self.lease / 3)
            with self._lock:
                entries = list(self._held)
            if entries:
                try:
                    self._renew(entries)
                # The next beat tries again; the lease has slack. OSError: the client's socket
                # was closed under this thread (its runtime closed): the thread must not die.
                except (redis.RedisError, OSError) as exc:
                    log.warning("lease renewal failed: %s", exc)

    def _renew(self, entries: list[tuple[str, str]]) -> None:
        until = time.time() + self.lease
        with self.redis.pipeline(transaction=False) as pipe:
            for action, job_id in entries:
                # xx: an entry its step removed stays removed; gt: a later retry time stays.
                pipe.zadd(DUE_KEY, {due_member(action, job_id): until}, xx=True, gt=True)
                pipe.pexpire(claim_key(action, job_id), self._lease_ms)
            pipe.execute()


class PendingSends:
    """Which due entries' tasks the dispatcher sent and no worker has begun yet.

    A claimed entry comes back after its lease so that nothing is lost with a dispatcher or a
    worker that dies; but a task still waiting in its queue, or held by a live worker until its
    second, is not lost: it is in Redis, or the restorer (worker.restorer) puts it back if its
    worker dies. Sending it again then only adds work, and when the workers are behind (many
    deadlines at once, a loaded machine) every lease that runs out adds one more task to the
    backlog that made it run out. So the dispatcher marks what it sent (after sending: a
    dispatcher that dies before that leaves no mark, and the lease re-sends), the task clears the
    mark when it begins (from then on its heartbeat keeps the lease), and an entry whose mark
    is still there is not sent again. The mark lapses after ``ttl`` seconds: a message lost in
    the instant between a worker taking it and recording that it holds it is sent again then.
    """

    def __init__(self, client: redis.Redis, ttl: float) -> None:
        self.redis = client
        self.ttl_ms = int(ttl * 1000)

    def pending(self, action: str, job_ids: list[str]) -> list[bool]:
        """For each job: is its ``action`` task sent and not begun?"""
        if not job_ids:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(sent_key(action, job_id))
            return [bool(n) for n in pipe.execute()]

    def mark(self, action: str, job_ids: list[str]) -> None:
        if not job_ids:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.set(sent_key(action, job_id), 1, px=self.ttl_ms)
            pipe.execute()

    def begun(self, action: str, job_id: str) -> None:
        self.redis.delete(sent_key(action, job_id))

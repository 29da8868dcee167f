"""Tier 1 on a real Redis: a stop in flight keeps its deadline's lease alive on a heartbeat, one
delivery at a time holds it, and a holder that is SIGKILLed lets the deadline come back within a
lease."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import redis

from tasks.recording import fire_times
from tests.support.waiting import wait_for
from tests.worker.test_store_guarantees import _record
from worker.leases import LeaseKeeper, claim_key
from worker.store import DUE_KEY, DueEntry, JobStore

LEASE = 1.0


def test_a_held_entry_is_renewed_until_the_block_ends(redis_client):
    keeper = LeaseKeeper(redis_client, LEASE)
    redis_client.zadd(DUE_KEY, {"stop:j1": time.time()})
    with keeper.hold("stop", "j1") as mine:
        assert mine
        time.sleep(3 * LEASE)  # three leases: only the heartbeat keeps it in the future
        assert redis_client.zscore(DUE_KEY, "stop:j1") > time.time()
        assert keeper.held("stop", "j1")
    assert not keeper.held("stop", "j1")
    time.sleep(LEASE + 0.2)
    assert redis_client.zscore(DUE_KEY, "stop:j1") < time.time()  # the heartbeat let go


def test_a_second_delivery_cannot_hold_a_stop_in_flight(redis_client):
    first, second = LeaseKeeper(redis_client, LEASE), LeaseKeeper(redis_client, LEASE)
    with first.hold("stop", "j1") as mine:
        assert mine
        with second.hold("stop", "j1") as theirs:
            assert not theirs
    with second.hold("stop", "j1") as theirs:
        assert theirs  # released: the next attempt may send


def test_the_heartbeat_never_revives_a_removed_entry_nor_brings_a_retry_forward(redis_client):
    keeper = LeaseKeeper(redis_client, LEASE)
    later = time.time() + 60
    redis_client.zadd(DUE_KEY, {"stop:retry": later})
    with keeper.hold("stop", "gone"), keeper.hold("stop", "retry"):
        time.sleep(LEASE)
    assert redis_client.zscore(DUE_KEY, "stop:gone") is None  # the step had removed it
    assert redis_client.zscore(DUE_KEY, "stop:retry") == later


def _hold_forever(url: str, ready: multiprocessing.synchronize.Event, action: str = "stop") -> None:
    keeper = LeaseKeeper(redis.Redis.from_url(url), LEASE)
    with keeper.hold(action, "j1"):
        ready.set()
        time.sleep(3600)


def test_a_killed_holder_lets_the_deadline_come_back_within_a_lease(redis_url, redis_client):
    redis_client.zadd(DUE_KEY, {"stop:j1": time.time()})
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_forever, args=(redis_url, ready))
    holder.start()
    try:
        assert ready.wait(30)
        time.sleep(2 * LEASE)
        assert redis_client.zscore(DUE_KEY, "stop:j1") > time.time()  # alive: renewed
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.time()
    finally:
        holder.join(10)
    wait_for(lambda: not redis_client.exists(claim_key("stop", "j1")), 2 * LEASE, what="claim")
    due = redis_client.zscore(DUE_KEY, "stop:j1")
    assert due <= killed + LEASE + 0.1  # the dispatcher sees it again within one lease


def test_a_lapsed_stop_lease_is_sent_at_once_and_a_deadline_at_its_second(redis_client):
    store = JobStore(redis_client)
    now = time.time()
    store.create(_record("lapsed", stop_at=now - 4))  # its first stop was lost with a worker
    store.create(_record("coming", stop_at=now + 1))
    entries = [
        DueEntry("stop", "lapsed", now + 1),  # the lease of the lost attempt ends in 1 s
        DueEntry("stop", "coming", now + 1),  # the deadline itself, in 1 s
        DueEntry("start", "coming", now + 2),
    ]
    assert fire_times(store, entries, now) == [now - 4, now + 1, now + 2]


def test_the_start_claim_is_exclusive_and_lapses_when_its_holder_dies(redis_url, redis_client):
    """The start claim is the same in-flight primitive as a stop's: held on the heartbeat."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_forever, args=(redis_url, ready, "start"))
    holder.start()
    keeper = LeaseKeeper(redis_client, LEASE)
    try:
        assert ready.wait(30)
        with keeper.hold("start", "j1") as mine:
            assert not mine  # exclusive: the holder's start is in flight
        os.kill(holder.pid, signal.SIGKILL)
    finally:
        holder.join(10)
    wait_for(lambda: not keeper.held("start", "j1"), 2 * LEASE, what="the claim to lapse")
    with keeper.hold("start", "j1") as mine:
        assert mine  # its holder died: the claim lapsed
    assert not keeper.held("start", "j1")  # released at the end of the block

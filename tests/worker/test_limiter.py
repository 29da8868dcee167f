"""Tier 1 on a real Redis: the shared sliding-window limiter."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from worker.errors import RateLimitWait
from worker.limiter import ApiRateLimiter, Priority


def test_never_more_than_the_limit_in_any_window(redis_url):
    # Four "processes" (own connections) hammer one limiter of 10/s for 2.5 s.
    admitted: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 2.5

    def hammer():
        limiter = ApiRateLimiter(redis.Redis.from_url(redis_url), 10)
        while time.monotonic() < stop_at:
            if limiter.try_acquire(Priority.STOP) == 0.0:
                with lock:
                    admitted.append(time.monotonic())

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    admitted.sort()
    # Any 1-second window (slightly shrunk for clock granularity) holds at most 10 calls.
    for i, t0 in enumerate(admitted):
        in_window = [t for t in admitted[i:] if t < t0 + 0.99]
        assert len(in_window) <= 10
    assert len(admitted) >= 20  # and the budget is actually used


def test_lower_priorities_back_off_first(redis_client):
    limiter = ApiRateLimiter(redis_client, 10)
    queries = sum(limiter.try_acquire(Priority.QUERY) == 0.0 for _ in range(10))
    assert queries == 7  # 70 % of the window
    assert limiter.try_acquire(Priority.START) == 0.0  # starts still get through
    assert limiter.try_acquire(Priority.START) == 0.0
    assert limiter.try_acquire(Priority.START) > 0.0
    assert limiter.try_acquire(Priority.STOP) == 0.0  # and stops get the last slot


def test_long_waits_are_not_spent_holding_a_slot(redis_client):
    limiter = ApiRateLimiter(redis_client, 2, max_inline_wait=0.05)
    limiter.acquire(Priority.STOP)
    limiter.acquire(Priority.STOP)
    with pytest.raises(RateLimitWait) as info:
        limiter.acquire(Priority.STOP)
    assert 0 < info.value.retry_after <= 1.01  # the window plus the 1 ms the script adds

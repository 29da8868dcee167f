"""Tier 1 on a real Redis: the limiter uses the budget when work waits (lending the reserved
headroom), gives it back to higher priorities at once, and never exceeds it in any window."""

from __future__ import annotations

import random
import threading
import time

import pytest
import redis

from worker.errors import RateLimitWait
from worker.limiter import ApiRateLimiter, Priority

RATE = 10


def _worker_like(
    redis_url: str, priority: Priority, until: float, admitted: list[float], lock: threading.Lock
) -> None:
    """What a task does: try, and on RateLimitWait come back after retry_after (+ jitter)
    instead of waiting inline, exactly as tasks.recording.run_step retries."""
    limiter = ApiRateLimiter(redis.Redis.from_url(redis_url), RATE)
    while time.monotonic() < until:
        try:
            limiter.acquire(priority)
        except RateLimitWait as exc:
            time.sleep(exc.retry_after + random.uniform(0, 0.25))
            continue
        with lock:
            admitted.append(time.monotonic())


def _max_in_any_window(times: list[float], window: float = 0.99) -> int:
    times = sorted(times)
    return max(
        (sum(1 for t in times[i:] if t < t0 + window) for i, t0 in enumerate(times)), default=0
    )


@pytest.mark.parametrize("priority", [Priority.QUERY, Priority.STOP])
def test_waiting_work_uses_at_least_90_percent_and_never_more_than_the_limit(redis_url, priority):
    admitted: list[float] = []
    lock = threading.Lock()
    start = time.monotonic()
    until = start + 4.0
    threads = [
        threading.Thread(target=_worker_like, args=(redis_url, priority, until, admitted, lock))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _max_in_any_window(admitted) <= RATE
    steady = [t for t in admitted if start + 1.0 <= t < start + 4.0]  # after the first window
    assert len(steady) >= 0.9 * RATE * 3, f"only {len(steady)} calls in 3 s at {RATE}/s"


def test_lent_headroom_goes_back_to_a_waiting_stop_at_once(redis_client):
    limiter = ApiRateLimiter(redis_client, RATE, lend_after=0.0)
    # Queries get their 70 %; once refused (waiting), they may fill the whole window.
    admitted = [limiter.try_acquire(Priority.QUERY) == 0.0 for _ in range(20)]
    assert admitted[:7] == [True] * 7 and not admitted[7]
    assert sum(admitted) == RATE
    # A stop that has to wait takes the reservation back: queries stop at 70 % again, so the
    # next free slots go to the stop.
    assert limiter.try_acquire(Priority.STOP) > 0.0
    time.sleep(1.01)  # a deadline: the whole window has passed
    for _ in range(7):
        assert limiter.try_acquire(Priority.QUERY) == 0.0
    assert limiter.try_acquire(Priority.QUERY) > 0.0  # capped again while the stop waits
    assert limiter.try_acquire(Priority.STOP) == 0.0


def test_a_wait_carries_the_priority_that_waited(redis_client):
    limiter = ApiRateLimiter(redis_client, 1, max_inline_wait=0.0)
    limiter.acquire(Priority.STOP)
    with pytest.raises(RateLimitWait) as info:
        limiter.acquire(Priority.QUERY)
    assert info.value.priority == "query"

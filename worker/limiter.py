"""One API rate limiter for every worker process, kept in Redis.

The real service allows ``CLOUDREC_API_RATE_LIMIT`` (10) requests per second per App ID across all
callers. Every API call goes through :meth:`ApiRateLimiter.acquire` first. The limiter keeps a
sliding log of the last second's calls in one sorted set, so *no* one-second window ever holds
more than the limit, whichever processes made the calls. Each App ID has its own limiter (its own
key, :func:`worker.keys.limiter_key`, and its own rate): one app spending its budget never
takes a slot of another's.

Priorities spend the small budget in the order docs/design.md#scheduling asks for: a query may only
use the window while it is at most 70 % full, update/updateLayout 80 %, acquire/start 90 %, and stop
may use all of it, so under pressure queries back off first and stops still go through.

The reserved headroom is *lent*, so that waiting work uses the whole budget: a priority that has
been waiting (refused at least once in every window) for ``lend_after`` seconds may fill the
window to 100 %, unless a higher priority was refused within the last window (then the
reservation holds again at once).
With only queries waiting, queries get all 10 calls per second; the moment a stop has to wait,
queries drop back to 70 % and the stop gets the next free slot.

While a budget's stops are behind (the stop planner, :mod:`worker.planner`, has more stops than
the budget serves on time, and marks it), every other call waits, whatever the window holds:
queries and starts yield to stops until the stops have caught up.

A call the service refused with 429 did not count in the service's window: :meth:`refund` takes
it out of ours too (else every 429 would cost a slot of the budget, and a crunch of stops paced
at the limit would run slower than the limit).

A call that would wait longer than ``max_inline_wait`` is not made: :class:`RateLimitWait` tells
the task to retry later, so waiting work does not hold a worker slot.
"""

from __future__ import annotations

import enum
import threading
import time
import uuid

import redis

from worker import keys
from worker.errors import RateLimitWait

LIMITER_KEY = keys.LIMITER_KEY


class Priority(enum.Enum):
    """How much of the window a call may use (fraction of the limit) while higher priorities
    are waiting. Declared from the highest priority to the lowest."""

    STOP = 1.0
    START = 0.9  # acquire and start: the resource is only good for seconds
    UPDATE = 0.8
    QUERY = 0.7

    @property
    def rank(self) -> int:
        """0 for the highest priority (stop), growing downwards."""
        return list(Priority).index(self)


# KEYS[1]: the log (zset of admitted calls), KEYS[2]: the demand hash, KEYS[3]: the budget's
# "stops behind" mark (worker.planner): while it exists only stops (rank 0) are admitted.
# ARGV: window_ms, full capacity, own capacity (the priority's share), rank, lend_after_ms, member.
# Demand fields: "w<rank>" = when this rank was last refused, "f<rank>" = when its current run of
# waiting began (a run ends when the rank went a whole window without a refusal). Uses the Redis
# clock so that every process agrees on "now". Returns {1, 0} when admitted, {0, wait_ms} if not.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local full = tonumber(ARGV[2])
local own = tonumber(ARGV[3])
local rank = tonumber(ARGV[4])
local lend_after = tonumber(ARGV[5])
if rank > 0 then
  local behind = redis.call('PTTL', KEYS[3])
  if behind > 0 then return {0, math.min(behind, window)} end
end
local function recent(field)
  local v = tonumber(redis.call('HGET', KEYS[2], field) or '-1')
  return v >= 0 and now - v < window, v
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
local waiting = recent('w' .. rank)
if not waiting then redis.call('HDEL', KEYS[2], 'f' .. rank) end
local cap = own
if n >= own and own < full and waiting then
  local first = tonumber(redis.call('HGET', KEYS[2], 'f' .. rank) or '-1')
  if first >= 0 and now - first >= lend_after then
    cap = full
    for r = 0, rank - 1 do
      if recent('w' .. r) then cap = own break end
    end
  end
end
if n < cap then
  redis.call('ZADD', KEYS[1], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[1], window * 2)
  return {1, 0}
end
redis.call('HSET', KEYS[2], 'w' .. rank, now)
redis.call('HSETNX', KEYS[2], 'f' .. rank, now)
redis.call('PEXPIRE', KEYS[2], window * 4)
local e = redis.call('ZRANGE', KEYS[1], n - cap, n - cap, 'WITHSCORES')
return {0, tonumber(e[2]) + window - now + 1}
"""


class ApiRateLimiter:
    """Shared sliding-window limiter: at most ``rate`` calls in any window of one second."""

    def __init__(
        self,
        client: redis.Redis,
        rate: float,
        *,
        key: str = LIMITER_KEY,
        app: str = "default",
        max_inline_wait: float = 0.25,
        lend_after: float = 0.2,
        stops_behind_key: str | None = None,
    ) -> None:
        """``key``: the budget's Redis key (one per App ID); ``app``: the app's name, reported
        with a wait (:class:`RateLimitWait`)."""
        # Fractional rates (e.g. 0.5/s) become one call per 2 s window.
        self._capacity = max(1, int(rate))
        self._window_ms = int(1000 * self._capacity / rate)
        self._key = key
        self._app = app
        self._demand_key = key + ":demand"
        # Without a planner's mark key, a key nobody sets: nothing ever yields.
        self._behind_key = stops_behind_key or key + ":behind"
        self._max_inline_wait = max_inline_wait
        self._lend_after_ms = int(lend_after * 1000)
        self._script = client.register_script(_ACQUIRE_LUA)
        self._client = client
        self._last = threading.local()  # each thread's last admitted call (for refund)

    @property
    def capacity(self) -> int:
        """Calls admitted per window."""
        return self._capacity

    def try_acquire(self, priority: Priority = Priority.START) -> float:
        """Take a slot if there is one: returns 0.0, else the seconds until one frees up."""
        own = max(1, int(self._capacity * priority.value))
        member = uuid.uuid4().hex
        admitted, wait_ms = self._script(
            keys=[self._key, self._demand_key, self._behind_key],
            args=[
                self._window_ms,
                self._capacity,
                own,
                priority.rank,
                self._lend_after_ms,
                member,
            ],
        )
        if int(admitted):
            self._last.member = member
            return 0.0
        return max(int(wait_ms), 1) / 1000.0

    def refund(self) -> None:
        """Take this thread's last admitted call out of the window: the service refused it (429)
        without counting it."""
        member = getattr(self._last, "member", None)
        if member is not None:
            self._last.member = None
            self._client.zrem(self._key, member)

    def acquire(self, priority: Priority = Priority.START) -> None:
        """Block briefly for a slot, or raise :class:`RateLimitWait` if the wait would be long."""
        deadline = time.monotonic() + self._max_inline_wait
        while True:
            wait = self.try_acquire(priority)
            if wait == 0.0:
                return
            if time.monotonic() + wait > deadline:
                raise RateLimitWait(wait, priority.name.lower(), self._app)
            time.sleep(wait)

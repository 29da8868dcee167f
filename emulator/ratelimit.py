"""Per-app-id request rate limit: a sliding one-second window
(docs/service/api-contract.md#limits)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping


class SlidingWindowLimiter:
    """Allows at most ``rate`` calls per key in any one-second window; ``rate`` 0 = unlimited."""

    def __init__(
        self,
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        rates: Mapping[str, int] | None = None,
    ) -> None:
        """``rates``: keys with a rate of their own (each App ID's limit); others get ``rate``."""
        self.rate = rate
        self._rates = dict(rates or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        """Count one call for ``key``; False (and not counted) when over the limit."""
        rate = self._rates.get(key, self.rate)
        if rate <= 0:
            return True
        now = self._clock()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - 1.0:
                calls.popleft()
            if len(calls) >= rate:
                return False
            calls.append(now)
            return True

"""The one way a test waits for something: poll until truthy, fail with what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    # One last look: a probe slower than the timeout still gets its answer counted.
    last = probe()
    if last:
        return last
    raise AssertionError(f"timed out after {timeout} s waiting for {what or probe}: last={last!r}")

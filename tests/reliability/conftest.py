"""Reliability tests: real worker processes killed with SIGKILL, a private Redis killed with
SIGKILL, injected faults. Small sizes here; the full sizes are the scripts in ``benchmarks/``."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability: kills workers or Redis, injects faults (small sizes)"
    )

"""Fixtures: run a CompositeRecorder over a scripted timeline (see tests.support.media_sources)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from tests.support.media_sources import Record, record_timeline


@pytest.fixture
def record(tmp_path: Path) -> Record:
    """record(config, [(t, users), ...], duration, layouts={t: LayoutSpec}) -> Recording, written
    under the test's tmp_path."""
    return partial(record_timeline, tmp_path / "out")

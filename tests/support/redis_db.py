"""The test Redis: REDIS_URL, a dedicated db index that the fixtures flush."""

from __future__ import annotations

import os

# Tests never touch db 0, where a developer's own cloudrec may live.
TEST_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")

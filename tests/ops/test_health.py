"""``cloudrec health``: the healthcheck compose runs for beat (and for Redis reachability)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.support.ports import free_port
from tests.support.processes import processes, run_cli, start_beat_process
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_health_beat_is_ok_only_while_a_beat_ticks(
    env: dict[str, str], log_dir: Path, redis_client: redis.Redis
) -> None:
    before = run_cli(["health", "--beat"], env)
    with processes() as procs:
        beat = start_beat_process(env, log_dir)
        procs.append(beat)
        healthy = wait_for(
            lambda: (r := run_cli(["health", "--beat"], env)).returncode == 0 and r,
            30,
            0.5,
            "beat to be healthy",
        )
        beat.stop()  # a clean stop releases the lock
    after = run_cli(["health", "--beat"], env)
    assert before.returncode == 1 and "no celery beat holds the schedule lock" in before.stderr
    assert healthy.stdout.strip() == "ok"
    assert after.returncode == 1 and "no celery beat holds the schedule lock" in after.stderr


def test_health_fails_when_redis_does_not_answer(env: dict[str, str]) -> None:
    dead = dict(env, CLOUDREC_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = run_cli(["health"], dead)
    assert result.returncode == 1
    assert "Redis does not answer" in result.stderr
    assert run_cli(["health"], env).stdout.strip() == "ok"

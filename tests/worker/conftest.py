"""Tier 1 fixtures for the worker's logic: a real Redis, the emulator served in a thread (for
what only the service can answer), and a Runtime wired to both. The step functions run directly,
without Celery: a test drives them and checks the record, the due-queue and the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from emulator import EmulatorConfig, serve_in_thread
from emulator.server import EmulatorServer
from worker.devapi import DevApiClient
from worker.runtime import Runtime

FAST_EMULATOR = EmulatorConfig(
    port=0,
    qps=0,
    startup_seconds=0.5,
    slice_seconds=1.0,
    exit_linger_seconds=1.0,
    tick_seconds=0.05,
)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    from dataclasses import replace

    server = serve_in_thread(replace(FAST_EMULATOR, storage_dir=tmp_path / "storage"))
    yield server
    server.stop()


@pytest.fixture
def dev(emulator: EmulatorServer) -> Iterator[DevApiClient]:
    client = DevApiClient(emulator.base_url)
    yield client
    client.close()


def make_settings(redis_url: str, base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "api_base_url": base_url,
        "api_rate_limit": 1000,
        "api_read_timeout": 2.0,
        "api_stop_read_timeout": 5.0,
        "start_confirm_timeout": 20,
        "failover_window": 5,
        "dev_api": True,
        "orphan_scan_interval": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def rt(redis_url: str, emulator: EmulatorServer) -> Iterator[Runtime]:
    runtime = Runtime.build(make_settings(redis_url, emulator.base_url))
    yield runtime
    runtime.close()


def live_recordings(dev: DevApiClient, cname: str | None = None) -> list[dict[str, Any]]:
    return [r for r in dev.recordings() if r["live"] and (cname is None or r["cname"] == cname)]


def recordings_of(dev: DevApiClient, cname: str) -> list[dict[str, Any]]:
    return [r for r in dev.recordings() if r["cname"] == cname]

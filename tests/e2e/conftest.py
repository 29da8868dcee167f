"""Tier 3 fixtures: real Redis, the emulator on a loopback port, the real Celery app in a worker,
and the deadline dispatcher ticking like beat does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from config import Settings
from tests.support.emulator import PROCESS_EMULATOR, serving
from tests.support.stack import WEBHOOK_SECRET, Stack, dispatcher
from worker.celery_app import app, configure, queue_layout, runtime
from worker.devapi import DevApiClient


@pytest.fixture
def emulator_server(tmp_path: Path) -> Iterator[object]:
    with serving(replace(PROCESS_EMULATOR, storage_dir=tmp_path / "storage")) as server:
        yield server


@pytest.fixture
def stack_settings() -> dict[str, Any]:
    """Settings a test module changes in its stack: override this fixture there."""
    return {}


@pytest.fixture
def stack(
    redis_url: str, emulator_server: object, tmp_path: Path, stack_settings: dict[str, Any]
) -> Iterator[Stack]:
    values: dict[str, Any] = dict(
        redis_url=redis_url,
        api_base_url=emulator_server.base_url,  # type: ignore[attr-defined]
        api_rate_limit=10,
        start_confirm_timeout=20,
        failover_window=5,
        webhook_secret=WEBHOOK_SECRET,
        webhook_allow="127.0.0.1/32",  # the tests' webhook receivers listen on loopback
        orphan_grace=2,
        orphan_scan_interval=0,
        dev_api=True,
    )
    settings = Settings(**(values | stack_settings))
    configure(settings)
    stop = threading.Event()
    ticker = threading.Thread(target=dispatcher, args=(stop, 0.25), daemon=True)
    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        # The default "celery" queue too: completion callback tasks go there (tests register
        # their receiving tasks on the same app).
        queues=[*queue_layout(settings), settings.callback_queue],
        shutdown_timeout=30,
    ):
        ticker.start()
        yield Stack(
            settings=settings,
            runtime=runtime(),
            dev=DevApiClient(settings.api_base_url),
            storage_dir=tmp_path / "storage",
            emulator=emulator_server,
        )
        stop.set()
        ticker.join()

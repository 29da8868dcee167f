"""Tier 3 fixtures: real Redis, the emulator on a loopback port, the real Celery app in a worker,
and the deadline dispatcher ticking like beat does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker

from config import Settings
from emulator import EmulatorConfig, serve_in_thread
from worker.celery_app import app, configure, queue_layout, runtime
from worker.devapi import DevApiClient
from worker.runtime import Runtime

WEBHOOK_SECRET = "e2e-webhook-signing-key"


@dataclass
class Stack:
    settings: Settings
    runtime: Runtime
    dev: DevApiClient
    storage_dir: Path
    emulator: object


@pytest.fixture
def emulator_server(tmp_path: Path) -> Iterator[object]:
    config = EmulatorConfig(
        port=0,
        storage_dir=tmp_path / "storage",
        startup_seconds=1.0,
        slice_seconds=2.0,
        exit_linger_seconds=3.0,
        qps=0,
    )
    server = serve_in_thread(config)
    yield server
    server.stop()


def _dispatcher(stop: threading.Event, interval: float) -> None:
    from tasks.recording import dispatch

    while not stop.wait(interval):
        dispatch()  # the body of the beat task, run on the beat's clock


@pytest.fixture
def stack(redis_url: str, emulator_server: object, tmp_path: Path) -> Iterator[Stack]:
    settings = Settings(
        redis_url=redis_url,
        api_base_url=emulator_server.base_url,  # type: ignore[attr-defined]
        api_rate_limit=10,
        start_confirm_timeout=20,
        failover_window=5,
        webhook_secret=WEBHOOK_SECRET,
        orphan_grace=2,
        orphan_scan_interval=0,
        dev_api=True,
    )
    configure(settings)
    stop = threading.Event()
    ticker = threading.Thread(target=_dispatcher, args=(stop, 0.25), daemon=True)
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

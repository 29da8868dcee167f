"""Worker stacks in the test process: the settings of a Runtime wired to an emulator (the worker's
logic tests), and the real Celery app in a worker with the deadline dispatcher ticking like beat
(the end-to-end tests)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import Settings
from worker.devapi import DevApiClient
from worker.runtime import Runtime

WEBHOOK_SECRET = "whsec_ZTJlLXdlYmhvb2stc2lnbmluZy1rZXktMzItYnl0ZXM="  # Standard Webhooks form


@dataclass
class Stack:
    settings: Settings
    runtime: Runtime
    dev: DevApiClient
    storage_dir: Path
    emulator: object


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


def dispatcher(stop: threading.Event, interval: float) -> None:
    from tasks.recording import dispatch

    while not stop.wait(interval):
        dispatch()  # the body of the beat task, run on the beat's clock

"""The dev API as the worker's recording locator: used only where the settings allow, and its
failures reach the reconciler as the locator's own error (no dev API error type beyond it)."""

from __future__ import annotations

import socket

import pytest

from emulator.server import EmulatorServer
from tests.support.stack import make_settings
from worker.devapi import DevApiLocator, locator_for
from worker.errors import LocatorUnavailable
from worker.locator import sid_of_resource


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_an_unreachable_dev_api_raises_the_locators_error() -> None:
    with pytest.raises(LocatorUnavailable, match="not reachable"):
        DevApiLocator(_closed_port_url(), timeout=1.0).recordings(live_only=True)


def test_sid_of_resource_is_none_when_the_locator_cannot_answer() -> None:
    assert sid_of_resource(DevApiLocator(_closed_port_url(), timeout=1.0), "r1") is None


def test_real_service_mode_has_no_locator(redis_url: str, emulator: EmulatorServer) -> None:
    assert locator_for(make_settings(redis_url, emulator.base_url, dev_api=False)) is None


def test_unset_dev_api_probes_the_base_url(redis_url: str, emulator: EmulatorServer) -> None:
    assert locator_for(make_settings(redis_url, emulator.base_url, dev_api=None)) is not None
    assert locator_for(make_settings(redis_url, _closed_port_url(), dev_api=None)) is None


def test_the_emulator_lists_no_recording_before_any_start(emulator: EmulatorServer) -> None:
    assert DevApiLocator(emulator.base_url).recordings(live_only=True) == []

"""``cloudrec channel join/leave/mute/unmute/show`` against the emulator's dev API."""

from __future__ import annotations

import json

import pytest

from tests.support.processes import Deployment

pytestmark = pytest.mark.e2e


def _show(deployment: Deployment, cname: str) -> dict[str, object]:
    result = deployment.cli("channel", "show", cname, "--json")
    assert result.returncode == 0, result.stderr
    shown: dict[str, object] = json.loads(result.stdout)
    return shown


def test_users_join_mute_and_leave(deployment: Deployment) -> None:
    joined = deployment.cli(
        "channel", "join", "cli-chan", "1", "--color", "#FF0000", "--tone", "440"
    )
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout)["uid"] == "1"
    audience = deployment.cli(
        "channel", "join", "cli-chan", "2", "--role", "audience", "--no-video", "--no-audio"
    )
    assert audience.returncode == 0, audience.stderr

    users = {u["uid"]: u for u in _show(deployment, "cli-chan")["users"]}  # type: ignore[attr-defined]
    assert users["1"]["role"] == "host" and users["1"]["video"] == {"color": "#FF0000"}
    assert users["1"]["audio"]["tone"] == 440
    assert users["2"]["role"] == "audience" and users["2"]["video"] is None
    assert users["2"]["audio"] is None

    assert deployment.cli("channel", "mute", "cli-chan", "1", "--video").returncode == 0
    users = {u["uid"]: u for u in _show(deployment, "cli-chan")["users"]}  # type: ignore[attr-defined]
    assert users["1"]["videoPublished"] is False and users["1"]["audioPublished"] is True
    text = deployment.cli("channel", "show", "cli-chan").stdout
    assert "2 user(s), 1 host(s)" in text
    assert "color #FF0000 (muted)" in text and "tone 440 Hz" in text

    assert deployment.cli("channel", "unmute", "cli-chan", "1").returncode == 0
    assert deployment.cli("channel", "leave", "cli-chan", "2").returncode == 0
    users = {u["uid"]: u for u in _show(deployment, "cli-chan")["users"]}  # type: ignore[attr-defined]
    assert list(users) == ["1"] and users["1"]["videoPublished"] is True


def test_dev_api_errors_are_reported(deployment: Deployment) -> None:
    result = deployment.cli("channel", "leave", "cli-chan-none", "99")
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr
    refused = deployment.cli("channel", "join", "cli-chan-none", "3", "--role", "audience")
    assert refused.returncode == 1
    assert "audience member cannot publish" in refused.stderr

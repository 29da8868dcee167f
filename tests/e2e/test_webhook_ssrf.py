"""Tier 3: the original attack, through the real worker. A job's webhook pointed at the
emulator's ``/dev/reset`` made the worker wipe its channels ("delivered, 200"). With no
CLOUDREC_WEBHOOK_ALLOW (this module's stack lists nothing), it is refused at submit when the host
is a literal address, and at delivery, after resolution, when it is a name."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tasks.recording import submit_and_start
from tests.support.waiting import wait_for
from worker.errors import JobSpecError

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack_settings() -> dict[str, Any]:
    return {"webhook_allow": ""}  # a deployment with no internal receiver


def _spec(cname: str, webhook: str) -> dict[str, Any]:
    return {
        "cname": cname,
        "duration": 2,
        "recordingConfig": {
            "maxIdleTime": 30,
            "transcodingConfig": {"width": 160, "height": 120, "fps": 7, "bitrate": 100},
        },
        "callback": {"webhook": webhook},
    }


def test_a_webhook_at_the_emulators_reset_is_refused_at_submit(stack):
    port = urlsplit(stack.settings.api_base_url).port
    with pytest.raises(JobSpecError) as caught:
        submit_and_start(stack.runtime, _spec("attack", f"http://127.0.0.1:{port}/dev/reset"))
    assert str(caught.value).startswith(
        "callback.webhook: must target a public address; 127.0.0.1 is a loopback address"
    )
    assert stack.runtime.store.ids() == []


def test_a_name_for_the_emulator_is_refused_at_delivery_and_nothing_is_wiped(stack):
    stack.dev.join("bystander", "7", video={"color": "#00FF00"}, audio=None)
    url = f"http://localhost:{urlsplit(stack.settings.api_base_url).port}/dev/reset"
    job, _ = submit_and_start(stack.runtime, _spec("attack", url))  # a name: checked later
    status = wait_for(
        lambda: (stack.runtime.store.get(job.job_id).callback_status or {}).get("webhook"),
        30,
        0.2,
        "the webhook's outcome",
    )
    assert status["state"] == "gave_up" and status["attempts"] == 1
    assert "localhost resolves to no public address" in status["error"]
    assert "is a loopback address" in status["error"]
    # /dev/reset was never called: the channel and the recording are still known.
    assert [u["uid"] for u in stack.dev.channel("bystander")["users"]] == ["7"]
    assert [r["cname"] for r in stack.dev.recordings()] == ["attack"]

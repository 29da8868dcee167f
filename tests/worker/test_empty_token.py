"""An empty RTC token is no token (a channel without App Certificate,
docs/service/api-contract.md#start), for the worker as for the service: the job keeps no token and
its start request carries no token field, never ``"token": ""`` (issue 8 item 4)."""

from __future__ import annotations

import pytest

from contract.models import to_wire
from tests.support.specs import small_spec
from worker import recording
from worker.recording import Next
from worker.vault import seal_token


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_an_empty_token_starts_a_recording_without_a_token_field(rt, dev, sealed: bool) -> None:
    token = seal_token(rt.settings, "") if sealed else ""
    job, created = recording.submit(rt, small_spec("notoken", token=token), via_broker=sealed)
    assert created and not job.has_token
    assert "token" not in to_wire(recording.build_start_request(rt, job))
    assert recording.acquire_step(rt, job.job_id) == Next("start")
    assert recording.start_step(rt, job.job_id).step == "watch"
    assert [r["cname"] for r in dev.recordings() if r["live"]] == ["notoken"]

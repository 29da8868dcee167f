"""Fault injection at run time (PUT /dev/faults), each fault pinned by the exact answers."""

from __future__ import annotations

import time

import pytest
import requests

from tests.support.emulator import AUTH, Api, start_request
from tests.support.waiting import wait_for

NOT_FOUND = {"code": 404, "reason": "failed to find worker"}
ACQUIRE = {"cname": "room", "uid": "1", "clientRequest": {}}
TIMEOUT_62 = {"status": 504, "code": 62, "reason": "request timeout"}


def acquire_statuses(api: Api, n: int) -> list[int]:
    return [api.post("/acquire", ACQUIRE).status_code for _ in range(n)]


def test_rate_faults_with_a_seed_are_reproducible(api: Api) -> None:
    rid, sid = api.start("room", "100")

    def pattern(seed: int) -> list[int]:
        fault = {**TIMEOUT_62, "operations": ["acquire"], "rate": 0.5}
        assert api.put_faults({"errors": [fault], "seed": seed}).status_code == 200
        return acquire_statuses(api, 40)

    first = pattern(7)
    assert set(first) == {200, 504}
    assert 8 <= first.count(504) <= 32  # about half
    assert pattern(7) == first  # the same seed: the same calls fail
    assert pattern(8) != first
    # only the named operations are hit
    assert {api.query(rid, sid).status_code for _ in range(10)} == {200}


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "code": 62, "reason": "request timeout"},
        {"status": 206, "code": 65, "reason": "request not completed"},
        {"status": 429, "message": "API rate limit exceeded"},
        {"status": 500, "code": 502, "reason": "Failed to allocate worker"},
    ],
)
def test_error_for_the_next_n_calls(api: Api, fault: dict[str, object]) -> None:
    api.put_faults({"errors": [{**fault, "operations": ["acquire"], "count": 2}]})
    body = {k: v for k, v in fault.items() if k != "status"}
    for _ in range(2):
        r = api.post("/acquire", ACQUIRE)
        assert (r.status_code, r.json()) == (fault["status"], body)
        assert r.headers["X-Request-Id"]
    assert api.post("/acquire", ACQUIRE).status_code == 200
    assert api.put_faults({}).json()["errors"] == []


def test_timeout_style_latency_the_call_takes_effect(api: Api) -> None:
    """latency "after": start is carried out, but its answer comes after the client gave up.
    Retrying the same start then answers 201 code 7 (docs/service/api-contract.md#start-answers),
    and the recording exists."""
    rid = api.acquire("room", "100")
    api.put_faults(
        {"latency": [{"operations": ["start"], "seconds": 1.5, "when": "after", "count": 1}]}
    )
    body = {"cname": "room", "uid": "100", "clientRequest": start_request()}
    url = api.url(f"/resourceid/{rid}/mode/mix/start")
    with pytest.raises(requests.Timeout):
        requests.post(url, json=body, auth=AUTH, timeout=0.5)
    r = api.start_raw(rid, "room", "100", start_request())
    assert (r.status_code, r.json()) == (
        201,
        {"code": 7, "reason": "already started", "resourceId": rid},
    )
    (row,) = api.http.get(f"{api.base}/dev/recordings", timeout=10).json()
    assert (row["resourceId"], row["live"]) == (rid, True)
    assert api.http.get(f"{api.base}/dev/faults", timeout=10).json()["latency"][0]["count"] == 0


def test_latency_before_delays_and_counts_down(api: Api) -> None:
    api.put_faults({"latency": [{"operations": ["acquire"], "seconds": 0.4, "count": 1}]})
    began = time.monotonic()
    api.acquire("room", "100")
    assert time.monotonic() - began >= 0.4
    began = time.monotonic()
    api.acquire("room", "100")
    assert time.monotonic() - began < 0.35


def test_ha_404_window_starting_later(api: Api) -> None:
    rid, sid = api.start("room", "100")
    put_at = time.monotonic()
    api.put_faults({"notFoundAfter": 0.6, "notFoundSeconds": 0.6, "notFoundOperations": ["query"]})
    described = api.http.get(f"{api.base}/dev/faults", timeout=10).json()
    assert 0 < described["notFoundAfter"] <= 0.6
    assert described["notFoundSeconds"] == pytest.approx(0.6)
    assert api.query(rid, sid).status_code == 200  # before the window
    first_404 = wait_for(
        lambda: api.query(rid, sid).status_code == 404 and time.monotonic(), 3, what="the window"
    )
    assert first_404 - put_at >= 0.6
    assert api.query(rid, sid).json() == NOT_FOUND
    r = api.update_layout(rid, sid, "room", "100", {})  # not a listed operation
    assert r.status_code == 200
    wait_for(lambda: api.query(rid, sid).status_code == 200, 3, what="the window to close")
    assert time.monotonic() - put_at >= 1.2


def test_404_during_the_first_seconds_after_start(api: Api) -> None:
    api.put_faults({"startNotFoundSeconds": 0.6})
    rid, sid = api.start("room", "100")
    started = time.monotonic()
    r = api.query(rid, sid)
    assert (r.status_code, r.json()) == (404, NOT_FOUND)
    assert api.stop(rid, sid, "room", "100").json() == NOT_FOUND
    wait_for(lambda: api.query(rid, sid).status_code == 200, 3, what="the task to be found")
    assert time.monotonic() - started >= 0.6


def test_upload_failures_for_the_next_n_uploads(api: Api) -> None:
    api.put_faults({"uploadFailures": 1})
    api.join("room", "1")
    rid, sid = api.start("room", "100")
    wait_for(lambda: api.query(rid, sid).json()["serverResponse"]["fileList"], 10, what="a slice")
    r = api.stop(rid, sid, "room", "100")
    assert r.json()["serverResponse"]["uploadingStatus"] == "backuped"
    files = api.recording(sid)["files"]
    assert sum(1 for f in files if f["backups"]) == 1  # exactly one file failed, once
    assert api.http.get(f"{api.base}/dev/faults", timeout=10).json()["uploadFailures"] == 0


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"errors": [{"status": 700, "code": 1}]}, "errors[0].status"),
        ({"errors": [{"status": 500}]}, "errors[0]"),
        ({"errors": [{"status": 500, "code": 62, "operations": ["x"]}]}, "errors[0].operations[0]"),
        ({"errors": [{"status": 500, "code": 62, "count": 1, "rate": 0.5}]}, "errors[0]"),
        ({"latency": [{"seconds": 1, "when": "during"}]}, "latency[0].when"),
        ({"notFoundAfter": -1}, "notFoundAfter"),
        ({"uploadLatency": "slow"}, "uploadLatency"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_fault_validation_names_the_field(
    api: Api, settings: dict[str, object], field: str
) -> None:
    r = api.put_faults(settings)
    assert r.status_code == 400 and r.json()["code"] == 2
    assert r.json()["reason"].startswith(field), r.json()

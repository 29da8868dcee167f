"""Gateway behaviour: auth, routes, content type, validation bodies, QPS, request ids."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from emulator import EmulatorConfig
from emulator.ratelimit import SlidingWindowLimiter
from emulator.service import RecordingService
from tests.support.emulator import AUTH, Api, EmulatorFactory, start_request

ACQUIRE = {"cname": "room", "uid": "1", "clientRequest": {}}


def test_missing_auth_is_401_unauthorized(api: Api) -> None:
    r = requests.post(api.url("/acquire"), json=ACQUIRE, timeout=10)
    assert (r.status_code, r.json()) == (401, {"message": "Unauthorized"})
    assert r.headers["X-Request-Id"]


@pytest.mark.parametrize(
    "auth_header",
    ["Basic ZGVtbzp3cm9uZw==", "Basic not-base64!", "Bearer abc", "Basic ZGVtbzpkZW1vLXNlY3JldA"],
)
def test_wrong_auth_is_401_invalid_credentials(api: Api, auth_header: str) -> None:
    r = requests.post(
        api.url("/acquire"), json=ACQUIRE, headers={"Authorization": auth_header}, timeout=10
    )
    assert (r.status_code, r.json()) == (401, {"message": "Invalid authentication credentials"})


def test_wrong_secret_is_401(api: Api) -> None:
    r = api.post("/acquire", ACQUIRE, auth=("demo", "nope"))
    assert r.status_code == 401
    assert r.json() == {"message": "Invalid authentication credentials"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/apps/a/cloud_recording/acquir"),
        ("GET", "/v1/apps/a/cloud_recording/acquire"),  # wrong method
        ("POST", "/v1/apps/a/acquire"),  # cloud_recording missing
        ("POST", "/v1/apps/a/cloud_recording/resourceid/r/sid/s/mode/mix/query"),
        ("GET", "/v1/apps/a/cloud_recording/resourceId/r/sid/s/mode/mix/query"),  # case
        ("GET", "/nothing"),
    ],
)
def test_unknown_route_or_method_is_404_no_route(api: Api, method: str, path: str) -> None:
    r = requests.request(method, api.base + path, json={}, auth=AUTH, timeout=10)
    assert (r.status_code, r.json()) == (404, {"message": "no Route matched with those values"})
    assert r.headers["X-Request-Id"]


def test_request_ids_are_unique(api: Api) -> None:
    ids = {api.post("/acquire", ACQUIRE).headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json;charset=utf-8", "application/json; charset=UTF-8"],
)
def test_json_content_types_accepted(api: Api, content_type: str) -> None:
    r = requests.post(
        api.url("/acquire"),
        data=json.dumps(ACQUIRE),
        auth=AUTH,
        headers={"Content-Type": content_type},
        timeout=10,
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_wrong_content_type_is_code_8(api: Api, content_type: str) -> None:
    r = requests.post(
        api.url("/acquire"),
        data=json.dumps(ACQUIRE),
        auth=AUTH,
        headers={"Content-Type": content_type},
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["code"] == 8


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe"])
def test_body_not_json_is_code_8(api: Api, body: bytes) -> None:
    r = requests.post(
        api.url("/acquire"),
        data=body,
        auth=AUTH,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["code"] == 8


def test_validation_failure_is_code_2_naming_the_field(api: Api) -> None:
    rid = api.acquire("room", "7")
    client = start_request()
    client["recordingConfig"]["maxIdleTime"] = 3
    r = api.start_raw(rid, "room", "7", client)
    assert r.status_code == 400
    assert r.json() == {
        "code": 2,
        "reason": "clientRequest.recordingConfig.maxIdleTime: must be between 5 and 2592000 "
        "(got 3)",
    }


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c["recordingConfig"].update(maxIdletime=30), "recordingConfig.maxIdletime"),
        (lambda c: c["recordingFileConfig"].update(avFileType=["mp4"]), "avFileType"),
        (lambda c: c["storageConfig"].pop("bucket"), "storageConfig.bucket"),
        (lambda c: c["storageConfig"].update(vendor=11), "storageConfig.extensionParams"),
        (lambda c: c["storageConfig"].update(fileNamePrefix=["a_b"]), "fileNamePrefix[0]"),
        (
            lambda c: c["recordingConfig"]["transcodingConfig"].update(width=1920, height=1920),
            "transcodingConfig.width",
        ),
        (lambda c: c["recordingConfig"]["transcodingConfig"].update(bitrate=6501), "bitrate"),
        (lambda c: c["recordingConfig"].update(audioProfile=3), "audioProfile"),
        (
            lambda c: c["recordingConfig"].update(
                subscribeAudioUids=["1"], unsubscribeAudioUids=["2"]
            ),
            "unSubscribeAudioUids",
        ),
        (lambda c: c.pop("storageConfig"), "clientRequest.storageConfig"),
    ],
)
def test_start_validation_errors(api: Api, mutate: Any, field: str) -> None:
    rid = api.acquire("room", "7")
    client = start_request()
    mutate(client)
    r = api.start_raw(rid, "room", "7", client)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 2
    assert field in body["reason"]
    # the resource was not consumed by the invalid start
    assert api.start_raw(rid, "room", "7", start_request()).status_code == 200


@pytest.mark.parametrize("spelling", ["unsubscribeVideoUids", "unSubscribeVideoUids"])
def test_both_unsubscribe_spellings_accepted(api: Api, spelling: str) -> None:
    rid = api.acquire("room", "7")
    extra: dict[str, Any] = {spelling: ["5"]}
    r = api.start_raw(rid, "room", "7", start_request(**extra))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cname": "room", "uid": "0", "clientRequest": {}}, "uid"),
        ({"cname": "room", "uid": 12, "clientRequest": {}}, "uid"),
        (
            {"cname": "room", "uid": "1", "clientRequest": {"resourceExpiredHour": 721}},
            "clientRequest.resourceExpiredHour",
        ),
        # (a missing or null clientRequest is {} for acquire: every field of it is optional)
        ({"cname": "room", "uid": "1", "clientRequest": []}, "clientRequest"),
        ([], "body"),
    ],
)
def test_acquire_validation(api: Api, body: Any, field: str) -> None:
    r = api.post("/acquire", body)
    assert r.status_code == 400
    assert r.json()["code"] == 2
    assert r.json()["reason"].startswith(field)


@pytest.mark.parametrize("cname", ["a/b", "x" * 64, "é"])
def test_acquire_invalid_channel_name_is_code_401(api: Api, cname: str) -> None:
    r = api.post("/acquire", {"cname": cname, "uid": "1", "clientRequest": {}})
    assert (r.status_code, r.json()) == (400, {"code": 401, "reason": "invalid_channel_name"})


def test_acquire_echoes_and_resource_id_is_long_and_url_safe(api: Api) -> None:
    r = api.post("/acquire", {"cname": "room 1", "uid": "42", "clientRequest": {}})
    body = r.json()
    assert (body["cname"], body["uid"]) == ("room 1", "42")
    rid = body["resourceId"]
    assert len(rid) >= 200
    assert all(c.isalnum() or c in "-_" for c in rid)


@pytest.mark.parametrize("mode", ["individual", "web", "composite"])
def test_modes_other_than_mix_are_code_2(api: Api, mode: str) -> None:
    rid = api.acquire("room", "7")
    r = api.start_raw(rid, "room", "7", start_request(), mode=mode)
    assert r.status_code == 400
    assert r.json()["code"] == 2
    assert "mode" in r.json()["reason"]
    rid, sid = api.start("room", "8")
    r = api.http.get(api.url(api.task(rid, sid, "query", mode=mode)), auth=AUTH, timeout=10)
    assert (r.status_code, r.json()["code"]) == (400, 2)


def test_qps_limit_per_app_id(make_emulator: EmulatorFactory) -> None:
    api = make_emulator(qps=3)
    other = Api(api.server, appid="other-app")
    # A burst: at most 3 of them in one second; the rest are 429.
    statuses = [api.post("/acquire", ACQUIRE).status_code for _ in range(6)]
    assert statuses.count(200) <= 3 and statuses[:1] == [200]
    limited = [s for s in statuses if s != 200]
    assert limited and set(limited) == {429}
    r = api.post("/acquire", ACQUIRE)
    if r.status_code == 429:
        assert r.json() == {"message": "API rate limit exceeded"}
    # another app id has its own budget
    assert other.post("/acquire", ACQUIRE).status_code == 200
    # the window slides: within a second the app id is allowed again
    deadline = time.monotonic() + 2
    while api.post("/acquire", ACQUIRE).status_code != 200:
        assert time.monotonic() < deadline, "rate limit did not recover"
        time.sleep(0.1)


def test_qps_zero_is_unlimited(api: Api) -> None:
    assert {api.post("/acquire", ACQUIRE).status_code for _ in range(25)} == {200}


def test_configured_app_ids(make_emulator: EmulatorFactory) -> None:
    api = make_emulator(app_ids=frozenset({"test-app"}))
    assert api.post("/acquire", ACQUIRE).status_code == 200
    other = Api(api.server, appid="unknown")
    r = other.post("/acquire", ACQUIRE)
    assert (r.status_code, r.json()) == (400, {"code": 400, "reason": "invalid_appid"})


def test_unexpected_exception_is_500_internal_error(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: RecordingService, appid: str, body: Any) -> Any:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(RecordingService, "acquire", boom)
    r = api.post("/acquire", ACQUIRE)
    assert (r.status_code, r.json()) == (500, {"code": 500, "reason": "internal_error"})
    assert r.headers["X-Request-Id"]
    assert "kaboom" not in r.text


def test_the_real_limit_is_10_requests_per_second_sliding() -> None:
    """The default is the real service's 10 requests/s per App ID
    (docs/service/api-contract.md#limits), counted over any one-second window (a fake clock makes it
    exact)."""
    now = [100.0]
    limiter = SlidingWindowLimiter(EmulatorConfig().qps, clock=lambda: now[0])
    assert limiter.rate == 10
    assert [limiter.allow("app") for _ in range(11)] == [True] * 10 + [False]
    assert limiter.allow("other-app")  # per App ID
    now[0] = 100.5
    assert not limiter.allow("app")
    now[0] = 101.0  # the first ten leave the window
    assert [limiter.allow("app") for _ in range(11)] == [True] * 10 + [False]
    assert SlidingWindowLimiter(0).allow("app")  # 0: unlimited

"""The emulator with an App Certificate checks the recorder's RTC token as the service does
(emulator.tokens): start answers 200 and a sid, then a recorder whose token is missing, for
another App ID, channel or uid, tampered or expired cannot join: event 1 with the RTC code (110
invalid, 109 expired), leave code 0, session exit 1, query status 20, then 404. A good token
records; a token that ends mid-recording drops the recorder then (109), its files kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from contract.tokens import build_rtc_token
from tests.support.emulator import Api, EmulatorFactory, start_request
from tests.support.waiting import wait_for

APP_ID = "970ca35de60c44645bbae8a215061b33"
CERT = "5cfd2fd1755d40ecb72977518be15d3b"
OTHER_APP = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def api(make_emulator: EmulatorFactory) -> Api:
    client = make_emulator(app_certificate=CERT)
    client.appid = APP_ID
    return client


def token(cname: str = "room", uid: str | int = "100", *, lifetime: int = 600, **kw: Any) -> str:
    app_id = kw.pop("app_id", APP_ID)
    return build_rtc_token(app_id, kw.pop("cert", CERT), cname, uid, lifetime=lifetime, **kw)


def start_with(api: Api, tok: str | None, cname: str = "room", uid: str = "100") -> tuple[str, str]:
    client = start_request(files=["hls", "mp4"])
    if tok is not None:
        client["token"] = tok
    rid = api.acquire(cname, uid)  # acquire carries no token: never refused for one
    r = api.start_raw(rid, cname, uid, client)
    assert r.status_code == 200, r.text  # a start is only "accepted" (api-contract.md#start)
    return rid, str(r.json()["sid"])


def details(api: Api, sid: str, event_type: int) -> list[dict[str, Any]]:
    return [e["payload"]["details"] for e in api.events(sid) if e["eventType"] == event_type]


def test_a_valid_token_records(api: Api) -> None:
    api.join("room", "1", video={"color": "#00FF00"}, audio={"tone": 440})
    rid, sid = start_with(api, token())
    wait_for(lambda: api.query(rid, sid).json()["serverResponse"]["status"] == 5, 10)
    view = api.recording(sid)["token"]
    assert view["accepted"] and view["errorCode"] is None and view["uid"] == "100"
    wait_for(lambda: api.query(rid, sid).json()["serverResponse"]["fileList"], 10, what="a slice")
    stop = api.stop(rid, sid, "room", "100")
    assert stop.status_code == 200, stop.text
    assert stop.json()["serverResponse"]["uploadingStatus"] == "uploaded"
    assert not details(api, sid, 1)


def test_a_uid_0_token_lets_the_recorder_join_with_any_uid(api: Api) -> None:
    rid, sid = start_with(api, token(uid=0), uid="4242")
    wait_for(lambda: api.query(rid, sid).json()["serverResponse"]["status"] == 5, 10)
    assert api.recording(sid)["token"]["accepted"]


BAD: dict[str, tuple[Callable[[], str | None], int, str]] = {
    "missing": (lambda: None, 110, "no token"),
    "wrong-app": (lambda: token(app_id=OTHER_APP), 110, "another App ID"),
    "wrong-channel": (lambda: token(cname="other"), 110, "another channel"),
    "wrong-uid": (lambda: token(uid="101"), 110, "another uid"),
    "wrong-certificate": (lambda: token(cert="f" * 32), 110, "signature"),
    "tampered": (lambda: token()[:-8] + "AAAAAAAA", 110, ""),
    "expired": (lambda: token(lifetime=60, issue_ts=1_700_000_000), 109, "expired"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_token_is_accepted_then_the_recorder_cannot_join(api: Api, case: str) -> None:
    make, code, reason = BAD[case]
    api.join("room", "1", video={"color": "#00FF00"}, audio={"tone": 440})
    rid, sid = start_with(api, make())
    row = api.wait_exited(sid)
    assert row["status"] == 20 and row["exitReason"] == "error"
    assert api.query(rid, sid).json()["serverResponse"]["status"] == 20  # during the linger
    (error,) = details(api, sid, 1)
    assert (error["module"], error["errorLevel"], error["errorCode"]) == (0, 5, code)
    assert reason in error["errorMsg"]
    assert details(api, sid, 41) == [{"msgName": "recorder_leave", "leaveCode": 0}]
    assert details(api, sid, 11) == [{"msgName": "session_exit", "exitStatus": 1}]
    assert not details(api, sid, 40)  # the recorder never started
    assert row["token"]["accepted"] is False and row["token"]["errorCode"] == code
    assert row["files"] == []
    # then gone, as a start that failed asynchronously looks (errors.md#not-found)
    wait_for(lambda: api.query(rid, sid).status_code == 404, 10, what="404 after the linger")
    assert api.query(rid, sid).json() == {"code": 404, "reason": "failed to find worker"}


def test_the_recorder_is_dropped_when_its_token_ends(api: Api) -> None:
    api.join("room", "1", video={"color": "#FF0000"}, audio={"tone": 440})
    rid, sid = start_with(api, token(lifetime=3))
    assert api.recording(sid)["token"]["accepted"]
    row = api.wait_exited(sid, timeout=20)
    assert row["status"] == 20 and "token expired" in row["error"]
    (error,) = details(api, sid, 1)
    assert error["errorCode"] == 109
    assert [f["fileName"] for f in row["files"] if f["fileName"].endswith(".m3u8")], row
    # it is over: the stop of the caller, later, finds the task exiting or gone
    assert api.stop(rid, sid, "room", "100").status_code in (400, 404)


def test_without_a_certificate_no_token_is_checked(make_emulator: EmulatorFactory) -> None:
    api = make_emulator()
    rid = api.acquire("room", "100")
    client = start_request() | {"token": "anything"}
    sid = api.start_raw(rid, "room", "100", client).json()["sid"]
    wait_for(lambda: api.query(rid, sid).json()["serverResponse"]["status"] == 5, 10)
    assert api.recording(sid)["token"] is None


OTHER_CERT = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"


def test_each_app_id_is_checked_with_its_own_certificate(make_emulator: EmulatorFactory) -> None:
    # Two Agora projects: the default certificate for APP_ID, OTHER_APP's own for OTHER_APP.
    api = make_emulator(app_certificate=CERT, app_certificates=((OTHER_APP, OTHER_CERT),))
    api.appid = APP_ID
    other = Api(api.server, appid=OTHER_APP)
    for client, app_id, cert in ((api, APP_ID, CERT), (other, OTHER_APP, OTHER_CERT)):
        cname = f"own-{app_id[:4]}"
        _, sid = start_with(client, token(cname, app_id=app_id, cert=cert), cname=cname)
        view = client.recording(sid)["token"]
        assert view["accepted"] and view["errorCode"] is None
    # OTHER_APP's token signed with the default certificate is not its project's: refused.
    _, sid = start_with(other, token("crossed", app_id=OTHER_APP, cert=CERT), cname="crossed")
    row = other.wait_exited(sid)
    assert row["token"]["errorCode"] == 110 and "signature" in row["token"]["reason"]

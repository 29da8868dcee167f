"""Resource state machine: single use, expiry, mismatches, conflicts, unknown tasks."""

from __future__ import annotations

import re
import time

from tests.support.emulator import Api, EmulatorFactory, start_request
from tests.support.waiting import wait_for


def test_start_answers_ids(api: Api) -> None:
    rid = api.acquire("room", "100")
    r = api.start_raw(rid, "room", "100", start_request())
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"cname", "uid", "resourceId", "sid"}
    assert (body["cname"], body["uid"], body["resourceId"]) == ("room", "100", rid)
    assert re.fullmatch(r"[0-9a-f]{32}", body["sid"])


def test_resource_is_single_use_201_code_7(api: Api) -> None:
    rid = api.acquire("room", "100")
    assert api.start_raw(rid, "room", "100", start_request()).status_code == 200
    r = api.start_raw(rid, "room", "100", start_request())
    assert r.status_code == 201
    assert r.json() == {"code": 7, "reason": "already started", "resourceId": rid}


def test_resource_expires_433(make_emulator: EmulatorFactory) -> None:
    api = make_emulator(resource_ttl_seconds=0.5)
    fresh = api.acquire("room", "100")
    stale = api.acquire("room", "101")
    assert api.start_raw(fresh, "room", "100", start_request()).status_code == 200
    time.sleep(0.6)
    r = api.start_raw(stale, "room", "101", start_request())
    assert (r.status_code, r.json()) == (400, {"code": 433, "reason": "resource expired"})


def test_unparsable_resource_1001(api: Api) -> None:
    r = api.start_raw("not-a-resource", "room", "100", start_request())
    assert r.status_code == 400
    assert r.json()["code"] == 1001


def test_cname_or_uid_mismatch_432(make_emulator: EmulatorFactory) -> None:
    api = make_emulator()
    rid = api.acquire("room", "100")
    for cname, uid in (("other", "100"), ("room", "101")):
        r = api.start_raw(rid, cname, uid, start_request())
        assert r.status_code == 400
        assert r.json()["code"] == 432
    other_app = Api(api.server, appid="another-app")
    r = other_app.start_raw(rid, "room", "100", start_request())
    assert (r.status_code, r.json()["code"]) == (400, 432)
    # the resource is still good for the right caller
    assert api.start_raw(rid, "room", "100", start_request()).status_code == 200


def test_same_cname_uid_as_live_task_53(api: Api) -> None:
    first = api.acquire("room", "100")
    second = api.acquire("room", "100")
    assert api.start_raw(first, "room", "100", start_request()).status_code == 200
    r = api.start_raw(second, "room", "100", start_request())
    assert (r.status_code, r.json()) == (400, {"code": 53, "reason": "task conflict"})
    # another uid on the same channel is fine (backup recordings,
    # docs/service/behaviour.md#backup-recordings)
    third = api.acquire("room", "200")
    assert api.start_raw(third, "room", "200", start_request()).status_code == 200


def test_conflict_ends_when_task_ends(api: Api) -> None:
    rid, sid = api.start("room", "100")
    assert api.stop(rid, sid, "room", "100").status_code == 206  # nobody published
    again = api.acquire("room", "100")
    assert api.start_raw(again, "room", "100", start_request()).status_code == 200


NOT_FOUND = {"code": 404, "reason": "failed to find worker"}


def test_unknown_task_404(api: Api) -> None:
    rid, sid = api.start("room", "100")
    for bad_rid, bad_sid in ((rid, "0" * 32), ("nope", sid)):
        assert api.query(bad_rid, bad_sid).json() == NOT_FOUND
        assert api.query(bad_rid, bad_sid).status_code == 404
        r = api.stop(bad_rid, bad_sid, "room", "100")
        assert (r.status_code, r.json()) == (404, NOT_FOUND)
        r = api.update(bad_rid, bad_sid, "room", "100", {})
        assert (r.status_code, r.json()) == (404, NOT_FOUND)
        r = api.update_layout(bad_rid, bad_sid, "room", "100", {})
        assert (r.status_code, r.json()) == (404, NOT_FOUND)
    other_app = Api(api.server, appid="another-app")
    assert other_app.query(rid, sid).status_code == 404
    assert api.query(rid, sid).status_code == 200


def test_task_calls_with_wrong_identity_432(api: Api) -> None:
    rid, sid = api.start("room", "100")
    assert api.stop(rid, sid, "room", "999").json()["code"] == 432
    assert api.update_layout(rid, sid, "other", "100", {}).json()["code"] == 432
    assert api.query(rid, sid).json()["serverResponse"]["status"] in range(6)


def test_resource_expired_hour_then_404(make_emulator: EmulatorFactory) -> None:
    api = make_emulator(hour_seconds=0.5)
    rid = api.acquire("room", "100", {"resourceExpiredHour": 1})
    sid = api.start_raw(rid, "room", "100", start_request()).json()["sid"]
    assert api.query(rid, sid).status_code == 200
    wait_for(lambda: api.query(rid, sid).status_code == 404, 3, what="resourceExpiredHour")
    assert api.stop(rid, sid, "room", "100").status_code == 404

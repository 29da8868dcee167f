"""The dev API: simulated users, recordings list, fault injection."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from tests.support.emulator import Api, EmulatorFactory, start_request
from tests.support.waiting import wait_for

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_join_show_patch_leave(api: Api) -> None:
    r = api.join("class42", "1", role="host", video={"color": "#00FF00"}, audio={"tone": 440})
    assert r.status_code == 201, r.text
    assert api.join("class42", "2", role="audience").status_code == 201
    assert api.join("class42", 3, video=None).status_code == 201  # uid as a number is fine

    shown = api.channel("class42")
    assert [u["uid"] for u in shown["users"]] == ["1", "2", "3"]
    assert [u["joinOrder"] for u in shown["users"]] == [0, 1, 2]
    first, audience, third = shown["users"]
    assert (first["role"], first["video"], first["audio"]) == (
        "host",
        {"color": "#00FF00"},
        {"tone": 440.0},
    )
    assert (first["videoPublished"], first["audioPublished"]) == (True, True)
    assert ISO.fullmatch(first["joinedAt"])
    assert (audience["role"], audience["videoPublished"], audience["audioPublished"]) == (
        "audience",
        False,
        False,
    )
    assert (third["video"], third["videoPublished"], third["audioPublished"]) == (None, False, True)
    assert shown["hosts"] == 2

    r = api.patch("class42", "1", video=False)
    assert r.status_code == 200, r.text
    assert (r.json()["videoPublished"], r.json()["audioPublished"]) == (False, True)
    assert r.json()["video"] == {"color": "#00FF00"}  # muted, source kept
    r = api.patch("class42", "1", video=True, audio=False)
    assert (r.json()["videoPublished"], r.json()["audioPublished"]) == (True, False)
    r = api.patch("class42", "3", video={"color": "#0000FF"})
    assert (r.json()["video"], r.json()["videoPublished"]) == ({"color": "#0000FF"}, True)

    assert api.leave("class42", "1").status_code == 200
    assert [u["uid"] for u in api.channel("class42")["users"]] == ["2", "3"]
    # rejoining puts the user last in join order
    assert api.join("class42", "1").status_code == 201
    assert [u["uid"] for u in api.channel("class42")["users"]] == ["2", "3", "1"]


def test_default_sources_for_hosts(api: Api) -> None:
    body = api.join("room", "1").json()
    assert body["video"]["color"].startswith("#") and body["audio"] == {"tone": 440.0}


def test_file_sources(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    api = make_emulator(media_dirs=(tmp_path,))  # files are read only under --media-dir
    media = tmp_path / "clip.mp4"
    media.write_bytes(b"not really a video, only existence is checked here")
    r = api.join("room", "1", video={"file": str(media)}, audio={"file": str(media)})
    assert r.status_code == 201, r.text
    assert r.json()["video"] == {"file": str(media)}


def test_empty_channel(api: Api) -> None:
    assert api.channel("nobody-here") == {"cname": "nobody-here", "users": [], "hosts": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"uid": "0"}, "uid"),
        ({"uid": "abc"}, "uid"),
        ({}, "uid"),
        ({"uid": "1", "role": "guest"}, "role"),
        ({"uid": "1", "video": {"color": "green"}}, "video.color"),
        ({"uid": "1", "video": {"color": "#00FF00", "file": "/x"}}, "video"),
        ({"uid": "1", "video": {"file": "/definitely/not/here.mp4"}}, "video"),
        ({"uid": "1", "audio": {"tone": 5}}, "audio.tone"),
        ({"uid": "1", "audio": {}}, "audio"),
        ({"uid": "1", "role": "audience", "video": {"color": "#00FF00"}}, "body"),
        ({"uid": "1", "colour": "#00FF00"}, "colour"),
    ],
)
def test_join_validation_names_the_field(api: Api, body: dict[str, object], field: str) -> None:
    r = requests.post(f"{api.base}/dev/channels/room/users", json=body, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["reason"].startswith(f"{field}:"), r.json()


def test_join_errors(api: Api) -> None:
    assert api.join("room", "1").status_code == 201
    r = api.join("room", "1")
    assert r.status_code == 409 and "already" in r.json()["message"]
    assert api.leave("room", "2").status_code == 404
    assert api.patch("room", "2", video=False).status_code == 404
    assert api.patch("room", "1", video="maybe").status_code == 400
    assert api.join("bad/name", "1").status_code in (400, 404)
    r = requests.post(f"{api.base}/dev/channels/room/users", data=b"{", timeout=10)
    assert r.status_code == 400


def test_audience_cannot_publish(api: Api) -> None:
    assert api.join("room", "1", role="audience").status_code == 201
    assert api.patch("room", "1", video=True).status_code == 400
    # a host who becomes audience stops publishing
    assert api.join("room", "2").status_code == 201
    r = api.patch("room", "2", role="audience")
    assert (r.json()["videoPublished"], r.json()["audioPublished"]) == (False, False)


def test_dev_endpoints_need_no_auth(api: Api) -> None:
    for path in ("/dev/channels/room", "/dev/recordings", "/dev/faults"):
        assert requests.get(api.base + path, timeout=10).status_code == 200


def test_recordings_list(api: Api) -> None:
    assert requests.get(f"{api.base}/dev/recordings", timeout=10).json() == []
    rid, sid = api.start("room", "100")
    row = api.recording(sid)
    assert {
        "sid",
        "resourceId",
        "cname",
        "uid",
        "mode",
        "status",
        "live",
        "startedAt",
        "stoppedAt",
        "files",
        "exitReason",
    } <= set(row)
    assert (row["resourceId"], row["cname"], row["uid"], row["mode"]) == (rid, "room", "100", "mix")
    assert (row["live"], row["stoppedAt"], row["exitReason"], row["files"]) == (
        True,
        None,
        None,
        [],
    )
    assert ISO.fullmatch(row["startedAt"])
    r = requests.get(f"{api.base}/dev/recordings/{sid}", timeout=10)
    assert r.json()["sid"] == sid
    assert requests.get(f"{api.base}/dev/recordings/nope", timeout=10).status_code == 404


def test_recordings_filtered_by_liveness_and_resource(api: Api) -> None:
    """The worker's reconciler asks for ?live=true: its answer is bounded by what runs."""
    rid_ended, sid_ended = api.start("filtered", "101")
    rid_live, sid_live = api.start("filtered", "102")
    api.stop(rid_ended, sid_ended, "filtered", "101")

    def sids(query: str) -> set[str]:
        rows = requests.get(f"{api.base}/dev/recordings?{query}", timeout=10).json()
        return {r["sid"] for r in rows if r["cname"] == "filtered"}

    assert sids("live=true") == {sid_live}
    assert sids("live=false") == {sid_ended}
    assert sids(f"resourceId={rid_ended}") == {sid_ended}
    assert sids(f"resourceId={rid_live}&live=false") == set()
    assert sids("") == {sid_live, sid_ended}
    bad = requests.get(f"{api.base}/dev/recordings?live=perhaps", timeout=10)
    assert bad.status_code == 400 and "live" in bad.text


# --- faults -------------------------------------------------------------------------------


def test_error_fault_for_the_next_n_calls(api: Api) -> None:
    rid, sid = api.start("room", "100")
    r = api.put_faults(
        {
            "errors": [
                {
                    "operations": ["query"],
                    "status": 504,
                    "code": 62,
                    "reason": "request timeout",
                    "count": 2,
                }
            ]
        }
    )
    assert r.status_code == 200, r.text
    for _ in range(2):
        q = api.query(rid, sid)
        assert (q.status_code, q.json()) == (504, {"code": 62, "reason": "request timeout"})
    assert api.query(rid, sid).status_code == 200
    assert api.post("/acquire", {"cname": "c", "uid": "1", "clientRequest": {}}).status_code == 200
    got = requests.get(f"{api.base}/dev/faults", timeout=10).json()
    assert got["errors"][0]["count"] == 0


def test_gateway_style_fault_and_rate(api: Api) -> None:
    api.put_faults({"errors": [{"status": 429, "message": "API rate limit exceeded", "rate": 1.0}]})
    r = api.post("/acquire", {"cname": "c", "uid": "1", "clientRequest": {}})
    assert (r.status_code, r.json()) == (429, {"message": "API rate limit exceeded"})
    api.put_faults({})
    assert api.post("/acquire", {"cname": "c", "uid": "1", "clientRequest": {}}).status_code == 200


def test_206_65_fault_on_start(api: Api) -> None:
    rid = api.acquire("room", "100")
    api.put_faults(
        {
            "errors": [
                {
                    "operations": ["start"],
                    "status": 206,
                    "code": 65,
                    "reason": "request not completed",
                    "count": 1,
                }
            ]
        }
    )
    r = api.start_raw(rid, "room", "100", start_request())
    assert (r.status_code, r.json()["code"]) == (206, 65)
    assert api.start_raw(rid, "room", "100", start_request()).status_code == 200


def test_latency_fault(api: Api) -> None:
    api.put_faults({"latency": [{"operations": ["acquire"], "seconds": 0.4}]})
    began = time.monotonic()
    api.acquire("room", "100")
    assert time.monotonic() - began >= 0.4


def test_not_found_window(api: Api) -> None:
    rid, sid = api.start("room", "100")
    api.put_faults({"notFoundSeconds": 0.5})
    assert api.query(rid, sid).json() == {"code": 404, "reason": "failed to find worker"}
    wait_for(lambda: api.query(rid, sid).status_code == 200, 3, what="the 404 window to close")


def test_fault_validation(api: Api) -> None:
    r = api.put_faults({"errors": [{"status": 700, "code": 1}]})
    assert r.status_code == 400 and "errors[0].status" in r.json()["reason"]
    r = api.put_faults({"errors": [{"status": 500}]})
    assert r.status_code == 400
    r = api.put_faults({"errors": [{"status": 500, "code": 62, "operations": ["nope"]}]})
    assert r.status_code == 400 and "operations[0]" in r.json()["reason"]
    assert api.put_faults({"bogus": 1}).status_code == 400


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"video": "maybe"}, 'video: must be a boolean (got "maybe")'),
        (
            {"video": {"color": "green"}},
            "video.color: must be '#' followed by 6 hex digits, e.g. '#FF0000' (got \"green\")",
        ),
        ({"audio": {"tone": 5}}, "audio.tone: must be greater than or equal to 20"),
        ({"audio": {"tone": 440, "file": "/x"}}, 'audio: give exactly one of "tone" or "file"'),
    ],
)
def test_patch_errors_name_one_rule_without_union_tags(
    api: Api, body: dict[str, object], reason: str
) -> None:
    """A bool-or-object field reports the rule of the member the JSON type picks, by its JSON
    path, never pydantic's internal tags or both members' complaints."""
    assert api.join("room", "1").status_code == 201
    r = api.patch("room", "1", **body)
    assert (r.status_code, r.json()) == (400, {"code": 2, "reason": reason})


def test_reset_forgets_everything(api: Api) -> None:
    api.join("room", "1")
    rid, sid = api.start("room", "100")
    api.put_faults({"uploadFailures": 3})
    assert requests.post(f"{api.base}/dev/reset", timeout=30).json() == {"reset": True}
    assert api.channel("room")["users"] == []
    assert requests.get(f"{api.base}/dev/recordings", timeout=10).json() == []
    assert api.events() == []
    assert api.http.get(f"{api.base}/dev/faults", timeout=10).json()["uploadFailures"] == 0
    assert api.query(rid, sid).status_code == 404
    assert api.start_raw(rid, "room", "100", start_request()).json()["code"] == 1001


def test_ncs_ip(api: Api) -> None:
    r = api.http.get(f"{api.base}/v1/ncs/ip", auth=("demo", "demo-secret"), timeout=10)
    assert r.json() == {"data": {"service": {"hosts": [{"primaryIP": "127.0.0.1"}]}}}
    assert api.http.get(f"{api.base}/v1/ncs/ip", timeout=10).status_code == 401


def test_the_dev_api_log_names_every_caller_and_nothing_else(api: Api) -> None:
    """GET /dev/requests: who called the dev API (a test tells the worker apart by it)."""
    before = len(requests.get(f"{api.base}/dev/requests", timeout=5).json()["requests"])
    requests.get(f"{api.base}/dev/faults", headers={"User-Agent": "someone"}, timeout=5)
    api.acquire("devlog", "7")  # a REST call: not the dev API, not logged
    logged = requests.get(f"{api.base}/dev/requests", timeout=5).json()["requests"][before:]
    assert logged == [{"method": "GET", "path": "/dev/faults", "userAgent": "someone"}]

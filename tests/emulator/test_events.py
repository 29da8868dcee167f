"""Notification events (docs/service/ncs.md): the envelopes, their order in GET /dev/events, and
delivery to an NCS URL with the real signature headers and resends."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from contract.ncs import EVENTS
from tests.support.emulator import Api, EmulatorFactory, start_request
from tests.support.waiting import wait_for

SECRET = "ncs-test-secret"


def types(events: list[dict[str, Any]]) -> list[int]:
    return [e["eventType"] for e in events]


def details(events: list[dict[str, Any]], event_type: int) -> list[dict[str, Any]]:
    return [e["payload"]["details"] for e in events if e["eventType"] == event_type]


def first_slice(api: Api, rid: str, sid: str) -> None:
    wait_for(lambda: api.query(rid, sid).json()["serverResponse"]["fileList"], 10, what="a slice")


def test_lifecycle_events_in_order(api: Api) -> None:
    api.join("room", "1", video={"color": "#00FF00"}, audio={"tone": 440})
    rid, sid = api.start("room", "100", start_request(files=["hls", "mp4"]))
    first_slice(api, rid, sid)
    stop = api.stop(rid, sid, "room", "100").json()
    events = api.events(sid)
    assert types(events) == [30, 40, 42, 43, 44, 4, 41, 33, 31, 11]
    notice_ids = set()
    for sequence, event in enumerate(events):
        service_type, name = EVENTS[event["eventType"]]
        assert set(event) == {"noticeId", "productId", "eventType", "notifyMs", "sid", "payload"}
        assert (event["productId"], event["sid"]) == (3, sid)
        assert re.fullmatch(r"[0-9a-f]{32}", event["noticeId"])
        notice_ids.add(event["noticeId"])
        payload = event["payload"]
        assert set(payload) == {
            "cname",
            "uid",
            "sid",
            "sequence",
            "sendts",
            "serviceType",
            "details",
        }
        assert (payload["cname"], payload["uid"], payload["sid"]) == ("room", "100", sid)
        assert (payload["sequence"], payload["serviceType"]) == (sequence, service_type)
        assert payload["details"]["msgName"] == name
        assert payload["sendts"] == event["notifyMs"] > 10**12
    assert len(notice_ids) == len(events)
    assert [e["notifyMs"] for e in events] == sorted(e["notifyMs"] for e in events)
    (slice_start,) = details(events, 42)
    start_ms = api.recording(sid)["recorderStartedAt"]
    assert start_ms and slice_start["startUtcMs"] == slice_start["discontinueUtcMs"]
    assert (slice_start["streamUid"], slice_start["mixedAllUser"]) == ("0", True)
    assert slice_start["trackType"] == "audio_and_video"
    assert [d["state"] for d in details(events, 43) + details(events, 44)] == [0, 0]
    assert details(events, 4) == [{"msgName": "cloud_recording_file_infos",
                                   "fileList": f"{sid}_room.m3u8"}]  # fmt: skip
    assert details(events, 41) == [{"msgName": "recorder_leave", "leaveCode": 16}]
    assert details(events, 33) == [{"msgName": "uploading_progress", "progress": 10000}]
    (uploaded,) = details(events, 31)
    assert (uploaded["status"], uploaded["fileList"]) == (0, stop["serverResponse"]["fileList"])
    assert details(events, 11) == [{"msgName": "session_exit", "exitStatus": 0}]


def test_stream_state_events_follow_publishing(api: Api) -> None:
    api.join("room", "1", video={"color": "#00FF00"}, audio={"tone": 440})
    _, sid = api.start("room", "100")

    def video_states() -> list[int]:
        return [d["state"] for d in details(api.events(sid), 44)]

    wait_for(lambda: video_states() == [0], 5, what="video receiving")
    api.patch("room", "1", video=False)
    wait_for(lambda: video_states() == [0, 1], 5, what="video not receiving")
    api.patch("room", "1", video=True)
    wait_for(lambda: video_states() == [0, 1, 0], 5, what="video receiving again")
    assert [d["state"] for d in details(api.events(sid), 43)] == [0]  # audio never stopped


def test_empty_recording_and_wrong_state_calls(api: Api) -> None:
    rid = api.acquire("room", "100")
    r = api.start_raw(rid, "room", "100", start_request())
    sid = r.json()["sid"]
    assert api.start_raw(rid, "room", "100", start_request()).status_code == 201
    assert api.stop(rid, sid, "room", "100").status_code == 206  # nobody published: 435
    assert api.stop(rid, sid, "room", "100").json()["code"] == 49
    events = api.events(sid)
    assert types(events) == [30, 40, 3, 41, 11, 3]
    status_updates = details(events, 3)
    assert [d["status"] for d in status_updates] == [status_updates[0]["status"], 8]
    assert all(d["recordingMode"] == 1 and d["fileList"] == "" for d in status_updates)
    assert details(events, 41) == [{"msgName": "recorder_leave", "leaveCode": 16}]


def test_backuped_upload_events(api: Api) -> None:
    api.put_faults({"uploadFailures": 1})
    api.join("room", "1")
    rid, sid = api.start("room", "100")
    first_slice(api, rid, sid)
    api.stop(rid, sid, "room", "100")
    events = api.events(sid)
    assert 31 not in types(events) and types(events)[-2:] == [32, 11]
    (error,) = details(events, 1)
    assert (error["module"], error["errorCode"], error["errorLevel"]) == (1, 47, 3)
    assert "injected upload failure" in error["errorMsg"]
    assert details(events, 2) == [{"msgName": "cloud_recording_warning", "module": 1,
                                   "warnCode": 32}]  # fmt: skip
    assert types(events).index(1) < types(events).index(41)


def test_events_filter_by_sid_and_keep_global_order(api: Api) -> None:
    _, first = api.start("room", "100")
    _, second = api.start("room", "200")
    everything = api.events()
    assert [e["sid"] for e in everything] == [first, first, second, second]
    assert api.events(first) == everything[:2]
    assert api.events("0" * 32) == []


# --- delivery to an NCS URL ---------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook endpoint on loopback that records every POST and answers per ``answer``."""

    answer: Callable[[dict[str, Any]], tuple[int, bytes]]
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in list(self.posts)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(answer=lambda _body: (200, b'{"ok": true}'))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            state.posts.append((dict(self.headers), raw))
            status, body = state.answer(json.loads(raw))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/ncs"
    yield state
    server.shutdown()
    server.server_close()


def delivery(api: Api) -> dict[str, Any]:
    return dict(api.http.get(f"{api.base}/dev/ncs", timeout=10).json())


def test_events_are_posted_signed(make_emulator: EmulatorFactory, receiver: Receiver) -> None:
    api = make_emulator(ncs_url=receiver.url, ncs_secret=SECRET)
    api.join("room", "1")
    rid, sid = api.start("room", "100")
    first_slice(api, rid, sid)
    api.stop(rid, sid, "room", "100")
    logged = api.events(sid)
    wait_for(lambda: delivery(api)["pending"] == 0 and len(receiver.posts) >= len(logged), 5,
             what="delivery")  # fmt: skip
    assert delivery(api) | {"url": None} == {
        "url": None,
        "attempts": len(logged),
        "delivered": len(logged),
        "failed": 0,
        "duplicates": 0,
        "dropped": 0,
        "delayed": 0,
        "pending": 0,
    }
    assert sorted(receiver.bodies(), key=lambda e: e["payload"]["sequence"]) == logged
    for headers, raw in receiver.posts:
        assert headers["Content-Type"] == "application/json"
        key = SECRET.encode()
        assert headers["Agora-Signature"] == hmac.new(key, raw, hashlib.sha1).hexdigest()
        assert headers["Agora-Signature-V2"] == hmac.new(key, raw, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "bad_answer", [(500, b'{"error": 1}'), (200, b"OK, not JSON")], ids=["500", "not-json"]
)
def test_failed_delivery_is_resent_three_times(
    make_emulator: EmulatorFactory, receiver: Receiver, bad_answer: tuple[int, bytes]
) -> None:
    """The receiver refuses every uploader_started (30): NCS resends it 3 times with a fresh
    notifyMs, then gives up; the other events go through once each."""
    receiver.answer = lambda body: bad_answer if body["eventType"] == 30 else (200, b"{}")
    api = make_emulator(
        ncs_url=receiver.url, ncs_secret=SECRET, ncs_retry_seconds=(0.02, 0.05, 0.1)
    )
    _, sid = api.start("room", "100")
    wait_for(lambda: delivery(api)["pending"] == 0 and delivery(api)["failed"] == 1, 5,
             what="the resends to end")  # fmt: skip
    sent = [b for b in receiver.bodies() if b["eventType"] == 30]
    assert len(sent) == 4  # 1 + 3 resends
    assert len({b["noticeId"] for b in sent}) == 1
    stamps = [b["notifyMs"] for b in sent]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]
    (logged,) = [e for e in api.events(sid) if e["eventType"] == 30]
    assert sent[0] == logged and {**sent[3], "notifyMs": logged["notifyMs"]} == logged
    assert [b["eventType"] for b in receiver.bodies()].count(40) == 1
    assert delivery(api)["delivered"] == 1  # event 40


def test_duplicate_deliveries_on_demand(make_emulator: EmulatorFactory, receiver: Receiver) -> None:
    """ncsDuplicateRate 1: every event arrives twice, the copy later (after the next events)
    with the same noticeId and a fresh notifyMs; the log has each once."""
    api = make_emulator(ncs_url=receiver.url, ncs_secret=SECRET)
    api.put_faults({"ncsDuplicateRate": 1})
    _, sid = api.start("room", "100")
    logged = api.events(sid)
    assert types(logged) == [30, 40]
    wait_for(lambda: delivery(api)["pending"] == 0 and delivery(api)["duplicates"] == 2, 5,
             what="the duplicates")  # fmt: skip
    received = receiver.bodies()
    assert [b["eventType"] for b in received] == [30, 40, 30, 40]  # out of order
    for copy, original in zip(received[2:], received[:2], strict=True):
        assert copy["noticeId"] == original["noticeId"]
        assert copy["notifyMs"] >= original["notifyMs"]
        assert {**copy, "notifyMs": 0} == {**original, "notifyMs": 0}


def test_uploading_progress_while_recording(make_emulator: EmulatorFactory) -> None:
    """Event 33 comes every progress period (a minute for real; 0.2 s here) while recording,
    with progress in 0..10000, and 10000 at the end once everything is uploaded."""
    api = make_emulator(progress_seconds=0.2)
    api.join("room", "1")
    rid, sid = api.start("room", "100")
    wait_for(lambda: len(details(api.events(sid), 33)) >= 3, 5, what="three progress events")
    api.stop(rid, sid, "room", "100")
    progress = [d["progress"] for d in details(api.events(sid), 33)]
    assert all(0 <= p <= 10000 for p in progress) and progress[-1] == 10000
    assert types(api.events(sid))[-4:] == [41, 33, 31, 11]

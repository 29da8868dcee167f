"""HA failover (docs/service/files.md#failover, docs/service/behaviour.md#identity,
docs/service/ncs.md#event-types): POST /dev/recordings/{sid}/failover, and the faults' 404 window
with ``failover``. During the migration the task answers 404 and records nothing; then the recorder
rejoins with a new uid (event 12) and writes bak<n>_ files. Checked on the real files: playlists,
slices and MP4s in storage, decoded with PyAV."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from tests.support.emulator import Api, start_request
from tests.support.emulator_media import tone_levels_between
from tests.support.mediacheck import close_to, color_at, frame_at
from tests.support.waiting import wait_for

NOT_FOUND = {"code": 404, "reason": "failed to find worker"}
GREEN, TONE, OTHER_TONE = "#00FF00", 440.0, 880.0


def failover(api: Api, sid: str, body: dict[str, Any] | None = None) -> requests.Response:
    url = f"{api.base}/dev/recordings/{sid}/failover"
    return api.http.post(url, json=body, timeout=10)


def bucket_dir(api: Api) -> Path:
    return api.server.config.storage_dir / "bucket" / "dir1" / "dir2"


def file_list(api: Api, rid: str, sid: str) -> list[str]:
    r = api.query(rid, sid)
    assert r.status_code == 200, r.text
    return [entry["fileName"] for entry in r.json()["serverResponse"]["fileList"]]


def wait_for_file(api: Api, rid: str, sid: str, name: str) -> None:
    wait_for(lambda: name in file_list(api, rid, sid), 10, what=f"{name} in query's fileList")


def migrate(api: Api, rid: str, sid: str, seconds: float) -> dict[str, Any]:
    """Fail the recording over; check the 404s during the migration and that it ends no
    sooner than ``seconds``. Returns the dev view the endpoint answered."""
    began = time.monotonic()
    r = failover(api, sid, {"seconds": seconds})
    assert r.status_code == 200, r.text
    view = dict(r.json())
    assert (view["sid"], view["live"], view["migrating"]) == (sid, True, True)
    for answer in (api.query(rid, sid), api.update_layout(rid, sid, "room", "100", {})):
        assert (answer.status_code, answer.json()) == (404, NOT_FOUND)
    wait_for(
        lambda: api.query(rid, sid).status_code == 200, seconds + 5, what="the migration's end"
    )
    assert time.monotonic() - began >= seconds
    return view


def segment_files(api: Api, prefix: str, sid: str) -> tuple[list[str], list[str]]:
    """(the TS slices the playlist lists, the TS slices in storage) of one segment."""
    playlist = bucket_dir(api) / f"{prefix}{sid}_room.m3u8"
    text = playlist.read_text()
    assert text.rstrip().endswith("#EXT-X-ENDLIST"), text
    listed = [line for line in text.splitlines() if line.endswith(".ts")]
    stored = sorted(p.name for p in bucket_dir(api).glob(f"{prefix}{sid}_room_*.ts"))
    return listed, stored


def test_failover_continues_in_bak_files_with_a_new_uid(api: Api) -> None:
    api.join("room", "1", video={"color": GREEN}, audio={"tone": TONE})
    rid, sid = api.start("room", "100", start_request(files=["hls", "mp4"]))
    original = f"{sid}_room"
    wait_for_file(api, rid, sid, f"{original}.m3u8")
    time.sleep(1.0)

    failed_at_ms = time.time() * 1000
    view = migrate(api, rid, sid, 2.0)
    assert [f["prefix"] for f in view["failovers"]] == ["bak0_"]
    wait_for_file(api, rid, sid, f"bak0_{original}.m3u8")
    time.sleep(1.5)
    migrate(api, rid, sid, 0.5)  # a second failover: bak1_
    wait_for_file(api, rid, sid, f"bak1_{original}.m3u8")
    time.sleep(0.5)

    r = api.stop(rid, sid, "room", "100")
    assert r.status_code == 200, r.text
    server = r.json()["serverResponse"]
    assert server["uploadingStatus"] == "uploaded"
    entries = server["fileList"]
    assert [e["fileName"] for e in entries] == [
        f"{prefix}{original}{suffix}"
        for prefix in ("", "bak0_", "bak1_")
        for suffix in (".m3u8", "_0.mp4")
    ]
    # Nothing was recorded while migrating: bak0_ starts after the 2 s gap.
    assert entries[2]["sliceStartTime"] >= failed_at_ms + 2000 - 50

    # Each playlist is ended and lists exactly its own slices, all in storage.
    for prefix in ("", "bak0_", "bak1_"):
        listed, stored = segment_files(api, prefix, sid)
        assert listed and listed == stored, (prefix, listed, stored)
        assert (bucket_dir(api) / f"{prefix}{original}_0.mp4").is_file()
    assert not list(bucket_dir(api).glob(f"bak2_{original}*"))

    # The recorder on the new server records the same channel: green and 440 Hz.
    mp4 = bucket_dir(api) / f"bak0_{original}_0.mp4"
    assert close_to(color_at(frame_at(mp4, 0.5), 0.5, 0.5), GREEN)
    levels = tone_levels_between(mp4, 0.2, 1.2, [TONE, OTHER_TONE])
    assert levels[TONE] > 0.9 and levels[OTHER_TONE] < 0.1, levels

    events = api.events(sid)
    types = [e["eventType"] for e in events]
    firsts = [i for i, t in enumerate(types) if t == 12]
    assert len(firsts) == 2, types
    assert max(types.index(30), types.index(40), types.index(42)) < firsts[0]
    assert firsts[1] < types.index(41) < types.index(31) < types.index(11)
    new_uids = [events[i]["payload"]["details"]["newUid"] for i in firsts]
    assert all(isinstance(uid, int) and 0 < uid < 2**32 for uid in new_uids)
    assert len({100, *new_uids}) == 3  # new each time, never the start's uid
    # Each rejoin is followed by the new recorder's slice start (resumed after a loss), and
    # the later events carry the new uid.
    for at, uid in zip(firsts, new_uids, strict=True):
        resumed = events[at + 1]
        assert resumed["eventType"] == 42, types
        details = resumed["payload"]["details"]
        assert details["discontinueUtcMs"] > details["startUtcMs"]
        assert resumed["payload"]["uid"] == str(uid)
    assert events[-1]["payload"]["uid"] == str(new_uids[1])
    announced = [e["payload"]["details"]["fileList"] for e in events if e["eventType"] == 4]
    assert announced == [f"{prefix}{original}.m3u8" for prefix in ("", "bak0_", "bak1_")]

    row = api.recording(sid)
    assert row["uid"] == "100"  # the REST identity stays the start's
    assert row["recorderUid"] == str(new_uids[1])
    assert [(f["index"], f["newUid"]) for f in row["failovers"]] == [
        (0, str(new_uids[0])),
        (1, str(new_uids[1])),
    ]


def test_failover_before_anyone_published_records_only_bak0(api: Api) -> None:
    rid, sid = api.start("room", "100", start_request(files=["hls", "mp4"]))
    r = failover(api, sid)  # no body: the default migration
    assert r.status_code == 200, r.text
    assert r.json()["failovers"][0]["seconds"] == 3.0
    assert api.stop(rid, sid, "room", "100").json() == NOT_FOUND
    wait_for(lambda: api.query(rid, sid).status_code == 200, 8, what="the migration's end")
    api.join("room", "1", video={"color": GREEN}, audio={"tone": TONE})
    wait_for_file(api, rid, sid, f"bak0_{sid}_room.m3u8")

    r = api.stop(rid, sid, "room", "100")
    assert r.status_code == 200, r.text
    names = [e["fileName"] for e in r.json()["serverResponse"]["fileList"]]
    assert names == [f"bak0_{sid}_room.m3u8", f"bak0_{sid}_room_0.mp4"]
    listed, stored = segment_files(api, "bak0_", sid)
    assert listed and listed == stored
    assert not list(bucket_dir(api).glob(f"{sid}_*"))  # no original files
    types = [e["eventType"] for e in api.events(sid)]
    assert types.index(12) < types.index(42)


def test_failover_endpoint_refusals(api: Api) -> None:
    r = failover(api, "0" * 32)
    assert r.status_code == 404 and "message" in r.json()
    rid, sid = api.start("room", "100")
    for body in ({"seconds": 0}, {"seconds": "long"}, {"bogus": 1}):
        r = failover(api, sid, body)
        assert r.status_code == 400 and r.json()["code"] == 2, r.text
    assert failover(api, sid, {"seconds": 0.5}).status_code == 200
    r = failover(api, sid, {"seconds": 0.5})
    assert r.status_code == 409 and "already" in r.json()["message"]
    wait_for(lambda: api.query(rid, sid).status_code == 200, 5, what="the migration's end")
    assert api.stop(rid, sid, "room", "100").json()["code"] == 435  # nobody published
    r = failover(api, sid)
    assert r.status_code == 409 and "not live" in r.json()["message"]


def test_fault_window_with_failover_fails_live_tasks_over_once(api: Api) -> None:
    api.join("room", "1", video={"color": GREEN}, audio={"tone": TONE})
    rid, sid = api.start("room", "100", start_request(files=["hls", "mp4"]))
    wait_for_file(api, rid, sid, f"{sid}_room.m3u8")
    r = api.put_faults({"notFoundSeconds": 1.0, "failover": True})
    assert r.status_code == 200 and r.json()["failover"] is True
    wait_for(lambda: api.query(rid, sid).status_code == 404, 3, what="the window")
    wait_for(lambda: api.query(rid, sid).status_code == 200, 5, what="the window to close")
    wait_for_file(api, rid, sid, f"bak0_{sid}_room.m3u8")
    time.sleep(0.3)

    r = api.stop(rid, sid, "room", "100")
    assert r.status_code == 200, r.text
    names = [e["fileName"] for e in r.json()["serverResponse"]["fileList"]]
    assert names == [f"{p}{sid}_room{s}" for p in ("", "bak0_") for s in (".m3u8", "_0.mp4")]
    assert [e["eventType"] for e in api.events(sid)].count(12) == 1  # once per window

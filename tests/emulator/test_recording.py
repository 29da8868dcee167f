"""Recording lifecycle against the real compositor: status, fileList forms, stop, idle exit."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import av
import pytest

from contract.models import QueryResponse, StopResponse, file_names
from tests.support.emulator import Api, EmulatorFactory, start_request
from tests.support.waiting import wait_for

NOT_FOUND = {"code": 404, "reason": "failed to find worker"}


def server_response(api: Api, rid: str, sid: str) -> dict[str, Any]:
    r = api.query(rid, sid)
    assert r.status_code == 200, r.text
    QueryResponse.model_validate(r.json())  # the worker's model parses what we send
    return dict(r.json()["serverResponse"])


def bucket_dir(api: Api) -> Path:
    return api.server.config.storage_dir / "bucket" / "dir1" / "dir2"


def test_status_climbs_to_5(api: Api) -> None:
    api.join("room", "1")
    rid, sid = api.start("room", "100")
    started = time.monotonic()
    statuses = [server_response(api, rid, sid)["status"]]
    while statuses[-1] != 5:
        assert time.monotonic() - started < 5, statuses
        time.sleep(0.05)
        statuses.append(server_response(api, rid, sid)["status"])
    assert statuses[0] < 5
    assert statuses == sorted(statuses)
    assert set(statuses) <= {0, 1, 2, 3, 4, 5}
    assert len(set(statuses)) >= 3  # it climbs, it does not jump straight to 5


def test_hls_only_file_list_is_a_string(api: Api) -> None:
    api.join("room", "1")
    rid, sid = api.start("room", "100", start_request(files=["hls"]))
    first = server_response(api, rid, sid)
    # the M3U8 name appears only after the first slice (1 s here)
    assert (first["fileListMode"], first["fileList"]) == ("string", "")
    playlist = f"{sid}_room.m3u8"
    wait_for(
        lambda: server_response(api, rid, sid)["fileList"] == playlist, 10, what="m3u8 in query"
    )
    assert server_response(api, rid, sid)["status"] == 5
    assert isinstance(server_response(api, rid, sid)["sliceStartTime"], int)

    r = api.stop(rid, sid, "room", "100")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["cname"], body["uid"], body["resourceId"], body["sid"]) == (
        "room",
        "100",
        rid,
        sid,
    )
    assert body["serverResponse"] == {
        "fileListMode": "string",
        "fileList": playlist,
        "uploadingStatus": "uploaded",
    }
    stored = bucket_dir(api) / playlist
    text = stored.read_text()
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    slices = [line for line in text.splitlines() if line.endswith(".ts")]
    assert slices and all((bucket_dir(api) / name).is_file() for name in slices)
    assert not list(bucket_dir(api).glob("*.mp4"))


def test_hls_and_mp4_file_list_is_json(api: Api) -> None:
    api.join("room", "1", video={"color": "#00FF00"}, audio={"tone": 440})
    rid, sid = api.start("room", "100", start_request(files=["hls", "mp4"]))
    assert server_response(api, rid, sid)["fileList"] == []
    entries = wait_for(lambda: server_response(api, rid, sid)["fileList"], 10, what="fileList")
    assert entries[0]["fileName"] == f"{sid}_room.m3u8"
    time.sleep(0.5)

    r = api.stop(rid, sid, "room", "100")
    assert r.status_code == 200, r.text
    server = r.json()["serverResponse"]
    assert (server["fileListMode"], server["uploadingStatus"]) == ("json", "uploaded")
    names = [e["fileName"] for e in server["fileList"]]
    assert names == [f"{sid}_room.m3u8", f"{sid}_room_0.mp4"]
    for entry in server["fileList"]:
        assert entry["trackType"] == "audio_and_video"
        assert (entry["uid"], entry["mixedAllUser"], entry["isPlayable"]) == ("0", True, True)
        assert isinstance(entry["sliceStartTime"], int) and entry["sliceStartTime"] > 10**12
    parsed = StopResponse.model_validate(r.json())
    assert parsed.serverResponse is not None
    assert file_names(parsed.serverResponse.fileList) == names
    mp4 = bucket_dir(api) / names[1]
    with av.open(str(mp4)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (160, 120)
        assert container.streams.audio


def test_stop_then_49_then_404(make_emulator: EmulatorFactory) -> None:
    api = make_emulator(exit_linger_seconds=1.0)
    api.join("room", "1")
    rid, sid = api.start("room", "100")
    assert api.stop(rid, sid, "room", "100").status_code == 200
    r = api.stop(rid, sid, "room", "100")
    assert (r.status_code, r.json()) == (400, {"code": 49, "reason": "invalid operation"})
    assert server_response(api, rid, sid)["status"] == 8
    wait_for(
        lambda: api.stop(rid, sid, "room", "100").status_code == 404, 3, what="404 after linger"
    )
    assert api.query(rid, sid).json() == NOT_FOUND
    row = api.recording(sid)
    assert (row["live"], row["exitReason"], row["status"]) == (False, "stop", 8)


@pytest.mark.parametrize(
    ("join", "recording"),
    [
        (None, {}),  # nobody in the channel
        ({"role": "audience"}, {}),  # present but not publishing
        ({"video": None, "audio": None}, {}),  # a host publishing nothing
        ({"audio": None}, {"streamTypes": 0}),  # publishes video; the recording wants audio
    ],
)
def test_nobody_published_stop_is_206_435(
    api: Api, join: dict[str, Any] | None, recording: dict[str, Any]
) -> None:
    if join is not None:
        api.join("room", "1", **join)
    rid, sid = api.start("room", "100", start_request(**recording))
    wait_for(lambda: server_response(api, rid, sid)["status"] == 5, 5, what="status 5")
    r = api.stop(rid, sid, "room", "100")
    assert (r.status_code, r.json()) == (206, {"code": 435, "reason": "no recorded data"})
    assert api.stop(rid, sid, "room", "100").json()["code"] == 49
    row = api.recording(sid)
    assert (row["live"], row["exitReason"], row["files"]) == (False, "empty", [])
    assert not (api.server.config.storage_dir / "bucket").exists()


def test_async_stop(api: Api) -> None:
    api.join("room", "1")
    rid, sid = api.start("room", "100", start_request(files=["hls", "mp4"]))
    wait_for(lambda: server_response(api, rid, sid)["fileList"], 10, what="first slice")
    r = api.stop(rid, sid, "room", "100", async_stop=True)
    assert r.status_code == 200, r.text
    assert r.json()["serverResponse"]["uploadingStatus"] == "unknown"
    assert api.stop(rid, sid, "room", "100").json()["code"] == 49
    row = wait_for(
        lambda: (lambda x: x if x["status"] == 8 else None)(api.recording(sid)),
        10,
        what="async stop to finish",
    )
    assert row["uploadingStatus"] == "uploaded"
    names = {f["fileName"] for f in row["files"]}
    assert {f"{sid}_room.m3u8", f"{sid}_room_0.mp4"} <= names
    assert all((bucket_dir(api) / name).is_file() for name in names)


def test_idle_exit_after_max_idle_time(make_emulator: EmulatorFactory) -> None:
    # One second of maxIdleTime lasts 0.2 s here: maxIdleTime 5 is 1 s.
    api = make_emulator(exit_linger_seconds=2.0, idle_second=0.2)
    api.join("room", "1")
    rid, sid = api.start("room", "100", start_request(max_idle=5))
    wait_for(lambda: server_response(api, rid, sid)["fileList"], 10, what="first slice")
    assert api.leave("room", "1").status_code == 200
    left = time.monotonic()
    # still live before maxIdleTime has passed
    time.sleep(0.6)
    assert server_response(api, rid, sid)["status"] == 5
    exiting = wait_for(
        lambda: (lambda s: s if s["status"] in (6, 7, 8) else None)(server_response(api, rid, sid)),
        6,
        what="idle exit",
    )
    assert time.monotonic() - left >= 1.0
    assert exiting["status"] in (6, 7, 8)
    r = api.update_layout(rid, sid, "room", "100", {"mixedVideoLayout": 1})
    assert (r.status_code, r.json()) == (404, NOT_FOUND)
    wait_for(lambda: server_response(api, rid, sid)["status"] == 8, 10, what="status 8")
    assert api.stop(rid, sid, "room", "100").json()["code"] == 49
    wait_for(lambda: api.query(rid, sid).status_code == 404, 5, what="404 after the exit")
    assert api.query(rid, sid).json() == NOT_FOUND
    row = api.recording(sid)
    assert (row["live"], row["exitReason"], row["uploadingStatus"]) == (False, "idle", "uploaded")
    assert row["stoppedAt"] and row["stoppedAt"].endswith("Z")
    assert any(f["fileName"] == f"{sid}_room.m3u8" for f in row["files"])
    assert (bucket_dir(api) / f"{sid}_room.m3u8").is_file()


def test_idle_rule_follows_channel_type(make_emulator: EmulatorFactory) -> None:
    """Only an audience member is present: a live-broadcast recording is idle (no host), a
    communication one is not (someone is there)."""
    api = make_emulator(idle_second=0.2)
    api.join("room", "1", role="audience")
    live_rid, live_sid = api.start("room", "100", start_request(max_idle=5, channelType=1))
    comm_rid, comm_sid = api.start("room", "200", start_request(max_idle=5, channelType=0))
    wait_for(lambda: api.query(live_rid, live_sid).status_code == 404, 10, what="live idle exit")
    assert server_response(api, comm_rid, comm_sid)["status"] == 5
    assert api.recording(live_sid)["exitReason"] == "idle"
    assert api.recording(live_sid)["files"] == []
    assert api.recording(comm_sid)["live"] is True


def test_live_channel_host_presence_resets_the_idle_clock(make_emulator: EmulatorFactory) -> None:
    """channelType 1: the host leaves (an audience member stays) and comes back within
    maxIdleTime: the recording goes on; when the host is away longer, it exits (leaveCode 4)."""
    api = make_emulator(idle_second=0.2)  # maxIdleTime 5 = 1 s
    api.join("room", "1", role="audience")
    api.join("room", "2")
    rid, sid = api.start("room", "100", start_request(max_idle=5, channelType=1))
    wait_for(lambda: server_response(api, rid, sid)["fileList"], 10, what="first slice")
    api.leave("room", "2")
    time.sleep(0.6)  # away 0.6 s: under the 1 s of maxIdleTime
    api.join("room", "2")
    time.sleep(0.6)  # the idle clock restarted: 1.2 s since the host first left
    assert server_response(api, rid, sid)["status"] == 5
    api.leave("room", "2")
    wait_for(lambda: server_response(api, rid, sid)["status"] in (6, 7, 8), 5, what="idle exit")
    wait_for(lambda: api.query(rid, sid).status_code == 404, 5, what="404 after the exit")
    leave = [e for e in api.events(sid) if e["eventType"] == 41]
    assert [e["payload"]["details"]["leaveCode"] for e in leave] == [4]
    assert api.recording(sid)["uploadingStatus"] == "uploaded"


def test_update_and_update_layout_while_live(api: Api) -> None:
    api.join("room", "1")
    rid, sid = api.start("room", "100", start_request(streamTypes=1))
    update = {
        "streamSubscribe": {"videoUidList": {"unsubscribeVideoUids": ["2"]}},
        "storageConfig": {**start_request()["storageConfig"], "bucket": "newbucket"},
    }
    r = api.update(rid, sid, "room", "100", update)
    assert (r.status_code, r.json()) == (
        200,
        {"cname": "room", "uid": "100", "resourceId": rid, "sid": sid},
    )
    r = api.update(
        rid,
        sid,
        "room",
        "100",
        {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["1"]}}},
    )
    # docs/service/api-contract.md#update: audio lists "only apply" with streamTypes 0 or 2:
    # accepted, no effect here
    assert r.status_code == 200, r.text
    layout = {
        "mixedVideoLayout": 3,
        "backgroundColor": "#FF0000",
        "layoutConfig": [{"x_axis": 0, "y_axis": 0, "width": 1, "height": 1}],
    }
    assert api.update_layout(rid, sid, "room", "100", layout).status_code == 200
    # an empty layoutConfig is none given; a built-in layout ignores one
    # (docs/service/api-contract.md#transcodingconfig)
    r = api.update_layout(rid, sid, "room", "100", {"mixedVideoLayout": 1, "layoutConfig": []})
    assert r.status_code == 200, r.text
    wait_for(lambda: server_response(api, rid, sid)["fileList"], 10, what="first slice")
    assert api.stop(rid, sid, "room", "100").status_code == 200
    # the refreshed storageConfig was used for the uploads
    stored = api.server.config.storage_dir / "newbucket" / "dir1" / "dir2" / f"{sid}_room.m3u8"
    assert stored.is_file()
    assert api.update(rid, sid, "room", "100", update).status_code == 404
    assert api.update_layout(rid, sid, "room", "100", layout).status_code == 404


def test_failed_upload_is_backuped(api: Api) -> None:
    """Every upload fails: stop says backuped, nothing is lost, the backup area holds the files
    under the real names (TS unchanged, each M3U8 version as _<tick>_<index>.m3u8)."""
    assert api.put_faults({"uploadFailureRate": 1}).status_code == 200
    api.join("room", "1")
    rid, sid = api.start("room", "100")
    wait_for(lambda: server_response(api, rid, sid)["fileList"], 10, what="first slice")
    r = api.stop(rid, sid, "room", "100")
    assert r.status_code == 200
    assert r.json()["serverResponse"]["uploadingStatus"] == "backuped"
    assert r.json()["serverResponse"]["fileList"] == f"{sid}_room.m3u8"
    assert not bucket_dir(api).exists()
    backup = api.server.config.storage_dir / ".backup" / sid
    row = api.recording(sid)
    assert all(not f["uploaded"] for f in row["files"])
    (playlist,) = [f for f in row["files"] if f["kind"] == "m3u8"]
    versions = [b["fileName"] for b in playlist["backups"]]
    pattern = re.compile(rf"{sid}_room_(\d{{13}})_(\d+)\.m3u8")
    indexes = [int(m.group(2)) for m in map(pattern.fullmatch, versions) if m]
    assert indexes == list(range(len(versions))) and len(versions) >= 2
    assert playlist["location"] == str(backup / versions[-1])
    final = (backup / versions[-1]).read_text()
    assert final.rstrip().endswith("#EXT-X-ENDLIST")
    slices = [line for line in final.splitlines() if line.endswith(".ts")]
    assert slices and all((backup / name).is_file() for name in slices)  # TS names unchanged
    for f in row["files"]:
        assert all(Path(b["path"]).is_file() and not b["transferred"] for b in f["backups"])


def test_status_6_7_8_after_stop(api: Api) -> None:
    """After an async stop the status goes 6 (stopping) / 7 (uploading the last files) to 8,
    never back; uploads are slowed down so that 7 lasts long enough to be seen."""
    api.join("room", "1")
    rid, sid = api.start("room", "100", start_request(files=["hls", "mp4"]))
    wait_for(lambda: server_response(api, rid, sid)["fileList"], 10, what="first slice")
    api.put_faults({"uploadLatency": 0.3})
    assert api.stop(rid, sid, "room", "100", async_stop=True).status_code == 200
    statuses = [server_response(api, rid, sid)["status"]]
    deadline = time.monotonic() + 10
    while statuses[-1] != 8:
        assert time.monotonic() < deadline, statuses
        time.sleep(0.02)
        statuses.append(server_response(api, rid, sid)["status"])
    assert statuses[0] in (6, 7)
    assert statuses == sorted(statuses) and set(statuses) <= {6, 7, 8}
    assert 7 in statuses
    final = server_response(api, rid, sid)
    assert [e["fileName"] for e in final["fileList"]] == [f"{sid}_room.m3u8", f"{sid}_room_0.mp4"]


def test_sync_stop_over_the_time_limit_is_206_code_50(make_emulator: EmulatorFactory) -> None:
    """A synchronous stop whose uploads take longer than the limit (20 s real; 0.5 s here)
    answers 206 code 50; the recording still finishes uploading and exits."""
    api = make_emulator(sync_stop_timeout_seconds=0.5)
    api.join("room", "1")
    rid, sid = api.start("room", "100", start_request(files=["hls", "mp4"]))
    wait_for(lambda: server_response(api, rid, sid)["fileList"], 10, what="first slice")
    api.put_faults({"uploadLatency": 0.4})
    began = time.monotonic()
    r = api.stop(rid, sid, "room", "100")
    assert 0.5 <= time.monotonic() - began < 3
    assert (r.status_code, r.json()) == (
        206,
        {
            "code": 50,
            "reason": "upload timeout",
            "cname": "room",
            "uid": "100",
            "resourceId": rid,
            "sid": sid,
        },
    )
    assert server_response(api, rid, sid)["status"] in (6, 7)
    assert api.stop(rid, sid, "room", "100").json()["code"] == 49
    row = api.wait_exited(sid)
    assert (row["status"], row["uploadingStatus"]) == (8, "uploaded")
    assert (bucket_dir(api) / f"{sid}_room_0.mp4").is_file()

"""Every request field of docs/service/api-contract.md, absent, at its documented default and empty.

One table per endpoint, sent as raw JSON over real HTTP to the emulator (``agora_http``: no
cloudrec client, no cloudrec model). The emulator must never be stricter than the real
service: what Agora's own REST clients send for values nobody set (``"token": ""`` for a
channel without App Certificate, ``null``, ``""``, ``[]``, the Go client's zero values and its
``unSubscribe*`` spelling, the Python client's fixed ``avFileType``) is accepted, and the
recording then really starts, runs, answers query and stops with its files. What
docs/service/api-contract.md#validation says the service refuses is still refused, ``400 code 2``
naming the field.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import EmulatorServer

from .agora_http import DROP, JSON, JSON_UTF8, START_BODY, Agora, patched, serve

CR = ("clientRequest",)
RC = (*CR, "recordingConfig")
TC = (*RC, "transcodingConfig")
FC = (*CR, "recordingFileConfig")
SC = (*CR, "storageConfig")
CNAME = START_BODY["cname"]
PUBLISHER = "1001"
REGION = {"x_axis": 0, "y_axis": 0, "width": 1, "height": 1}
_uids = itertools.count(600_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    emulator = serve(tmp_path_factory.mktemp("storage"))
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def agora(server: EmulatorServer) -> Agora:
    """The documented API, with someone publishing in the channel of the 3.7 example."""
    api = Agora(server.base_url)
    api.publisher(CNAME, PUBLISHER)
    return api


def _fresh_uid(body: dict[str, Any]) -> dict[str, Any]:
    """Each case records as its own recorder uid (one channel, no task conflict)."""
    return {**body, "uid": str(next(_uids))}


def _file_types(body: dict[str, Any]) -> list[str]:
    file_config = body["clientRequest"].get("recordingFileConfig") or {}
    return list(file_config.get("avFileType") or ["hls"])


def _record(agora: Agora, body: dict[str, Any], content_type: str = JSON) -> dict[str, Any]:
    """start (must answer 200), run until the first file, stop; the stop's serverResponse."""
    rid, sid = agora.started(body, content_type)
    running = agora.running(rid, sid)
    mp4 = "mp4" in _file_types(body)
    assert running["fileListMode"] == ("json" if mp4 else "string")
    stopped = agora.stopped(rid, sid, body["cname"], body["uid"])
    assert stopped["uploadingStatus"] == "uploaded"
    names = [entry["fileName"] for entry in stopped["fileList"]] if mp4 else [stopped["fileList"]]
    assert f"{sid}_{CNAME}.m3u8" in names
    assert any(name.endswith(".mp4") for name in names) == mp4
    return stopped


# --- start ---------------------------------------------------------------------------------

MINIMAL_STORAGE = {"vendor": 1, "region": 0, "bucket": "b", "accessKey": "ak", "secretKey": "sk"}

START_CASES: list[tuple[str, dict[tuple[str, ...], Any]]] = [
    ("as documented (3.7)", {}),
    # every optional field absent
    ("only storageConfig", {CR: {"storageConfig": MINIMAL_STORAGE}}),
    ("token absent", {(*CR, "token"): DROP}),
    ("recordingConfig absent (Python client default)", {RC: DROP}),
    ("recordingFileConfig absent", {FC: DROP}),
    *[
        (f"recordingConfig.{name} absent", {(*RC, name): DROP})
        for name in (
            "channelType",
            "streamTypes",
            "audioProfile",
            "videoStreamType",
            "maxIdleTime",
            "transcodingConfig",
            "subscribeAudioUids",
            "subscribeVideoUids",
        )
    ],
    *[
        (f"transcodingConfig.{name} absent", {(*TC, name): DROP})
        for name in ("width", "height", "fps", "bitrate", "mixedVideoLayout", "backgroundColor")
    ],
    ("fileNamePrefix absent", {(*SC, "fileNamePrefix"): DROP}),
    # each at its documented default
    (
        "recordingConfig defaults",
        {
            (*RC, "channelType"): 0,
            (*RC, "streamTypes"): 2,
            (*RC, "decryptionMode"): 0,
            (*RC, "maxIdleTime"): 30,
            (*RC, "videoStreamType"): 0,
            (*RC, "audioProfile"): 0,
            (*RC, "subscribeUidGroup"): 0,
            (*RC, "streamMode"): "default",
        },
    ),
    (
        "transcodingConfig defaults",
        {
            TC: {
                "width": 360,
                "height": 640,
                "fps": 15,
                "bitrate": 500,
                "mixedVideoLayout": 0,
                "backgroundColor": "#000000",
            }
        },
    ),
    (
        "layoutConfig entry defaults",
        {
            (*TC, "mixedVideoLayout"): 3,
            (*TC, "layoutConfig"): [{**REGION, "uid": PUBLISHER, "alpha": 1, "render_mode": 0}],
            (*TC, "backgroundConfig"): [
                {"uid": PUBLISHER, "image_url": "https://example.com/a.jpg", "render_mode": 0}
            ],
        },
    ),
    ("avFileType default", {(*FC, "avFileType"): ["hls"]}),
    ("recordingFileConfig {}", {FC: {}}),
    (
        "unsubscribe lists (instead of subscribe)",
        {
            (*RC, "subscribeAudioUids"): DROP,
            (*RC, "subscribeVideoUids"): DROP,
            (*RC, "unsubscribeAudioUids"): ["999"],
            (*RC, "unSubscribeVideoUids"): ["999"],
        },
    ),
    # each empty
    ("token empty (no App Certificate)", {(*CR, "token"): ""}),
    ("token null", {(*CR, "token"): None}),
    ("recordingConfig null", {RC: None}),
    ("recordingConfig {}", {RC: {}}),
    ("transcodingConfig null", {TC: None}),
    ("transcodingConfig {}", {TC: {}}),
    ("avFileType empty", {(*FC, "avFileType"): []}),
    ("avFileType null (Go client, unset)", {(*FC, "avFileType"): None}),
    (
        "string fields empty",
        {
            (*RC, "secret"): "",
            (*RC, "salt"): "",
            (*RC, "streamMode"): "",
            (*RC, "privateParams"): "",
            (*TC, "backgroundColor"): "",
            (*TC, "backgroundImage"): "",
            (*TC, "defaultUserBackgroundImage"): "",
            (*TC, "maxResolutionUid"): "",
        },
    ),
    (
        "lists empty",
        {
            (*RC, "subscribeAudioUids"): [],
            (*RC, "subscribeVideoUids"): [],
            (*RC, "unSubscribeAudioUids"): [],
            (*RC, "unsubscribeVideoUids"): [],
            (*TC, "layoutConfig"): [],
            (*TC, "backgroundConfig"): [],
        },
    ),
    (
        "optional fields null",
        {
            (*RC, "maxIdleTime"): None,
            (*RC, "subscribeAudioUids"): None,
            (*TC, "fps"): None,
            (*TC, "layoutConfig"): None,
            (*SC, "fileNamePrefix"): None,
            (*SC, "stsToken"): None,
            (*SC, "stsExpiration"): None,
            (*SC, "extensionParams"): None,
            (*CR, "extensionServiceConfig"): None,
        },
    ),
    (
        "storage optionals empty",
        {(*SC, "stsToken"): "", (*SC, "fileNamePrefix"): [], (*SC, "extensionParams"): {}},
    ),
    (
        "extensionParams fields empty",
        {(*SC, "extensionParams"): {"sse": "", "tag": "", "endpoint": ""}},
    ),
    ("snapshotConfig null (Go struct, unset)", {(*CR, "snapshotConfig"): None}),
    # what the official clients send (docs/service/api-contract.md#official-clients)
    (
        "Go: extensionParams sse/tag empty, unSubscribe spelling",
        {
            (*SC, "extensionParams"): {"sse": "", "tag": ""},
            (*RC, "subscribeAudioUids"): DROP,
            (*RC, "unSubscribeAudioUids"): ["999"],
        },
    ),
    (
        "Go: layoutConfig zero values (uid '', render_mode 0, no alpha)",
        {
            (*TC, "mixedVideoLayout"): 3,
            (*TC, "layoutConfig"): [
                {"uid": "", "x_axis": 0, "y_axis": 0, "width": 1, "height": 1, "render_mode": 0},
                {"uid": "", "x_axis": 0, "y_axis": 0, "width": 0, "height": 0, "render_mode": 0},
            ],
        },
    ),
    (
        "Python: token '', no recordingConfig, avFileType hls+mp4",
        {
            CR: {
                "token": "",
                "storageConfig": MINIMAL_STORAGE,
                "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
            }
        },
    ),
    # rules the spec gives as advice: accepted, no effect
    ("layoutConfig with a built-in layout", {(*TC, "layoutConfig"): [REGION]}),
    ("layout 3 without regions", {(*TC, "mixedVideoLayout"): 3}),
    ("unsupported fps becomes 15", {(*TC, "fps"): 25}),
    (
        "video list with audio-only streamTypes",
        {(*RC, "streamTypes"): 0, (*RC, "subscribeAudioUids"): DROP},
    ),
    ("stsToken with Azure", {(*SC, "vendor"): 5, (*SC, "stsToken"): "sts"}),
]


@pytest.mark.parametrize(
    "changes", [case[1] for case in START_CASES], ids=[case[0] for case in START_CASES]
)
def test_start(agora: Agora, changes: dict[tuple[str, ...], Any]) -> None:
    body = _fresh_uid(patched(START_BODY, changes))
    # Content-Type with and without charset (docs/service/api-contract.md#authentication: the Go
    # client sends the charset)
    content_type = JSON_UTF8 if len(changes) % 2 else JSON
    _record(agora, body, content_type)


START_REFUSED: list[tuple[dict[tuple[str, ...], Any], str]] = [
    ({(*RC, "maxIdleTime"): 4}, "clientRequest.recordingConfig.maxIdleTime: must be between"),
    ({(*RC, "audioProfile"): 3}, "clientRequest.recordingConfig.audioProfile: must be between"),
    ({(*RC, "channelType"): 2}, "clientRequest.recordingConfig.channelType: must be between"),
    ({(*RC, "streamTypes"): 3}, "clientRequest.recordingConfig.streamTypes: must be between"),
    ({(*RC, "maxIdleTime"): "300"}, "clientRequest.recordingConfig.maxIdleTime: must be an int"),
    ({(*TC, "width"): 1920, (*TC, "height"): 1920}, f"{'.'.join(TC)}.width: width x height"),
    ({(*TC, "bitrate"): 6501}, f"{'.'.join(TC)}.bitrate: must be between 1 and 6500"),
    ({(*TC, "mixedVideoLayout"): 4}, f"{'.'.join(TC)}.mixedVideoLayout: must be between 0 and 3"),
    (
        {(*TC, "mixedVideoLayout"): 3, (*TC, "layoutConfig"): [REGION] * 18},
        f"{'.'.join(TC)}.layoutConfig: must have at most 17 entries",
    ),
    (
        {(*TC, "mixedVideoLayout"): 3, (*TC, "layoutConfig"): [{**REGION, "width": 1.5}]},
        f"{'.'.join(TC)}.layoutConfig[0].width: must be between 0 and 1",
    ),
    (
        {(*RC, "subscribeAudioUids"): [str(i) for i in range(1, 34)]},
        "clientRequest.recordingConfig.subscribeAudioUids: must have at most 32 entries",
    ),
    (
        {(*RC, "unSubscribeAudioUids"): ["2"]},
        "clientRequest.recordingConfig.unSubscribeAudioUids: subscribeAudioUids and "
        "unSubscribeAudioUids are mutually exclusive",
    ),
    ({(*FC, "avFileType"): ["mp4"]}, "clientRequest.recordingFileConfig.avFileType: must include"),
    ({SC: DROP}, "clientRequest.storageConfig: is required"),
    ({(*SC, "bucket"): ""}, "clientRequest.storageConfig.bucket: must not be empty"),
    ({(*SC, "secretKey"): None}, "clientRequest.storageConfig.secretKey: is required"),
    ({(*SC, "vendor"): 4}, "clientRequest.storageConfig.vendor: must be one of"),
    (
        {(*SC, "vendor"): 11},
        "clientRequest.storageConfig.extensionParams: extensionParams.endpoint",
    ),
    ({(*SC, "fileNamePrefix"): ["a_b"]}, "clientRequest.storageConfig.fileNamePrefix[0]: may"),
    ({(*SC, "fileNamePrefix"): ["a" * 129]}, "clientRequest.storageConfig.fileNamePrefix: must"),
    ({(*RC, "maxIdletime"): 30}, "clientRequest.recordingConfig.maxIdletime: is not a known field"),
]


@pytest.mark.parametrize(("changes", "reason"), START_REFUSED, ids=[r for _, r in START_REFUSED])
def test_start_refuses_what_the_service_refuses(
    agora: Agora, changes: dict[tuple[str, ...], Any], reason: str
) -> None:
    body = _fresh_uid(patched(START_BODY, changes))
    rid = agora.acquired(body["cname"], body["uid"])
    r = agora.start(rid, body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 2
    assert r.json()["reason"].startswith(reason), r.json()["reason"]


# --- acquire -------------------------------------------------------------------------------

ACQUIRE_CASES: list[tuple[str, Any]] = [
    ("clientRequest {}", {}),
    ("clientRequest null", None),
    ("defaults", {"scene": 0, "resourceExpiredHour": 72, "regionAffinity": 0}),
    ("Go: scene 0 always, the rest omitted", {"scene": 0}),
    (
        "empties",
        {"excludeResourceIds": [], "region": "", "startParameter": {}},
    ),
    (
        "nulls",
        {
            "scene": None,
            "resourceExpiredHour": None,
            "excludeResourceIds": None,
            "region": None,
            "regionAffinity": None,
            "startParameter": None,
        },
    ),
    ("startParameter: the start clientRequest", {"startParameter": START_BODY["clientRequest"]}),
    ("region and affinity", {"region": "NA", "regionAffinity": 4, "resourceExpiredHour": 1}),
    ("excludeResourceIds (backup recording)", {"excludeResourceIds": ["a-resource-id"]}),
]


@pytest.mark.parametrize(
    "client", [case[1] for case in ACQUIRE_CASES], ids=[case[0] for case in ACQUIRE_CASES]
)
def test_acquire(agora: Agora, client: dict[str, Any] | None) -> None:
    uid = str(next(_uids))
    r = agora.acquire({"cname": CNAME, "uid": uid, "clientRequest": client}, JSON_UTF8)
    assert r.status_code == 200, r.text
    assert (r.json()["cname"], r.json()["uid"]) == (CNAME, uid)
    rid = str(r.json()["resourceId"])
    body = {**START_BODY, "uid": uid}
    r = agora.start(rid, body)  # the resource starts a recording
    assert r.status_code == 200, r.text
    sid = str(r.json()["sid"])
    agora.running(rid, sid)
    agora.stopped(rid, sid, CNAME, uid)


# --- query, update, updateLayout: against one running recording ------------------------------


@pytest.fixture(scope="module")
def live(agora: Agora) -> Iterator[tuple[str, str, str]]:
    """A recording of the 3.7 body that runs for the module: (rid, sid, uid)."""
    body = _fresh_uid(START_BODY)
    rid, sid = agora.started(body)
    agora.running(rid, sid)
    yield rid, sid, body["uid"]
    agora.stopped(rid, sid, CNAME, body["uid"])


QUERY_CASES: list[tuple[str, dict[str, Any]]] = [
    ("no body, no Content-Type", {}),
    ("Content-Type json", {"headers": {"Content-Type": JSON}}),
    ("Content-Type json;charset=utf-8 (Go)", {"headers": {"Content-Type": JSON_UTF8}}),
    ("an empty JSON body", {"headers": {"Content-Type": JSON}, "data": "{}"}),
]


@pytest.mark.parametrize("request_kw", [c[1] for c in QUERY_CASES], ids=[c[0] for c in QUERY_CASES])
def test_query(agora: Agora, live: tuple[str, str, str], request_kw: dict[str, Any]) -> None:
    rid, sid, uid = live
    r = agora.query(rid, sid, timeout=10, **request_kw)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["cname"], answer["uid"], answer["resourceId"], answer["sid"]) == (
        CNAME,
        uid,
        rid,
        sid,
    )
    server = answer["serverResponse"]
    assert server["status"] == 5
    assert server["fileListMode"] == "json"
    assert any(entry["fileName"] == f"{sid}_{CNAME}.m3u8" for entry in server["fileList"])


UPDATE_CASES: list[tuple[str, Any]] = [
    ("clientRequest {} (Python, no streamSubscribe)", {}),
    ("clientRequest null (Go, nil)", None),
    ("streamSubscribe {}", {"streamSubscribe": {}}),
    ("streamSubscribe null", {"streamSubscribe": None}),
    (
        "as documented (5)",
        {
            "streamSubscribe": {
                "audioUidList": {"subscribeAudioUids": ["#allstream#"]},
                "videoUidList": {"unSubscribeVideoUids": ["444", "555"]},
            }
        },
    ),
    (
        "unsubscribe spelling",
        {"streamSubscribe": {"videoUidList": {"unsubscribeVideoUids": ["444"]}}},
    ),
    ("uid lists {} (no change)", {"streamSubscribe": {"audioUidList": {}, "videoUidList": {}}}),
    (
        "uid lists empty",
        {
            "streamSubscribe": {
                "audioUidList": {"subscribeAudioUids": []},
                "videoUidList": {"unSubscribeVideoUids": []},
            }
        },
    ),
    (
        "storageConfig rotated",
        {"storageConfig": {**MINIMAL_STORAGE, "stsToken": "new", "stsExpiration": 0}},
    ),
    ("storageConfig null", {"storageConfig": None}),
    ("web-mode fields null", {"webRecordingConfig": None, "rtmpPublishConfig": None}),
    (
        "back to everyone",
        {
            "streamSubscribe": {
                "audioUidList": {"subscribeAudioUids": ["#allstream#"]},
                "videoUidList": {"subscribeVideoUids": ["#allstream#"]},
            }
        },
    ),
]


@pytest.mark.parametrize("client", [c[1] for c in UPDATE_CASES], ids=[c[0] for c in UPDATE_CASES])
def test_update(agora: Agora, live: tuple[str, str, str], client: dict[str, Any] | None) -> None:
    rid, sid, uid = live
    r = agora.update(rid, sid, {"cname": CNAME, "uid": uid, "clientRequest": client})
    assert r.status_code == 200, r.text
    assert (r.json()["resourceId"], r.json()["sid"]) == (rid, sid)
    assert agora.running(rid, sid)["status"] == 5  # still recording


LAYOUT_CASES: list[tuple[str, Any]] = [
    ("clientRequest {} (every default)", {}),
    ("clientRequest null (every default)", None),
    (
        "defaults",
        {"mixedVideoLayout": 0, "backgroundColor": "#000000"},
    ),
    ("Node example", {"mixedVideoLayout": 1, "backgroundColor": "#FF0000"}),
    (
        "empties",
        {
            "maxResolutionUid": "",
            "backgroundColor": "",
            "backgroundImage": "",
            "defaultUserBackgroundImage": "",
            "layoutConfig": [],
            "backgroundConfig": [],
        },
    ),
    (
        "nulls",
        {
            "mixedVideoLayout": None,
            "maxResolutionUid": None,
            "backgroundColor": None,
            "layoutConfig": None,
            "backgroundConfig": None,
        },
    ),
    (
        "Go: layout 3, uid '' and alpha 0 sent, render_mode 0",
        {
            "mixedVideoLayout": 3,
            "layoutConfig": [{**REGION, "uid": "", "alpha": 0, "render_mode": 0}],
        },
    ),
    (
        "Go: vertical with maxResolutionUid",
        {"mixedVideoLayout": 2, "maxResolutionUid": PUBLISHER},
    ),
    ("layoutConfig with a built-in layout", {"mixedVideoLayout": 1, "layoutConfig": [REGION]}),
    ("layout 3 without regions", {"mixedVideoLayout": 3}),
    (
        "backgroundConfig defaults",
        {
            "backgroundConfig": [
                {"uid": PUBLISHER, "image_url": "https://example.com/a.jpg", "render_mode": 0}
            ]
        },
    ),
]


@pytest.mark.parametrize("client", [c[1] for c in LAYOUT_CASES], ids=[c[0] for c in LAYOUT_CASES])
def test_update_layout(
    agora: Agora, live: tuple[str, str, str], client: dict[str, Any] | None
) -> None:
    rid, sid, uid = live
    r = agora.update_layout(rid, sid, {"cname": CNAME, "uid": uid, "clientRequest": client})
    assert r.status_code == 200, r.text
    assert (r.json()["resourceId"], r.json()["sid"]) == (rid, sid)
    assert agora.running(rid, sid)["status"] == 5


# --- stop ----------------------------------------------------------------------------------

STOP_CASES: list[tuple[str, Any, bool]] = [
    ("clientRequest {}", {}, False),
    ("clientRequest null (Go, nil)", None, False),
    ("async_stop false (Go, always sent)", {"async_stop": False}, False),
    ("async_stop null", {"async_stop": None}, False),
    ("async_stop true", {"async_stop": True}, True),
]


@pytest.mark.parametrize(
    ("client", "is_async"),
    [(c[1], c[2]) for c in STOP_CASES],
    ids=[c[0] for c in STOP_CASES],
)
def test_stop(
    agora: Agora, server: EmulatorServer, client: dict[str, Any] | None, is_async: bool
) -> None:
    body = _fresh_uid(START_BODY)
    rid, sid = agora.started(body)
    agora.running(rid, sid)
    stop = {"cname": CNAME, "uid": body["uid"], "clientRequest": client}
    r = agora.stop(rid, sid, stop, JSON_UTF8)
    assert r.status_code == 200, r.text
    server_response = r.json()["serverResponse"]
    assert server_response["uploadingStatus"] == ("unknown" if is_async else "uploaded")
    assert server.service.wait_done(sid, 20)
    # the recording has ended: a second stop is "already exiting", then it is gone
    again = agora.stop(rid, sid, stop)
    assert (again.status_code, again.json()["code"]) in ((400, 49), (404, 404))


def test_stored_files_are_under_the_prefix(agora: Agora, server: EmulatorServer) -> None:
    body = _fresh_uid(patched(START_BODY, {(*CR, "token"): ""}))
    stopped = _record(agora, body)
    stored = Path(server.config.storage_dir)
    for entry in stopped["fileList"]:
        assert list(stored.rglob(f"dir1/dir2/{entry['fileName']}")), entry["fileName"]

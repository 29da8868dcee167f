"""Tier 1: the REST contract models (contract/models.py) against docs/service/api-contract.md."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from contract.models import (
    AcquireClientRequest,
    AcquireResponse,
    ApiRequest,
    AudioUidList,
    ErrorBody,
    FileEntry,
    LayoutRegion,
    LayoutUpdate,
    QueryResponse,
    QueryServerResponse,
    RecordingConfig,
    RecordingFileConfig,
    StartClientRequest,
    StartResponse,
    StopClientRequest,
    StopResponse,
    StorageConfig,
    StorageExtension,
    TranscodingConfig,
    UpdateClientRequest,
    UserBackground,
    VideoUidList,
    channel_name_problem,
    describe_validation_error,
    file_names,
    to_wire,
    uid_problem,
)

STORAGE: dict[str, Any] = {
    "vendor": 1,
    "region": 0,
    "bucket": "bucket",
    "accessKey": "AKIAEXAMPLE",
    "secretKey": "very-secret-key",
}
START: dict[str, Any] = {
    "token": "rtc-token-value",
    "recordingConfig": {"channelType": 0, "streamTypes": 2, "maxIdleTime": 30},
    "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
    "storageConfig": STORAGE,
}
REGION = {"x_axis": 0.0, "y_axis": 0.0, "width": 0.5, "height": 0.5}


def refusal(model: type[BaseModel], data: Any, prefix: str = "") -> str:
    """Validate ``data``; it must fail. Returns the described error."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return describe_validation_error(info.value, prefix)


def with_field(base: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    data[field] = value
    return data


# --- every numeric range: just inside accepted, just outside refused, naming the field ------

RANGES: list[tuple[type[BaseModel], dict[str, Any], str, int | float, int | float]] = [
    (RecordingConfig, {}, "channelType", 0, 1),
    (RecordingConfig, {}, "streamTypes", 0, 2),
    (
        RecordingConfig,
        {"secret": "s", "salt": base64.b64encode(b"x" * 32).decode()},
        "decryptionMode",
        0,
        8,
    ),
    (RecordingConfig, {}, "maxIdleTime", 5, 2_592_000),
    (RecordingConfig, {}, "videoStreamType", 0, 1),
    (RecordingConfig, {}, "subscribeUidGroup", 0, 5),
    (RecordingConfig, {}, "audioProfile", 0, 2),
    (TranscodingConfig, {"height": 1}, "width", 1, 1920),
    (TranscodingConfig, {"width": 1}, "height", 1, 1920),
    (TranscodingConfig, {}, "bitrate", 1, 6500),
    (LayoutRegion, REGION, "x_axis", 0.0, 1.0),
    (LayoutRegion, REGION, "y_axis", 0.0, 1.0),
    (LayoutRegion, REGION, "width", 0.0, 1.0),
    (LayoutRegion, REGION, "height", 0.0, 1.0),
    (LayoutRegion, REGION, "alpha", 0.0, 1.0),
    (LayoutRegion, REGION, "render_mode", 0, 1),
    (UserBackground, {"uid": "1", "image_url": "https://x/y.jpg"}, "render_mode", 0, 1),
    (AcquireClientRequest, {}, "scene", 0, 2),
    (AcquireClientRequest, {}, "resourceExpiredHour", 1, 720),
    (AcquireClientRequest, {}, "regionAffinity", 0, 4),
]


@pytest.mark.parametrize(("model", "base", "field", "lo", "hi"), RANGES)
def test_range_edges(
    model: type[BaseModel], base: dict[str, Any], field: str, lo: float, hi: float
) -> None:
    for ok in (lo, hi):
        assert getattr(model.model_validate(with_field(base, field, ok)), field) == ok
    step = 1 if isinstance(lo, int) else 0.000001
    for bad in (lo - step, hi + step):
        message = refusal(model, with_field(base, field, bad), "x")
        assert message.startswith(f"x.{field}: "), message
        assert "must be" in message


@pytest.mark.parametrize("model", [TranscodingConfig, LayoutUpdate])
def test_mixed_video_layout_range(model: type[BaseModel]) -> None:
    for layout in (0, 1, 2):
        assert model.model_validate({"mixedVideoLayout": layout})
    assert model.model_validate({"mixedVideoLayout": 3, "layoutConfig": [REGION]})
    for bad in (-1, 4):
        message = refusal(model, {"mixedVideoLayout": bad})
        assert message == f"mixedVideoLayout: must be between 0 and 3 (got {bad})"


def test_maxidletime_message_names_the_api_path() -> None:
    body: dict[str, Any] = {"cname": "c", "uid": "1", "clientRequest": copy.deepcopy(START)}
    body["clientRequest"]["recordingConfig"]["maxIdleTime"] = 3
    assert refusal(ApiRequest[StartClientRequest], body) == (
        "clientRequest.recordingConfig.maxIdleTime: must be between 5 and 2592000 (got 3)"
    )


def test_every_error_is_reported_joined() -> None:
    body: dict[str, Any] = {"cname": "c", "uid": "0", "clientRequest": copy.deepcopy(START)}
    body["clientRequest"]["recordingConfig"]["audioProfile"] = 3
    body["clientRequest"]["storageConfig"]["bucket"] = ""
    message = refusal(ApiRequest[StartClientRequest], body)
    parts = message.split("; ")
    assert [p.split(":")[0] for p in parts] == [
        "uid",
        "clientRequest.recordingConfig.audioProfile",
        "clientRequest.storageConfig.bucket",
    ]


def test_numbers_are_strict() -> None:
    assert "must be an integer" in refusal(RecordingConfig, {"maxIdleTime": "30"})
    assert "must be an integer" in refusal(RecordingConfig, {"maxIdleTime": True})
    assert "must be a boolean" in refusal(StopClientRequest, {"async_stop": "yes"})
    # integers 0 and 1 are accepted for layout fractions
    # (docs/service/api-contract.md#transcodingconfig)
    assert LayoutRegion.model_validate({**REGION, "x_axis": 1}).x_axis == 1.0


def test_unknown_field_is_refused_with_its_name() -> None:
    message = refusal(RecordingConfig, {"maxIdletime": 30}, "recordingConfig")
    assert message.startswith("recordingConfig.maxIdletime: is not a known field")
    assert "clientRequest.foo" in refusal(
        ApiRequest[StopClientRequest], {"cname": "c", "uid": "1", "clientRequest": {"foo": 1}}
    )


def test_defaults_as_the_spec_gives_them() -> None:
    rc = RecordingConfig()
    assert (rc.channelType, rc.streamTypes, rc.maxIdleTime, rc.audioProfile) == (0, 2, 30, 0)
    tc = TranscodingConfig()
    assert (tc.width, tc.height, tc.fps, tc.bitrate) == (360, 640, 15, 500)
    assert (tc.mixedVideoLayout, tc.backgroundColor) == (0, "#000000")
    acq = AcquireClientRequest()
    assert (acq.scene, acq.resourceExpiredHour) == (0, 72)
    assert RecordingFileConfig().avFileType == ["hls"]
    assert StopClientRequest().async_stop is False
    region = LayoutRegion.model_validate(REGION)
    assert (region.alpha, region.render_mode, region.uid) == (1.0, 0, None)


# --- transcodingConfig / updateLayout ---------------------------------------------------------


@pytest.mark.parametrize("fps", [1, 7, 10, 15, 24, 30, 60])
def test_supported_fps_kept(fps: int) -> None:
    assert TranscodingConfig(fps=fps).fps == fps


@pytest.mark.parametrize("fps", [0, 5, 12, 25, 61, 120, -3])
def test_unsupported_fps_silently_becomes_15(fps: int) -> None:
    assert TranscodingConfig.model_validate({"fps": fps}).fps == 15


def test_pixel_budget() -> None:
    assert TranscodingConfig.model_validate({"width": 1920, "height": 1080}).width == 1920
    assert TranscodingConfig.model_validate({"width": 1080, "height": 1920}).height == 1920
    message = refusal(TranscodingConfig, {"width": 1920, "height": 1081}, "transcodingConfig")
    assert message.startswith("transcodingConfig.width: width x height must be at most")


def test_layout_config_is_used_with_layout_3() -> None:
    ok = TranscodingConfig.model_validate({"mixedVideoLayout": 3, "layoutConfig": [REGION] * 17})
    assert ok.layoutConfig is not None and len(ok.layoutConfig) == 17
    assert "layoutConfig: must have at most 17 entries (got 18)" in refusal(
        TranscodingConfig, {"mixedVideoLayout": 3, "layoutConfig": [REGION] * 18}
    )
    # 3.3 says layoutConfig is "only used with layout 3": with a built-in layout it is
    # accepted and has no effect; layout 3 without regions shows the background.
    assert LayoutUpdate.model_validate({"mixedVideoLayout": 1, "layoutConfig": [REGION]})
    assert LayoutUpdate.model_validate({"mixedVideoLayout": 3}).layoutConfig is None
    assert (
        LayoutUpdate.model_validate({"mixedVideoLayout": 3, "layoutConfig": []}).layoutConfig
        is None
    )
    assert refusal(
        LayoutUpdate, {"mixedVideoLayout": 3, "layoutConfig": [{**REGION, "width": 1.01}]}
    ).startswith("layoutConfig[0].width: must be between 0 and 1")


@pytest.mark.parametrize("color", ["#000000", "#ffFF00", "#123abc"])
def test_background_color_accepted(color: str) -> None:
    assert LayoutUpdate(backgroundColor=color).backgroundColor == color


@pytest.mark.parametrize("color", ["000000", "#00000", "#0000000", "#GG0000", "red", " "])
def test_background_color_refused(color: str) -> None:
    assert refusal(LayoutUpdate, {"backgroundColor": color}).startswith("backgroundColor: must be")


@pytest.mark.parametrize("color", ["", None])
def test_background_color_not_given_is_black(color: str | None) -> None:
    assert LayoutUpdate.model_validate({"backgroundColor": color}).backgroundColor == "#000000"


def test_max_resolution_uid_rule() -> None:
    assert LayoutUpdate(mixedVideoLayout=2, maxResolutionUid="4294967295").maxResolutionUid
    for bad in ["0", "4294967296", "abc", "-1", " "]:
        assert refusal(LayoutUpdate, {"maxResolutionUid": bad}).startswith("maxResolutionUid: ")
    assert LayoutUpdate.model_validate({"maxResolutionUid": ""}).maxResolutionUid is None


def test_layout_update_omitted_fields_are_defaults() -> None:
    update = LayoutUpdate.model_validate({"mixedVideoLayout": 1})
    assert update.backgroundColor == "#000000"
    assert update.maxResolutionUid is None


# --- recordingConfig ------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["unsubscribeAudioUids", "unSubscribeAudioUids"])
def test_both_unsubscribe_spellings_accepted_serialized_as_unsubscribe(spelling: str) -> None:
    rc = RecordingConfig.model_validate({spelling: ["1"], "unsubscribeVideoUids": ["2"]})
    assert rc.unSubscribeAudioUids == ["1"]
    wire = to_wire(rc)
    assert wire["unSubscribeAudioUids"] == ["1"]
    assert wire["unSubscribeVideoUids"] == ["2"]
    assert "unsubscribeAudioUids" not in wire


def test_both_spellings_at_once_refused() -> None:
    message = refusal(
        RecordingConfig, {"unsubscribeAudioUids": ["1"], "unSubscribeAudioUids": ["2"]}
    )
    assert message.startswith("unSubscribeAudioUids: ")
    assert "unSubscribeVideoUids" in refusal(
        VideoUidList, {"unsubscribeVideoUids": ["1"], "unSubscribeVideoUids": ["2"]}
    )


@pytest.mark.parametrize("kind", ["Audio", "Video"])
def test_subscribe_lists(kind: str) -> None:
    assert RecordingConfig.model_validate({f"subscribe{kind}Uids": ["#allstream#"]})
    assert RecordingConfig.model_validate({f"subscribe{kind}Uids": [str(i) for i in range(1, 33)]})
    assert (
        refusal(RecordingConfig, {f"subscribe{kind}Uids": [str(i) for i in range(1, 34)]})
        == f"subscribe{kind}Uids: must have at most 32 entries (got 33)"
    )
    assert refusal(
        RecordingConfig, {f"unSubscribe{kind}Uids": [str(i) for i in range(1, 34)]}
    ).startswith(f"unSubscribe{kind}Uids: must have at most 32")
    assert refusal(
        RecordingConfig, {f"subscribe{kind}Uids": ["1"], f"unsubscribe{kind}Uids": ["2"]}
    ).startswith(f"unSubscribe{kind}Uids: subscribe{kind}Uids and unSubscribe{kind}Uids are")
    assert refusal(RecordingConfig, {f"subscribe{kind}Uids": ["abc"]}).startswith(
        f"subscribe{kind}Uids[0]: must be '#allstream#' or a uid"
    )


def test_lists_of_a_kind_not_recorded_are_accepted() -> None:
    # 3.2: the lists are "only valid" with those streamTypes; they have no effect otherwise.
    assert RecordingConfig.model_validate({"streamTypes": 0, "subscribeAudioUids": ["1"]})
    assert RecordingConfig.model_validate({"streamTypes": 1, "subscribeVideoUids": ["1"]})
    rc = RecordingConfig.model_validate({"streamTypes": 1, "unsubscribeAudioUids": ["1"]})
    assert rc.unSubscribeAudioUids == ["1"]
    assert RecordingConfig.model_validate({"streamTypes": 0, "subscribeVideoUids": ["1"]})


def test_decryption_needs_secret_and_salt() -> None:
    salt = base64.b64encode(b"s" * 32).decode()
    assert RecordingConfig.model_validate({"decryptionMode": 1, "secret": "k"}).secret
    assert refusal(RecordingConfig, {"decryptionMode": 1}).startswith("secret: is required")
    assert refusal(RecordingConfig, {"decryptionMode": 7, "secret": "k"}).startswith("salt: ")
    assert RecordingConfig.model_validate({"decryptionMode": 8, "secret": "k", "salt": salt})
    bad_salt = base64.b64encode(b"s" * 31).decode()
    message = refusal(RecordingConfig, {"decryptionMode": 8, "secret": "k", "salt": bad_salt})
    assert message == "salt: must be the Base64 encoding of 32 bytes"


def test_stream_mode_literal() -> None:
    assert RecordingConfig(streamMode="standard").streamMode == "standard"
    assert refusal(RecordingConfig, {"streamMode": "fast"}).startswith("streamMode: must be")


# --- recordingFileConfig --------------------------------------------------------------------


def test_av_file_type() -> None:
    assert RecordingFileConfig.model_validate({"avFileType": ["hls"]}).avFileType == ["hls"]
    assert RecordingFileConfig.model_validate({"avFileType": ["hls", "mp4"]})
    assert RecordingFileConfig.model_validate({"avFileType": ["mp4", "hls"]})
    assert refusal(RecordingFileConfig, {"avFileType": ["mp4"]}).startswith(
        'avFileType: must include "hls"'
    )
    assert refusal(RecordingFileConfig, {"avFileType": ["hls", "hls"]}).startswith(
        "avFileType: must not repeat"
    )
    # null (the Go client's unset slice) and [] are no choice: the default ["hls"]
    assert RecordingFileConfig.model_validate({"avFileType": []}).avFileType == ["hls"]
    assert RecordingFileConfig.model_validate({"avFileType": None}).avFileType == ["hls"]
    assert refusal(RecordingFileConfig, {"avFileType": ["hls", "flv"]}).startswith(
        "avFileType[1]: must be 'hls' or 'mp4'"
    )


# --- storageConfig ----------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", [1, 2, 3, 5, 6, 7, 11])
def test_known_vendors_region_0(vendor: int) -> None:
    data = with_field(STORAGE, "vendor", vendor)
    if vendor == 11:
        data["extensionParams"] = {"endpoint": "minio.local:9000"}
    assert StorageConfig.model_validate(data).vendor == vendor


@pytest.mark.parametrize("vendor", [0, 4, 9, 10, 12])
def test_unknown_vendor(vendor: int) -> None:
    assert refusal(StorageConfig, with_field(STORAGE, "vendor", vendor)).startswith(
        "vendor: must be one of 1, 2, 3, 5, 6, 7, 8, 11"
    )


@pytest.mark.parametrize(
    ("vendor", "good", "bad"),
    [
        (1, 25, 17),
        (1, 16, 26),
        (2, 27, 28),
        (3, 19, 20),
        (5, 0, 1),
        (6, 0, 1),
        (7, 15, 16),
        (8, 1, 0),
        (8, 7, 8),
    ],
)
def test_vendor_regions(vendor: int, good: int, bad: int) -> None:
    data = {**STORAGE, "vendor": vendor}
    assert StorageConfig.model_validate({**data, "region": good}).region == good
    assert refusal(StorageConfig, {**data, "region": bad}).startswith(
        f"region: is not a region of vendor {vendor}"
    )


def test_negative_region() -> None:
    assert refusal(StorageConfig, {**STORAGE, "region": -1}).startswith(
        "region: must be between 0 and"
    )


def test_vendor_11_needs_endpoint() -> None:
    data = with_field(STORAGE, "vendor", 11)
    assert refusal(StorageConfig, data).startswith("extensionParams: ")
    assert refusal(StorageConfig, {**data, "extensionParams": {"sse": "kms"}}).startswith(
        "extensionParams: "
    )


def test_storage_required_fields() -> None:
    for field in ("vendor", "region", "bucket", "accessKey", "secretKey"):
        data = dict(STORAGE)
        del data[field]
        assert (
            refusal(StorageConfig, data, "storageConfig") == f"storageConfig.{field}: is required"
        )
    assert refusal(StorageConfig, {**STORAGE, "secretKey": ""}) == "secretKey: must not be empty"


def test_sts_token_vendors() -> None:
    assert StorageConfig.model_validate({**STORAGE, "stsToken": "t", "stsExpiration": 1})
    # only used with vendors 1, 2 and 3 (docs/service/api-contract.md#storageconfig); elsewhere
    # accepted with no effect
    assert StorageConfig.model_validate({**STORAGE, "vendor": 5, "stsToken": "t"}).stsToken
    assert StorageConfig.model_validate({**STORAGE, "stsToken": ""}).stsToken is None


def test_extension_params() -> None:
    assert StorageConfig.model_validate(
        {**STORAGE, "extensionParams": {"sse": "aes256", "tag": "t"}}
    )
    assert refusal(StorageConfig, {**STORAGE, "extensionParams": {"sse": "des"}}).startswith(
        "extensionParams.sse: must be 'kms' or 'aes256'"
    )


def test_file_name_prefix() -> None:
    ok = StorageConfig.model_validate({**STORAGE, "fileNamePrefix": ["dir1", "Dir2"]})
    assert ok.object_key("a.m3u8") == "dir1/Dir2/a.m3u8"
    # 128 characters including slashes is the limit
    assert StorageConfig.model_validate({**STORAGE, "fileNamePrefix": ["a" * 63, "b" * 64]})
    message = refusal(StorageConfig, {**STORAGE, "fileNamePrefix": ["a" * 64, "b" * 64]})
    assert message.startswith("fileNamePrefix: must be at most 128 characters")
    for bad in ["a_b", "a/b", "a b", "", "(x)", "é"]:
        assert refusal(StorageConfig, {**STORAGE, "fileNamePrefix": ["ok", bad]}).startswith(
            "fileNamePrefix[1]: may contain only a-z, A-Z and 0-9"
        )


# --- acquire / envelope / update / stop ---------------------------------------------------------


def test_acquire_region() -> None:
    for region in ("CN", "AP", "EU", "NA"):
        assert AcquireClientRequest.model_validate({"region": region}).region == region
    assert refusal(AcquireClientRequest, {"region": "US"}).startswith("region: must be")
    hint = AcquireClientRequest.model_validate({"startParameter": {"anything": "goes"}})
    assert hint.startParameter == {"anything": "goes"}


@pytest.mark.parametrize("uid", ["1", "527841", "4294967295"])
def test_uid_accepted(uid: str) -> None:
    assert uid_problem(uid) is None
    assert ApiRequest.model_validate({"cname": "c", "uid": uid, "clientRequest": {}}).uid == uid


@pytest.mark.parametrize("uid", ["0", "4294967296", "-1", "1.5", "abc", "", " 1", "12345678901"])
def test_uid_refused(uid: str) -> None:
    assert uid_problem(uid) is not None
    assert refusal(ApiRequest, {"cname": "c", "uid": uid, "clientRequest": {}}).startswith(
        "uid: must be a decimal integer string in 1..4294967295"
    )


def test_uid_must_be_a_string() -> None:
    assert refusal(ApiRequest, {"cname": "c", "uid": 5, "clientRequest": {}}).startswith(
        "uid: must be a string"
    )


@pytest.mark.parametrize("cname", ["a", "class 42", "a" * 63, "!#$%&()+-:;<=.>?@[]^_{}|~,", "Zz09"])
def test_channel_name_accepted(cname: str) -> None:
    assert channel_name_problem(cname) is None
    assert ApiRequest.model_validate({"cname": cname, "uid": "1", "clientRequest": {}})


@pytest.mark.parametrize(
    "cname", ["", "a" * 64, "a/b", "a*b", "tab\t", "é", "quote'", 'q"', "a\\b"]
)
def test_channel_name_refused(cname: str) -> None:
    assert channel_name_problem(cname) is not None
    assert refusal(ApiRequest, {"cname": cname, "uid": "1", "clientRequest": {}}).startswith(
        "cname: "
    )


def test_client_request_required() -> None:
    assert refusal(ApiRequest, {"cname": "c", "uid": "1"}) == "clientRequest: is required"
    assert refusal(ApiRequest, [1]) == "body: must be an object (got list)"


def test_update_request() -> None:
    update = UpdateClientRequest.model_validate(
        {
            "streamSubscribe": {
                "audioUidList": {"subscribeAudioUids": ["#allstream#"]},
                "videoUidList": {"unsubscribeVideoUids": ["444", "555"]},
            }
        }
    )
    assert update.streamSubscribe is not None
    assert update.streamSubscribe.videoUidList is not None
    assert update.streamSubscribe.videoUidList.unSubscribeVideoUids == ["444", "555"]
    wire = to_wire(update)
    assert wire["streamSubscribe"]["videoUidList"] == {"unSubscribeVideoUids": ["444", "555"]}
    assert not AudioUidList.model_validate({}).given  # no list: audio stays as it is
    assert not AudioUidList.model_validate({"subscribeAudioUids": []}).given
    assert refusal(
        UpdateClientRequest,
        {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": [str(i) for i in range(40)]}}},
        "clientRequest",
    ).startswith("clientRequest.streamSubscribe.audioUidList.subscribeAudioUids: must have at most")
    assert UpdateClientRequest.model_validate({"storageConfig": STORAGE}).storageConfig


def test_stop_request() -> None:
    assert StopClientRequest.model_validate({}).async_stop is False
    assert StopClientRequest.model_validate({"async_stop": True}).async_stop is True


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_hidden_everywhere_but_to_wire() -> None:
    body: dict[str, Any] = {"cname": "c", "uid": "1", "clientRequest": copy.deepcopy(START)}
    body["clientRequest"]["storageConfig"]["stsToken"] = "sts-secret-value"
    body["clientRequest"]["recordingConfig"].update(decryptionMode=1, secret="enc-secret-value")
    request = ApiRequest[StartClientRequest].model_validate(body)
    secrets = ["very-secret-key", "rtc-token-value", "sts-secret-value", "enc-secret-value"]
    for text in (repr(request), str(request), request.model_dump_json(), str(request.model_dump())):
        for secret in secrets:
            assert secret not in text
    wire = to_wire(request)
    assert wire["clientRequest"]["token"] == "rtc-token-value"
    assert wire["clientRequest"]["storageConfig"]["secretKey"] == "very-secret-key"
    assert wire["clientRequest"]["storageConfig"]["stsToken"] == "sts-secret-value"
    assert wire["clientRequest"]["recordingConfig"]["secret"] == "enc-secret-value"
    assert isinstance(request.clientRequest.token, SecretStr)


def test_secret_inputs_never_echoed_in_errors() -> None:
    message = refusal(StorageConfig, {**STORAGE, "secretKey": 12345678})
    assert message == "secretKey: must be a string"
    message = refusal(StartClientRequest, {**START, "token": 987654321})
    assert "987654321" not in message


def test_to_wire_round_trip_and_drops_none() -> None:
    request = ApiRequest[StartClientRequest].model_validate(
        {"cname": "c", "uid": "1", "clientRequest": START}
    )
    wire = to_wire(request)
    assert "subscribeAudioUids" not in wire["clientRequest"]["recordingConfig"]
    assert "transcodingConfig" not in wire["clientRequest"]["recordingConfig"]
    assert ApiRequest[StartClientRequest].model_validate(wire) == request
    # an unparameterized envelope carries a model as well
    untyped: ApiRequest[Any] = ApiRequest(cname="c", uid="1", clientRequest=request.clientRequest)
    assert to_wire(untyped) == wire


# --- responses --------------------------------------------------------------------------------


def test_acquire_and_start_responses() -> None:
    assert AcquireResponse.model_validate({"resourceId": "r"}).resourceId == "r"
    start = StartResponse.model_validate(
        {"cname": "c", "uid": 527841, "resourceId": "r", "sid": "s", "extra": 1}
    )
    assert start.uid == "527841"


def test_query_response_string_form() -> None:
    query = QueryResponse.model_validate(
        {
            "cname": "c",
            "uid": "1",
            "resourceId": "r",
            "sid": "s",
            "serverResponse": {
                "status": 5,
                "fileListMode": "string",
                "fileList": "s_c.m3u8",
                "sliceStartTime": 1606357122528,
            },
        }
    )
    assert query.serverResponse.status == 5
    assert file_names(query.serverResponse.fileList) == ["s_c.m3u8"]


def test_query_response_json_form_old_spellings() -> None:
    server = QueryServerResponse.model_validate(
        {
            "status": "5",
            "fileListMode": "json",
            "fileList": [
                {
                    "filename": "s_c.m3u8",
                    "trackType": "audio_and_video",
                    "uid": "0",
                    "mixedAllUser": "true",
                    "isPlayable": "true",
                    "sliceStartTime": "1562724971626",
                },
                {
                    "fileName": "s_c_0.mp4",
                    "trackType": "audio_and_video",
                    "uid": 0,
                    "mixedAllUser": True,
                    "isPlayable": False,
                    "sliceStartTime": 1562724971626,
                },
            ],
        }
    )
    assert server.status == 5
    assert file_names(server.fileList) == ["s_c.m3u8", "s_c_0.mp4"]
    assert isinstance(server.fileList, list)
    first = server.fileList[0]
    assert first.mixedAllUser is True and first.isPlayable is True
    assert first.sliceStartTime == 1562724971626
    assert server.fileList[1].uid == "0"


def test_query_before_first_slice_and_file_names_edge_cases() -> None:
    server = QueryServerResponse.model_validate({"status": 4})
    assert file_names(server.fileList) == []
    assert file_names("") == []
    assert file_names([FileEntry(fileName="x.mp4")]) == ["x.mp4"]


def test_stop_response() -> None:
    stop = StopResponse.model_validate(
        {
            "resourceId": "r",
            "sid": "s",
            "serverResponse": {
                "fileListMode": "string",
                "fileList": "s_c.m3u8",
                "uploadingStatus": "uploaded",
            },
        }
    )
    assert stop.serverResponse is not None
    assert stop.serverResponse.uploadingStatus == "uploaded"
    assert StopResponse.model_validate({"resourceId": "r", "sid": "s"}).serverResponse is None


def test_error_body() -> None:
    service = ErrorBody.model_validate({"code": 53, "reason": "task conflict", "sid": ""})
    assert (service.code, service.reason, service.is_gateway) == (53, "task conflict", False)
    gateway = ErrorBody.model_validate({"message": "API rate limit exceeded"})
    assert gateway.is_gateway and gateway.message == "API rate limit exceeded"
    assert ErrorBody.model_validate({"code": "435"}).code == 435


# --- what real clients send for values nobody set (issue 8 item 4) -----------------------------


@pytest.mark.parametrize("token", ["", None])
def test_empty_or_null_token_is_no_token(token: str | None) -> None:
    request = StartClientRequest.model_validate({**START, "token": token})
    assert request.token is None
    assert "token" not in to_wire(request)  # the worker never sends "token": ""


def test_null_is_the_field_left_out() -> None:
    rc = RecordingConfig.model_validate(
        {"maxIdleTime": None, "transcodingConfig": None, "subscribeAudioUids": None}
    )
    assert (rc.maxIdleTime, rc.transcodingConfig, rc.subscribeAudioUids) == (30, None, None)
    assert StopClientRequest.model_validate({"async_stop": None}).async_stop is False
    # a required field sent as null is missing, named as such
    assert refusal(StorageConfig, {**STORAGE, "bucket": None}) == "bucket: is required"


def test_start_without_recording_config_takes_every_default() -> None:
    # the Python client sends no recordingConfig unless given one
    request = StartClientRequest.model_validate({"token": "", "storageConfig": STORAGE})
    assert request.recordingConfig == RecordingConfig()
    assert request.recordingFileConfig.avFileType == ["hls"]
    assert refusal(StartClientRequest, {"token": ""}, "clientRequest") == (
        "clientRequest.storageConfig: is required"
    )


def test_go_client_zero_values() -> None:
    # agora-rest-client-go: layoutConfig uid/x/y/width/height/render_mode without omitempty,
    # extensionParams sse/tag always, avFileType null when unset
    tc = TranscodingConfig.model_validate(
        {
            "mixedVideoLayout": 3,
            "layoutConfig": [
                {"uid": "", "x_axis": 0, "y_axis": 0, "width": 0, "height": 0, "render_mode": 0}
            ],
        }
    )
    assert tc.layoutConfig is not None and tc.layoutConfig[0].uid is None
    storage = StorageConfig.model_validate(
        {**STORAGE, "extensionParams": {"sse": "", "tag": ""}, "fileNamePrefix": []}
    )
    assert storage.extensionParams == StorageExtension()
    assert storage.fileNamePrefix is None
    assert RecordingFileConfig.model_validate({"avFileType": None}).avFileType == ["hls"]


def test_other_modes_fields_are_accepted() -> None:
    assert StartClientRequest.model_validate({**START, "snapshotConfig": {"captureInterval": 5}})
    assert UpdateClientRequest.model_validate({"webRecordingConfig": {"onhold": False}})

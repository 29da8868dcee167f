"""Which users a recording records (docs/service/api-contract.md#recordingconfig), checked on the
service without HTTP."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from emulator import EmulatorConfig, RecordingService
from emulator.channels import JoinRequest, PatchRequest
from emulator.media import AudioSource, LayoutSpec, OutputFile, UserSnapshot, VideoSource
from tests.support.emulator import Api, start_request


class NullRecorder:
    """Stands in for the compositor: these tests are about who is recorded, not pixels."""

    def advance_to(self, t: float, users: Sequence[UserSnapshot]) -> None:
        pass

    def set_layout(self, layout: LayoutSpec) -> None:
        pass

    def finish(self) -> list[OutputFile]:
        return []


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RecordingService]:
    svc = RecordingService(
        EmulatorConfig(storage_dir=tmp_path), recorder_factory=lambda *a, **k: NullRecorder()
    )
    yield svc
    svc.close()


def start(service: RecordingService, uid: str = "9000", **recording: Any) -> str:
    _, acquired = service.acquire("app", {"cname": "room", "uid": uid, "clientRequest": {}})
    body = {"cname": "room", "uid": uid, "clientRequest": start_request(**recording)}
    _, started = service.start("app", acquired["resourceId"], "mix", body)
    return str(started["sid"])


def join(service: RecordingService, uid: str, **body: Any) -> None:
    service.channels.join("room", JoinRequest.model_validate({"uid": uid, **body}))


def seen(service: RecordingService, sid: str) -> list[tuple[str, bool, bool]]:
    return [(u.uid, u.video is not None, u.audio is not None) for u in service.users_seen_by(sid)]


def test_default_records_every_publishing_host_in_join_order(service: RecordingService) -> None:
    join(service, "3")
    join(service, "1", video=None)
    join(service, "2", role="audience")
    join(service, "4", video=None, audio=None)  # present, never published
    sid = start(service)
    assert seen(service, sid) == [("3", True, True), ("1", False, True)]


def test_sources_are_passed_through(service: RecordingService) -> None:
    join(service, "1", video={"color": "#00FF00"}, audio={"tone": 880})
    (user,) = service.users_seen_by(start(service))
    assert user.video == VideoSource(color="#00FF00")
    assert user.audio == AudioSource(tone=880.0)


def test_audio_list_only_means_no_video(service: RecordingService) -> None:
    join(service, "1")
    join(service, "2")
    sid = start(service, subscribeAudioUids=["2"])
    assert seen(service, sid) == [("2", False, True)]


def test_allstream_and_unsubscribe(service: RecordingService) -> None:
    join(service, "1")
    join(service, "2")
    sid = start(service, subscribeAudioUids=["#allstream#"], unsubscribeVideoUids=["1"])
    assert seen(service, sid) == [("1", False, True), ("2", True, True)]


def test_stream_types(service: RecordingService) -> None:
    join(service, "1")
    audio_only = start(service, uid="9001", streamTypes=0)
    video_only = start(service, uid="9002", streamTypes=1)
    assert seen(service, audio_only) == [("1", False, True)]
    assert seen(service, video_only) == [("1", True, False)]


def test_first_17_publishers_then_the_18th_moves_up(service: RecordingService) -> None:
    for uid in range(1, 20):
        join(service, str(uid))
    sid = start(service)
    assert [u for u, _, _ in seen(service, sid)] == [str(i) for i in range(1, 18)]
    service.channels.leave("room", "5")
    assert [u for u, _, _ in seen(service, sid)][-2:] == ["17", "18"]


def test_unpublished_user_keeps_its_place(service: RecordingService) -> None:
    join(service, "1")
    join(service, "2")
    sid = start(service)
    seen(service, sid)
    service.channels.patch("room", "1", PatchRequest(video=False, audio=False))
    assert seen(service, sid) == [("1", False, False), ("2", True, True)]
    service.channels.leave("room", "1")
    assert seen(service, sid) == [("2", True, True)]


def test_update_replaces_lists(service: RecordingService) -> None:
    join(service, "1")
    join(service, "2")
    sid = start(service, uid="9000")
    task_path = ("app", _resource_of(service, sid), sid, "mix")
    body = {
        "cname": "room",
        "uid": "9000",
        "clientRequest": {"streamSubscribe": {"videoUidList": {"subscribeVideoUids": ["2"]}}},
    }
    assert service.update(*task_path, body)[0] == 200
    # a video list only: audio is no longer subscribed
    # (docs/service/api-contract.md#recordingconfig)
    assert seen(service, sid) == [("2", True, False)]


def _resource_of(service: RecordingService, sid: str) -> str:
    return str(next(r for r in service.recordings() if r["sid"] == sid)["resourceId"])


def test_a_blacklist_for_one_kind_means_none_of_the_other(service: RecordingService) -> None:
    join(service, "1")
    join(service, "2")
    only_audio_blacklist = start(service, uid="9001", unsubscribeAudioUids=["2"])
    assert seen(service, only_audio_blacklist) == [("1", False, True)]
    only_video_blacklist = start(service, uid="9002", unSubscribeVideoUids=["1"])
    assert seen(service, only_video_blacklist) == [("2", True, False)]


def test_allstream_in_a_blacklist_means_nobody(service: RecordingService) -> None:
    join(service, "1")
    sid = start(service, subscribeAudioUids=["#allstream#"], unsubscribeVideoUids=["#allstream#"])
    assert seen(service, sid) == [("1", False, True)]


def test_update_keeps_the_kind_it_does_not_name(service: RecordingService) -> None:
    join(service, "1")
    join(service, "2")
    sid = start(service, subscribeAudioUids=["1"], subscribeVideoUids=["#allstream#"])
    body = {
        "cname": "room",
        "uid": "9000",
        "clientRequest": {"streamSubscribe": {"audioUidList": {"unsubscribeAudioUids": ["1"]}}},
    }
    assert service.update("app", _resource_of(service, sid), sid, "mix", body)[0] == 200
    assert seen(service, sid) == [("1", True, False), ("2", True, True)]


# --- the rules of docs/service/api-contract.md#recordingconfig,
# docs/service/api-contract.md#update, as the exact answers over HTTP

UPDATE_RULES = [
    (
        {"audioUidList": {"subscribeAudioUids": ["1"], "unSubscribeAudioUids": ["2"]}},
        "clientRequest.streamSubscribe.audioUidList.unSubscribeAudioUids: subscribeAudioUids "
        "and unSubscribeAudioUids are mutually exclusive",
    ),
    (
        {"videoUidList": {"unsubscribeVideoUids": ["2"], "unSubscribeVideoUids": ["2"]}},
        "clientRequest.streamSubscribe.videoUidList.unSubscribeVideoUids: send only one of "
        "unSubscribeVideoUids / unsubscribeVideoUids (two spellings of the same field)",
    ),
    (
        {"videoUidList": {"subscribeVideoUids": [str(i) for i in range(1, 34)]}},
        "clientRequest.streamSubscribe.videoUidList.subscribeVideoUids: must have at most 32 "
        "entries (got 33)",
    ),
    (
        {"audioUidList": {"subscribeAudioUids": ["#all#"]}},
        "clientRequest.streamSubscribe.audioUidList.subscribeAudioUids[0]: must be "
        "'#allstream#' or a uid: must be a decimal integer string in 1..4294967295 "
        '(got "#all#")',
    ),
]


@pytest.mark.parametrize(("subscribe", "reason"), UPDATE_RULES)
def test_update_rules_answer_code_2(api: Api, subscribe: dict[str, Any], reason: str) -> None:
    rid, sid = api.start("room", "100")
    r = api.update(rid, sid, "room", "100", {"streamSubscribe": subscribe})
    assert (r.status_code, r.json()) == (400, {"code": 2, "reason": reason})


def test_lists_of_a_kind_not_recorded_are_accepted_and_change_nothing(
    service: RecordingService,
) -> None:
    # docs/service/api-contract.md#recordingconfig, docs/service/api-contract.md#update: the lists
    # are "only valid" / "only apply" with those streamTypes; the service takes them and still
    # records nothing of that kind.
    join(service, "1")
    audio_only = start(service, uid="9001", streamTypes=0, subscribeVideoUids=["1"])
    video_only = start(service, uid="9002", streamTypes=1, unsubscribeAudioUids=["2"])
    assert seen(service, audio_only) == [("1", False, True)]
    assert seen(service, video_only) == [("1", True, False)]
    body = {
        "cname": "room",
        "uid": "9001",
        "clientRequest": {"streamSubscribe": {"videoUidList": {"subscribeVideoUids": ["1"]}}},
    }
    assert (
        service.update("app", _resource_of(service, audio_only), audio_only, "mix", body)[0] == 200
    )
    assert seen(service, audio_only) == [("1", False, True)]


@pytest.mark.parametrize(
    "subscribe",
    [
        {"audioUidList": {}},
        {"audioUidList": {"subscribeAudioUids": []}},
        {"audioUidList": None, "videoUidList": {"unSubscribeVideoUids": None}},
        {},
    ],
)
def test_an_update_without_a_list_changes_nothing(
    service: RecordingService, subscribe: dict[str, Any]
) -> None:
    join(service, "1")
    join(service, "2")
    sid = start(service, subscribeAudioUids=["1"], subscribeVideoUids=["2"])
    body = {"cname": "room", "uid": "9000", "clientRequest": {"streamSubscribe": subscribe}}
    assert service.update("app", _resource_of(service, sid), sid, "mix", body)[0] == 200
    assert seen(service, sid) == [("1", False, True), ("2", True, False)]


def test_layout_with_18_regions_is_refused(api: Api) -> None:
    rid, sid = api.start("room", "100")
    region = {"x_axis": 0, "y_axis": 0, "width": 0.1, "height": 0.1}
    layout = {"mixedVideoLayout": 3, "layoutConfig": [region] * 18}
    r = api.update_layout(rid, sid, "room", "100", layout)
    assert (r.status_code, r.json()) == (
        400,
        {"code": 2, "reason": "clientRequest.layoutConfig: must have at most 17 entries (got 18)"},
    )
    assert api.update_layout(rid, sid, "room", "100", {**layout, "layoutConfig": [region] * 17})

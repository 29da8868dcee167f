"""Offline render of a scripted channel (`cloudrec render SCENARIO.json --out DIR`).

Scenario (docs/design.md#fixed-interfaces):
    {"cname": "preview", "duration": 60,
     "sid": optional, "start_epoch_ms": optional, "slice_seconds": optional (default 15),
     "recordingConfig": {... as in start ...}, "recordingFileConfig": {"avFileType": [...]},
     "events": [{"at": 0, "join": {"uid": "1", "role": "host",
                                   "video": {"color": "#FF0000"} | {"file": PATH} | null,
                                   "audio": {"tone": 440} | {"file": PATH} | null}},
                {"at": 5, "mute": {"uid": "1", "video": true}},       # true = mute that stream
                {"at": 8, "unmute": {"uid": "1", "video": true}},
                {"at": 9, "publish": {"uid": "1", "video": false, "audio": true}},  # dev PATCH
                {"at": 20, "leave": {"uid": "1"}},
                {"at": 30, "updateLayout": {... as in the updateLayout API ...}}]}
Audience members (role "audience") are in the channel but publish nothing. The recording's
subscribe/unsubscribe lists (docs/service/api-contract.md#recordingconfig) decide which streams are
recorded.

The scenario is rendered by the live recordings' own `CompositeRecorder`, driven by the
script's clock instead of the wall clock, so it runs as fast as the machine allows and
writes exactly the files a recording of that channel would.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.media.api_config import layout_spec_from_api, media_config_from_api
from emulator.media.models import AudioSource, OutputFile, UserSnapshot, VideoSource
from emulator.media.recorder import CompositeRecorder
from emulator.media.subscription import SubscriptionRules

_MAX_GOP_LANES = 2
_BEFORE = 1e-9  # an event at `at` applies to the frame at `at`, so render strictly before it


@dataclass
class _SimUser:
    uid: str
    video: VideoSource | None
    audio: AudioSource | None
    audience: bool = False
    video_on: bool = True
    audio_on: bool = True
    seen: bool = False  # has published a recorded stream since joining


@dataclass
class _Channel:
    """The scripted channel: users in join order and their publishing state."""

    users: dict[str, _SimUser] = field(default_factory=dict)

    def join(self, body: Mapping[str, Any]) -> None:
        uid = str(body["uid"])
        self.users.pop(uid, None)  # a rejoin goes to the end of the join order
        self.users[uid] = _SimUser(
            uid=uid,
            video=_video_source(body.get("video")),
            audio=_audio_source(body.get("audio")),
            audience=body.get("role") == "audience",
        )

    def leave(self, body: Mapping[str, Any]) -> None:
        self.users.pop(str(body["uid"]), None)

    def set_publishing(self, body: Mapping[str, Any], *, invert: bool) -> None:
        """`publish` bodies say what is on; `mute`/`unmute` name the streams to switch."""
        user = self.users.get(str(body["uid"]))
        if user is None:
            return
        if "video" in body:
            user.video_on = bool(body["video"]) != invert
        if "audio" in body:
            user.audio_on = bool(body["audio"]) != invert


def _snapshots(channel: _Channel, recording_config: Mapping[str, Any]) -> list[UserSnapshot]:
    """The recorder's view, as the emulator service builds it for a live recording: hosts
    in join order with the streams they publish that the recording subscribes to (streamTypes
    and the docs/service/api-contract.md#recordingconfig lists). A host is seen from their first
    recorded stream on and keeps a region while they stop publishing
    (docs/service/behaviour.md#canvas); one who never published is not seen.
    """
    rules = SubscriptionRules.from_wire(recording_config)
    snapshots = []
    for user in channel.users.values():
        if user.audience:
            continue
        video_wanted, audio_wanted = rules.video_for(user.uid), rules.audio_for(user.uid)
        video = user.video if video_wanted and user.video_on else None
        audio = user.audio if audio_wanted and user.audio_on else None
        user.seen = user.seen or video is not None or audio is not None
        if user.seen:
            snapshots.append(UserSnapshot(user.uid, video, audio))
    return snapshots


def render_scenario(scenario: dict[str, Any], out_dir: Path) -> list[OutputFile]:
    """Composite the scenario as fast as possible into `out_dir`; return the files."""
    recording_config = scenario.get("recordingConfig") or {}
    duration = float(scenario.get("duration", 60))
    config = media_config_from_api(recording_config, scenario.get("recordingFileConfig"))
    if scenario.get("slice_seconds") is not None:
        config = dataclasses.replace(config, slice_seconds=float(scenario["slice_seconds"]))
    recorder = CompositeRecorder(
        config,
        sid=str(scenario.get("sid") or uuid.uuid4().hex),
        cname=str(scenario.get("cname", "preview")),
        out_dir=Path(out_dir),
        start_epoch_ms=int(scenario.get("start_epoch_ms") or time.time() * 1000),
        # One render alone on the machine: x264 spreads each frame over the cores (sliced
        # threads) as FFmpeg's CLI does, where a live recording keeps to one thread.
        video_threads=0,
        gop_lanes=_gop_lanes(duration, config.slice_seconds),
    )
    recorder.wait_for_images()
    channel = _Channel()
    for event in sorted(scenario.get("events") or [], key=lambda e: float(e.get("at", 0))):
        at = float(event.get("at", 0))
        if at >= duration:
            break
        if at > 0:
            recorder.advance_to(at - _BEFORE, _snapshots(channel, recording_config))
        _apply(event, channel, recorder)
    recorder.advance_to(duration - _BEFORE, _snapshots(channel, recording_config))
    return recorder.finish()


def _gop_lanes(duration: float, slice_seconds: float) -> int:
    """Slices encoded at once: one per core (at most 2, where it was measured) when the render
    has at least two slices; 1 (one encoder, x264's own threads) otherwise. An offline render
    is not real time, so it may use the machine (benchmarks/README.md "Render")."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return min(_MAX_GOP_LANES, cores) if duration > slice_seconds else 1


def _apply(event: Mapping[str, Any], channel: _Channel, recorder: CompositeRecorder) -> None:
    if "join" in event:
        channel.join(event["join"])
    if "leave" in event:
        channel.leave(event["leave"])
    if "mute" in event:
        channel.set_publishing(event["mute"], invert=True)
    if "unmute" in event:
        channel.set_publishing(event["unmute"], invert=False)
    if "publish" in event:
        channel.set_publishing(event["publish"], invert=False)
    if "updateLayout" in event:
        recorder.set_layout(layout_spec_from_api(event["updateLayout"]))
        recorder.wait_for_images()


def _video_source(body: Mapping[str, Any] | None) -> VideoSource | None:
    if not body:
        return None
    return VideoSource(color=body.get("color"), file=body.get("file"))


def _audio_source(body: Mapping[str, Any] | None) -> AudioSource | None:
    if not body:
        return None
    tone = body.get("tone")
    return AudioSource(tone=float(tone) if tone is not None else None, file=body.get("file"))

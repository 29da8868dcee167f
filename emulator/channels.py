"""Simulated channels: who is in each channel, with which role, publishing what.

Driven by the dev API (docs/design.md#fixed-interfaces). A channel exists while it has users; users
are kept in join order (a user who leaves and rejoins goes to the end), which is the order the
composite layouts fill their regions in (docs/service/api-contract.md#transcodingconfig,
docs/service/behaviour.md#canvas). Presence and publish state are separate
(docs/service/behaviour.md#maxidletime): an audience member is present but publishes nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    model_validator,
)

from contract.models import Color, uid_problem
from emulator.media import AudioSource, VideoSource
from emulator.media.access import MediaDirs, MediaRefused

Role = Literal["host", "audience"]
# Default video colours of hosts that join without naming a source, by join order.
_PALETTE = (
    "#E53935",
    "#43A047",
    "#1E88E5",
    "#FDD835",
    "#8E24AA",
    "#00ACC1",
    "#FB8C00",
    "#6D4C41",
    "#C0CA33",
    "#D81B60",
    "#3949AB",
    "#00897B",
    "#F4511E",
    "#7CB342",
    "#5E35B1",
    "#039BE5",
    "#FFB300",
)
DEFAULT_TONE_HZ = 440.0


def iso_utc(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.000Z``."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ChannelError(Exception):
    """A dev-API request that cannot be applied (unknown user, duplicate uid...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- dev API request bodies ---------------------------------------------------------------


def _uid_text(value: Any) -> Any:
    # The dev API is for people and scripts: accept 123 as well as "123".
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        problem = uid_problem(value)
        if problem:
            raise ValueError(problem)
    return value


DevUid = Annotated[str, BeforeValidator(_uid_text)]


MEDIA_CONTEXT = "media_dirs"  # validation context: the MediaDirs a "file" must be under


def _media_file(path: str, info: ValidationInfo) -> str:
    """The real path of an allowed media file. The refusal never says whether ``path`` exists."""
    media = (info.context or {}).get(MEDIA_CONTEXT) or MediaDirs()
    try:
        return media.resolve(path)
    except MediaRefused as exc:
        raise ValueError(f"file: {exc}") from None


class VideoSpec(BaseModel):
    """``{"color": "#RRGGBB"}`` (synthetic pattern) or ``{"file": PATH}`` (looped)."""

    model_config = ConfigDict(extra="forbid")
    color: Color | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self, info: ValidationInfo) -> VideoSpec:
        if (self.color is None) == (self.file is None):
            raise ValueError('give exactly one of "color" or "file"')
        if self.file is not None:
            self.file = _media_file(self.file, info)
        return self

    def source(self) -> VideoSource:
        return VideoSource(color=self.color, file=self.file)


class AudioSpec(BaseModel):
    """``{"tone": HZ}`` (sine) or ``{"file": PATH}`` (looped)."""

    model_config = ConfigDict(extra="forbid")
    tone: Annotated[float, Field(ge=20, le=20_000)] | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self, info: ValidationInfo) -> AudioSpec:
        if (self.tone is None) == (self.file is None):
            raise ValueError('give exactly one of "tone" or "file"')
        if self.file is not None:
            self.file = _media_file(self.file, info)
        return self

    def source(self) -> AudioSource:
        return AudioSource(tone=self.tone, file=self.file)


class JoinRequest(BaseModel):
    """``POST /dev/channels/{cname}/users``. An omitted ``video``/``audio`` means a default
    source (a colour by join order, a 440 Hz tone) for hosts; ``null`` means none."""

    model_config = ConfigDict(extra="forbid")
    uid: DevUid
    role: Role = "host"
    video: VideoSpec | None = None
    audio: AudioSpec | None = None

    @model_validator(mode="after")
    def _audience_does_not_publish(self) -> JoinRequest:
        if self.role == "audience" and (self.video is not None or self.audio is not None):
            raise ValueError("an audience member cannot publish video or audio")
        return self


def _switch_kind(value: Any) -> str:
    # Pick the union member by the JSON type, so that an error names one rule (the object's
    # field, or "must be a boolean"), never both members. The tags ("bool", "dict") are
    # dropped from error paths by describe_validation_error.
    return "dict" if isinstance(value, dict) else "bool"


VideoSwitch = Annotated[
    Annotated[bool, Tag("bool")] | Annotated[VideoSpec, Tag("dict")], Discriminator(_switch_kind)
]
AudioSwitch = Annotated[
    Annotated[bool, Tag("bool")] | Annotated[AudioSpec, Tag("dict")], Discriminator(_switch_kind)
]


class PatchRequest(BaseModel):
    """``PATCH /dev/channels/{cname}/users/{uid}``: ``true``/``false`` publishes or unpublishes
    the current source; an object switches the source and publishes it."""

    model_config = ConfigDict(extra="forbid")
    video: VideoSwitch | None = None
    audio: AudioSwitch | None = None
    role: Role | None = None


# --- state ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimUser:
    """One simulated user. ``video``/``audio`` are the sources it has; ``*_published`` whether
    it sends them right now."""

    uid: str
    role: Role
    video: VideoSource | None
    audio: AudioSource | None
    video_published: bool
    audio_published: bool
    joined_at: float  # epoch seconds
    join_seq: int  # global join counter: lower joined earlier

    @property
    def is_host(self) -> bool:
        return self.role == "host"

    @property
    def publishing(self) -> bool:
        return (self.video_published and self.video is not None) or (
            self.audio_published and self.audio is not None
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "role": self.role,
            "video": _source_json(self.video),
            "audio": _source_json(self.audio),
            "videoPublished": self.video_published and self.video is not None,
            "audioPublished": self.audio_published and self.audio is not None,
            "joinedAt": iso_utc(self.joined_at),
        }


def _source_json(source: VideoSource | AudioSource | None) -> dict[str, Any] | None:
    if source is None:
        return None
    return {k: v for k, v in vars(source).items() if v is not None}


class ChannelRegistry:
    """All simulated channels. Thread-safe; readers get immutable snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, dict[str, SimUser]] = {}
        self._seq = 0

    def join(self, cname: str, request: JoinRequest) -> SimUser:
        with self._lock:
            users = self._channels.setdefault(cname, {})
            if request.uid in users:
                raise ChannelError(409, f"uid {request.uid} is already in channel {cname!r}")
            fields = request.model_fields_set
            video: VideoSource | None
            audio: AudioSource | None
            if request.role == "audience":
                video = audio = None
            else:
                video = (
                    request.video.source()
                    if request.video is not None
                    else None
                    if "video" in fields
                    else VideoSource(color=_PALETTE[len(users) % len(_PALETTE)])
                )
                audio = (
                    request.audio.source()
                    if request.audio is not None
                    else None
                    if "audio" in fields
                    else AudioSource(tone=DEFAULT_TONE_HZ)
                )
            self._seq += 1
            user = SimUser(
                uid=request.uid,
                role=request.role,
                video=video,
                audio=audio,
                video_published=video is not None,
                audio_published=audio is not None,
                joined_at=time.time(),
                join_seq=self._seq,
            )
            users[request.uid] = user
            return user

    def leave(self, cname: str, uid: str) -> None:
        with self._lock:
            users = self._channels.get(cname, {})
            if uid not in users:
                raise ChannelError(404, f"uid {uid} is not in channel {cname!r}")
            del users[uid]
            if not users:
                del self._channels[cname]

    def patch(self, cname: str, uid: str, request: PatchRequest) -> SimUser:
        with self._lock:
            users = self._channels.get(cname, {})
            user = users.get(uid)
            if user is None:
                raise ChannelError(404, f"uid {uid} is not in channel {cname!r}")
            role = request.role or user.role
            video, video_on = user.video, user.video_published
            audio, audio_on = user.audio, user.audio_published
            if isinstance(request.video, VideoSpec):
                video, video_on = request.video.source(), True
            elif request.video is not None:
                video_on = request.video
                if video_on and video is None:
                    video = VideoSource(color=_PALETTE[(user.join_seq - 1) % len(_PALETTE)])
            if isinstance(request.audio, AudioSpec):
                audio, audio_on = request.audio.source(), True
            elif request.audio is not None:
                audio_on = request.audio
                if audio_on and audio is None:
                    audio = AudioSource(tone=DEFAULT_TONE_HZ)
            if role == "audience":
                wants = (request.video, request.audio)
                if any(w is True or isinstance(w, VideoSpec | AudioSpec) for w in wants):
                    raise ChannelError(400, "an audience member cannot publish video or audio")
                video_on = audio_on = False
            updated = replace(
                user,
                role=role,
                video=video,
                audio=audio,
                video_published=video_on,
                audio_published=audio_on,
            )
            users[uid] = updated
            return updated

    def clear(self) -> None:
        """Every user leaves every channel."""
        with self._lock:
            self._channels.clear()

    def users(self, cname: str) -> list[SimUser]:
        """The channel's users in join order (empty if the channel does not exist)."""
        with self._lock:
            return list(self._channels.get(cname, {}).values())

    def channel_names(self) -> list[str]:
        with self._lock:
            return list(self._channels)

    def describe(self, cname: str) -> dict[str, Any]:
        users = self.users(cname)
        return {
            "cname": cname,
            "users": [{**u.to_json(), "joinOrder": i} for i, u in enumerate(users)],
            "hosts": sum(1 for u in users if u.is_host),
        }

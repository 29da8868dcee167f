"""Which of a user's streams a composite recording subscribes to
(docs/service/api-contract.md#recordingconfig), as pure rules.

One definition serves the live service (``emulator.subscription``) and the offline render:

* By default everything is subscribed.
* ``subscribe*Uids`` is a whitelist, ``unSubscribe*Uids`` (or ``unsubscribe*Uids``) a
  blacklist; ``"#allstream#"`` in either means every uid.
* A list (white or black) set for one kind only means nothing of the other kind.
* streamTypes 0 records no video, 1 no audio; lists of the kind not recorded have no effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contract.models import ALL_STREAMS

# docs/service/api-contract.md#recordingconfig, docs/service/behaviour.md#canvas: only the first 17
# users are recorded
MAX_RECORDED_USERS = 17


@dataclass
class SubscriptionRules:
    """A recording's lists; ``None`` means the list is not set."""

    stream_types: int = 2
    audio_sub: list[str] | None = None
    audio_unsub: list[str] | None = None
    video_sub: list[str] | None = None
    video_unsub: list[str] | None = None

    @classmethod
    def from_wire(cls, recording_config: Mapping[str, Any]) -> SubscriptionRules:
        """From a recordingConfig as JSON (either spelling of the blacklists)."""
        return cls(
            stream_types=int(recording_config.get("streamTypes", 2)),
            audio_sub=_uids(recording_config, "subscribeAudioUids"),
            audio_unsub=_uids(recording_config, "unSubscribeAudioUids", "unsubscribeAudioUids"),
            video_sub=_uids(recording_config, "subscribeVideoUids"),
            video_unsub=_uids(recording_config, "unSubscribeVideoUids", "unsubscribeVideoUids"),
        )

    def audio_for(self, uid: str) -> bool:
        if self.stream_types == 1:
            return False
        # Video lists have no effect when no video is recorded (streamTypes 0).
        video_lists = self.stream_types != 0 and (
            self.video_sub is not None or self.video_unsub is not None
        )
        return _subscribed(uid, self.audio_sub, self.audio_unsub, video_lists)

    def video_for(self, uid: str) -> bool:
        if self.stream_types == 0:
            return False
        audio_lists = self.stream_types != 1 and (
            self.audio_sub is not None or self.audio_unsub is not None
        )
        return _subscribed(uid, self.video_sub, self.video_unsub, audio_lists)


def _subscribed(
    uid: str, sub: Sequence[str] | None, unsub: Sequence[str] | None, other_kind_has_list: bool
) -> bool:
    if sub is not None:
        return ALL_STREAMS in sub or uid in sub
    if unsub is not None:
        return not (ALL_STREAMS in unsub or uid in unsub)
    # A list set for the other kind only means none of this kind.
    return not other_kind_has_list


def _uids(mapping: Mapping[str, Any], *keys: str) -> list[str] | None:
    # An empty list is a list nobody set, as null is (what contract.models does too).
    for key in keys:
        if mapping.get(key):
            return [str(uid) for uid in mapping[key]]
    return None

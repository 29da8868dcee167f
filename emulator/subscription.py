"""Who a composite recording records, and which of their streams
(docs/service/api-contract.md#recordingconfig, docs/service/api-contract.md#update,
docs/service/behaviour.md#canvas).

Rules (DS ``develop/subscription.md``):

* By default everything is subscribed.
* ``subscribe*Uids`` is a whitelist, ``unSubscribe*Uids`` a blacklist (either spelling on the
  wire), ``["#allstream#"]`` means every uid.
* A list (white or black) set for audio only means no video is subscribed at all, and the
  reverse.
* streamTypes 0 records no video, 1 no audio.
* Only the first 17 users are recorded; when one of them leaves, the 18th moves up.
* ``update`` replaces the list of each kind it gives a list for and keeps the other kind's.
"""

from __future__ import annotations

from collections.abc import Iterable

from contract.models import RecordingConfig, StreamSubscribe
from emulator.channels import SimUser
from emulator.media import UserSnapshot
from emulator.media.subscription import MAX_RECORDED_USERS, SubscriptionRules


class Subscription(SubscriptionRules):
    """A live recording's lists, which ``update`` may replace
    (docs/service/api-contract.md#update)."""

    @classmethod
    def from_recording(cls, recording: RecordingConfig) -> Subscription:
        return cls(
            stream_types=recording.streamTypes,
            audio_sub=recording.subscribeAudioUids,
            audio_unsub=recording.unSubscribeAudioUids,
            video_sub=recording.subscribeVideoUids,
            video_unsub=recording.unSubscribeVideoUids,
        )

    def apply(self, update: StreamSubscribe) -> None:
        """Replace the lists of each kind ``update`` gives a list for. A kind this recording's
        streamTypes does not record takes the lists and still records nothing of that kind
        (docs/service/api-contract.md#update: the lists "only apply" with those streamTypes)."""
        if update.audioUidList is not None and update.audioUidList.given:
            self.audio_sub = update.audioUidList.subscribeAudioUids
            self.audio_unsub = update.audioUidList.unSubscribeAudioUids
        if update.videoUidList is not None and update.videoUidList.given:
            self.video_sub = update.videoUidList.subscribeVideoUids
            self.video_unsub = update.videoUidList.unSubscribeVideoUids


def recorded_users(
    users: Iterable[SimUser], subscription: Subscription, seen: set[tuple[str, int]]
) -> list[UserSnapshot]:
    """The channel as the recording sees it: subscribed hosts in join order, at most 17, with
    the streams they publish now that it subscribes to.

    ``seen`` (updated here) remembers who has published a subscribed stream since joining:
    such a user keeps a region when they stop publishing (last frame / background,
    docs/service/behaviour.md#canvas); one who never published is not seen by the recorder at all.
    """
    out: list[UserSnapshot] = []
    for user in users:
        if not user.is_host:
            continue
        want_audio, want_video = subscription.audio_for(user.uid), subscription.video_for(user.uid)
        if not (want_audio or want_video):
            continue
        video = user.video if want_video and user.video_published else None
        audio = user.audio if want_audio and user.audio_published else None
        key = (user.uid, user.join_seq)
        if video is not None or audio is not None:
            seen.add(key)
        if key in seen:
            out.append(UserSnapshot(uid=user.uid, video=video, audio=audio))
        if len(out) == MAX_RECORDED_USERS:
            break
    return out

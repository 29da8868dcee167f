"""Tier 1: the docs/service/api-contract.md#recordingconfig subscription rules shared by the live
service and the offline render."""

from __future__ import annotations

import pytest

from emulator.media.subscription import SubscriptionRules


@pytest.mark.parametrize(
    ("config", "uid", "audio", "video"),
    [
        ({}, "1", True, True),  # default: everything
        ({"subscribeAudioUids": ["1"]}, "1", True, False),  # audio list only: no video at all
        ({"subscribeAudioUids": ["1"]}, "2", False, False),
        ({"unSubscribeVideoUids": ["2"]}, "1", False, True),  # video list only: no audio at all
        ({"unsubscribeVideoUids": ["2"]}, "2", False, False),  # the other spelling
        (
            {"subscribeAudioUids": ["#allstream#"], "subscribeVideoUids": ["#allstream#"]},
            "9",
            True,
            True,
        ),
        (
            {"unSubscribeAudioUids": ["#allstream#"], "subscribeVideoUids": ["3"]},
            "3",
            False,
            True,
        ),  # #allstream# in a blacklist means nobody
        ({"streamTypes": 0}, "1", True, False),
        ({"streamTypes": 1}, "1", False, True),
    ],
)
def test_rules(config, uid, audio, video):
    rules = SubscriptionRules.from_wire(config)
    assert (rules.audio_for(uid), rules.video_for(uid)) == (audio, video)

"""Tier 1: job spec validation names the field and the rule; times and the duration cap."""

from __future__ import annotations

import pytest

from config import Settings
from worker.errors import JobSpecError
from worker.jobs import parse_job_spec, resolve_times

SETTINGS = Settings(max_duration=3600)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({}, "cname: is required"),
        ({"cname": ""}, "cname: must not be empty"),
        ({"cname": "a/b"}, "cname: may contain only"),
        ({"cname": "c", "uid": "0"}, "uid: must be a decimal integer"),
        (
            {"cname": "c", "recordingConfig": {"maxIdleTime": 3}},
            "recordingConfig.maxIdleTime: must be between 5 and 2592000",
        ),
        (
            {"cname": "c", "recordingConfig": {"transcodingConfig": {"mixedVideoLayout": 7}}},
            "recordingConfig.transcodingConfig.mixedVideoLayout: must be between 0 and 3",
        ),
        (
            {"cname": "c", "recordingConfig": {"transcodingConfig": {"bitrate": 7000}}},
            "recordingConfig.transcodingConfig.bitrate",
        ),
        (
            {"cname": "c", "recordingFileConfig": {"avFileType": ["mp4"]}},
            'recordingFileConfig.avFileType: must include "hls"',
        ),
        ({"cname": "c", "storage": "nope"}, "storage: must name a configured storage profile"),
        ({"cname": "c", "fileNamePrefix": ["a_b"]}, "fileNamePrefix[0]: may contain only"),
        ({"cname": "c", "duration": 0}, "duration"),
        (
            {"cname": "c", "duration": 10, "stop_at": "2030-01-01T00:00:00Z"},
            "either duration or stop_at",
        ),
        ({"cname": "c", "surprise": 1}, "surprise: is not a known field"),
        ({"cname": "c", "callback": {"task": "not a name"}}, "callback.task"),
    ],
)
def test_invalid_specs_name_the_field_and_rule(spec, fragment):
    with pytest.raises(JobSpecError) as info:
        parse_job_spec(spec, SETTINGS)
    assert fragment in str(info.value)


def test_token_never_appears_in_errors_or_the_stored_spec():
    spec = parse_job_spec({"cname": "c", "token": "rtc-secret-token"}, SETTINGS)
    assert "rtc-secret-token" not in repr(spec)
    assert "token" not in spec.wire()
    with pytest.raises(JobSpecError) as info:
        parse_job_spec({"cname": "c", "token": "rtc-secret-token", "uid": "x"}, SETTINGS)
    assert "rtc-secret-token" not in str(info.value)


def test_duration_and_default_cap():
    spec = parse_job_spec({"cname": "c", "duration": 30}, SETTINGS)
    assert resolve_times(spec, SETTINGS, now=1000.0).stop_at == 1030.0
    spec = parse_job_spec({"cname": "c"}, SETTINGS)
    assert resolve_times(spec, SETTINGS, now=1000.0).stop_at == 1000.0 + 3600


def test_over_the_cap_is_refused():
    spec = parse_job_spec({"cname": "c", "duration": 3601}, SETTINGS)
    with pytest.raises(JobSpecError, match="duration: the recording may last at most"):
        resolve_times(spec, SETTINGS, now=0.0)


def test_start_at_in_the_future_is_kept_and_stop_at_must_follow_it():
    spec = parse_job_spec(
        {"cname": "c", "start_at": "2030-01-01T00:00:00Z", "duration": 60}, SETTINGS
    )
    times = resolve_times(spec, SETTINGS, now=0.0)
    assert times.start_at == 1893456000.0 and times.stop_at == 1893456060.0
    spec = parse_job_spec({"cname": "c", "stop_at": "2000-01-01T00:00:00Z"}, SETTINGS)
    with pytest.raises(JobSpecError, match="stop_at: must be later"):
        resolve_times(spec, SETTINGS, now=1e9)

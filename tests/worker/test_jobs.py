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
    times = resolve_times(spec, SETTINGS, now=1893456000.0 - 86400)
    assert times.start_at == 1893456000.0 and times.stop_at == 1893456060.0
    spec = parse_job_spec({"cname": "c", "stop_at": "2000-01-01T00:00:00Z"}, SETTINGS)
    with pytest.raises(JobSpecError, match="stop_at: must be later"):
        resolve_times(spec, SETTINGS, now=1e9)


NOW = 1_800_000_000.0
DAY = 86400.0


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat()


@pytest.mark.parametrize(
    ("times", "fragment"),
    [
        # start_at: at most CLOUDREC_MAX_START_AHEAD ahead (default 30 days) ...
        ({"start_at": _iso(NOW + 31 * DAY)}, "start_at: must be at most CLOUDREC_MAX_START_AHEAD"),
        ({"start_at": "9999-12-31T23:59:59-14:00"}, "start_at: must be at most"),
        # ... and not so far in the past that the whole recording would be over
        ({"start_at": _iso(NOW - 2 * 3600)}, "start_at: must not be more than CLOUDREC_MAX_"),
        ({"start_at": "0001-01-01T00:00:00Z"}, "start_at: must not be more than"),
        # duration: 1 .. CLOUDREC_MAX_DURATION, however big the number
        ({"duration": 10**400}, "duration: the recording may last at most"),
        ({"duration": 3601}, "duration: the recording may last at most"),
        # stop_at: after the start, within CLOUDREC_MAX_DURATION of it
        ({"stop_at": "9999-12-31T23:59:59Z"}, "stop_at: the recording may last at most"),
        ({"stop_at": _iso(NOW - 1)}, "stop_at: must be later"),
        (
            {"start_at": _iso(NOW + DAY), "stop_at": _iso(NOW + DAY - 1)},
            "stop_at: must be later than start_at",
        ),
        (
            {"start_at": _iso(NOW + DAY), "stop_at": _iso(NOW + DAY + 3601)},
            "stop_at: the recording may last at most",
        ),
    ],
)
def test_every_time_given_is_bounded(times, fragment):
    spec = parse_job_spec({"cname": "c", **times}, SETTINGS)
    with pytest.raises(JobSpecError, match=fragment):
        resolve_times(spec, SETTINGS, now=NOW)


def test_times_within_the_bounds_are_taken():
    spec = parse_job_spec(
        {"cname": "c", "start_at": _iso(NOW + 29 * DAY), "duration": 3600}, SETTINGS
    )
    assert resolve_times(spec, SETTINGS, now=NOW).stop_at == NOW + 29 * DAY + 3600
    late = parse_job_spec({"cname": "c", "start_at": _iso(NOW - 600), "duration": 60}, SETTINGS)
    times = resolve_times(late, SETTINGS, now=NOW)
    assert times.start_at is None and times.stop_at == NOW + 60  # a late submit starts now
    tight = Settings(max_duration=3600, max_start_ahead=3600)
    ahead = parse_job_spec({"cname": "c", "start_at": _iso(NOW + 7200)}, tight)
    with pytest.raises(JobSpecError, match="CLOUDREC_MAX_START_AHEAD = 3600 s"):
        resolve_times(ahead, tight, now=NOW)

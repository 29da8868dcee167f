"""Property-based: thousands of generated invalid specs are each refused with a message naming
the bad field, no API call is made, and nothing is stored (docs/design.md#the-job)."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.recording import submit_and_start
from worker.errors import JobSpecError
from worker.metrics import API_CALLS

VALID: dict[str, Any] = {
    "cname": "class42",
    "duration": 60,
    "recordingConfig": {
        "channelType": 0,
        "streamTypes": 2,
        "maxIdleTime": 30,
        "transcodingConfig": {"width": 320, "height": 240, "bitrate": 400},
    },
    "recordingFileConfig": {"avFileType": ["hls"]},
}

TC = "recordingConfig.transcodingConfig"
not_int = st.one_of(
    st.text(max_size=5),
    st.booleans(),
    st.floats(allow_nan=False).filter(lambda f: not f.is_integer()),
    st.lists(st.integers(), max_size=2),
)
bad_chars = st.text(alphabet="/\\'\"`*\u00e9\u4e2d", min_size=1, max_size=5)


def _ints_outside(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1))


# (path as the message names it, where to put the value, strategy of invalid values)
MUTATIONS: list[tuple[str, tuple[str, ...], st.SearchStrategy[Any]]] = [
    (
        "cname",
        ("cname",),
        st.one_of(
            st.just(""),
            bad_chars,
            st.text(alphabet="ab", min_size=64, max_size=80),
            st.integers(),
            st.none(),
        ),
    ),
    (
        "uid",
        ("uid",),
        st.one_of(
            st.just("0"),
            st.text(alphabet="abc-", min_size=1, max_size=4),
            st.integers(min_value=2**32, max_value=2**40).map(str),
        ),
    ),
    (
        "job_id",
        ("job_id",),
        st.one_of(st.just(""), st.text(alphabet=" /#", min_size=1, max_size=3)),
    ),
    (
        "recordingConfig.maxIdleTime",
        ("recordingConfig", "maxIdleTime"),
        st.one_of(_ints_outside(5, 2592000), not_int),
    ),
    ("recordingConfig.channelType", ("recordingConfig", "channelType"), _ints_outside(0, 1)),
    ("recordingConfig.streamTypes", ("recordingConfig", "streamTypes"), _ints_outside(0, 2)),
    ("recordingConfig.audioProfile", ("recordingConfig", "audioProfile"), _ints_outside(0, 2)),
    (
        "recordingConfig.videoStreamType",
        ("recordingConfig", "videoStreamType"),
        _ints_outside(0, 1),
    ),
    (
        f"{TC}.bitrate",
        ("recordingConfig", "transcodingConfig", "bitrate"),
        st.one_of(st.integers(min_value=6501), st.integers(max_value=0)),
    ),
    (
        f"{TC}.width",
        ("recordingConfig", "transcodingConfig", "width"),
        st.one_of(st.integers(max_value=0), st.integers(min_value=1921)),
    ),
    (
        f"{TC}.mixedVideoLayout",
        ("recordingConfig", "transcodingConfig", "mixedVideoLayout"),
        _ints_outside(0, 3),
    ),
    (
        f"{TC}.backgroundColor",
        ("recordingConfig", "transcodingConfig", "backgroundColor"),
        # "" is no colour given (the default), as on the service
        st.one_of(st.text(alphabet="xyz#", min_size=1, max_size=8), st.integers()),
    ),
    (
        "recordingConfig.subscribeAudioUids",
        ("recordingConfig", "subscribeAudioUids"),
        st.lists(st.integers(1, 10**6).map(str), min_size=33, max_size=40, unique=True),
    ),
    (
        "recordingFileConfig.avFileType",
        ("recordingFileConfig", "avFileType"),
        st.sampled_from([["mp4"], ["xyz"], "hls", ["hls", "hls"]]),  # [] is the default
    ),
    ("storage", ("storage",), st.text(alphabet="qwz", min_size=1, max_size=6)),
    (
        "fileNamePrefix",
        ("fileNamePrefix",),
        st.one_of(st.lists(bad_chars, min_size=1, max_size=2), st.just(["a" * 130])),
    ),
    (
        "duration",
        ("duration",),
        st.one_of(st.integers(max_value=0), st.text(alphabet="abc", min_size=1, max_size=3)),
    ),
    ("start_at", ("start_at",), st.text(alphabet="xyz:", min_size=1, max_size=6)),
    (
        "labels",
        ("labels",),
        st.one_of(
            st.integers(),
            st.dictionaries(
                st.text(alphabet="ab", min_size=1, max_size=2), st.integers(), min_size=1
            ),
        ),
    ),
    ("callback.task", ("callback", "task"), st.text(alphabet=" -/!", min_size=1, max_size=4)),
    ("callback.webhook", ("callback", "webhook"), st.text(alphabet="abc ", min_size=1, max_size=6)),
    ("recordingConfig", ("recordingConfig",), st.one_of(st.integers(), st.text(max_size=3))),
]
UNKNOWN = st.text(alphabet="qxzQXZ", min_size=3, max_size=8)


@st.composite
def invalid_specs(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A valid spec broken in 1-3 places; returns it with the field paths that must be named."""
    spec = copy.deepcopy(VALID)
    chosen = draw(
        st.lists(st.sampled_from(range(len(MUTATIONS))), min_size=1, max_size=3, unique=True)
    )
    named = []
    for index in chosen:
        path, where, values = MUTATIONS[index]
        if path == "recordingConfig" and any(p.startswith("recordingConfig.") for p in named):
            continue  # replacing the whole object would hide the nested breakage
        if path.startswith("recordingConfig.") and "recordingConfig" in named:
            continue
        _put(spec, where, draw(values))
        named.append(path)
    if draw(st.booleans()):
        field = draw(UNKNOWN)
        spec[field] = 1
        named.append(field)
    return spec, named


def _put(spec: dict[str, Any], where: tuple[str, ...], value: Any) -> None:
    target = spec
    for key in where[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            return
    target[where[-1]] = value


@settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=invalid_specs())
def test_every_invalid_spec_is_refused_naming_the_field_and_nothing_happens(rt, redis_client, case):
    spec, named = case
    try:
        submit_and_start(rt, spec)
    except JobSpecError as exc:
        message = str(exc)
    else:
        raise AssertionError(f"accepted an invalid spec: {spec}")
    for path in named:
        assert path in message, f"{path!r} not named in {message!r}"
    # Nothing stored, and no API call either: a call would have left the limiter's window and
    # the API-call counter in this database.
    assert redis_client.dbsize() == 0, "an invalid spec left something in Redis"


def test_nothing_reached_the_api(rt, redis_client, dev):
    # Run after a batch of refusals through the same runtime: the client was never called.
    for bad in ({"cname": ""}, {"cname": "c", "duration": 0}, {"cname": "c", "storage": "x"}):
        with contextlib.suppress(JobSpecError):
            submit_and_start(rt, bad)
    assert redis_client.hgetall(API_CALLS) == {}
    assert dev.recordings() == []

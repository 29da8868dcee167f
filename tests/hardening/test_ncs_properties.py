"""Property-based: whatever is POSTed to the NCS receiver, correctly signed or not, gets a clear
answer (200, or 400/401/413 naming the problem), never a 500; the receiver keeps answering;
and a notification never makes a job (NCS only tells about recordings, it never starts one).

Bodies are NCS envelopes with any field replaced by a value of another type or left out, and
raw bytes; each is sent signed with the receiver's secret (so that it reaches the parser) and,
for some, unsigned or wrongly signed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import Settings
from contract.ncs import signatures
from worker.ncs_receiver import ReceiverThread

SECRET = "ncs-property-secret"
MAX_BODY = 4096

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _valid(event_type: int, sequence: int) -> dict[str, Any]:
    return {
        "noticeId": f"n{event_type}-{sequence}",
        "productId": 3,
        "eventType": event_type,
        "notifyMs": 1_700_000_000_000,
        "payload": {
            "cname": "room",
            "uid": "900000001",
            "sid": "0123456789abcdef0123456789abcdef",
            "sequence": sequence,
            "sendts": 1_700_000_000_000,
            "serviceType": 0,
            "details": {"fileList": [{"fileName": "a.m3u8"}], "newUid": 5, "leaveCode": 16},
        },
    }


@st.composite
def envelopes(draw: st.DrawFn) -> Any:
    """A valid envelope with some of its fields (top level or in the payload) replaced by any
    JSON value, or removed."""
    body = _valid(draw(st.sampled_from([1, 3, 4, 11, 12, 30, 31, 32, 33, 40, 41, 42, 99])), 0)
    body["payload"]["sequence"] = draw(st.integers(min_value=0, max_value=5))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        payload = body.get("payload")
        details = payload.get("details") if isinstance(payload, dict) else None
        targets = [body] + [d for d in (payload, details) if isinstance(d, dict)]
        target = draw(st.sampled_from(targets))
        key = draw(st.sampled_from(sorted(target) or ["x"]))
        if draw(st.booleans()):
            target[key] = draw(ANY_JSON)
        else:
            target.pop(key, None)
    return body


BODIES = st.one_of(
    envelopes().map(lambda b: json.dumps(b).encode()),
    ANY_JSON.map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=200),
    st.just(b"[" * 5000),  # deeper than anything sane, and larger than the limit
)


@pytest.fixture
def receiver(redis_url: str) -> Iterator[ReceiverThread]:
    server = ReceiverThread(Settings(redis_url=redis_url, ncs_secret=SECRET, ncs_max_body=MAX_BODY))
    yield server
    server.stop()


def _post(url: str, body: bytes, signing: str) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if signing == "signed":
        headers |= signatures(body, SECRET)
    elif signing == "wrong":
        headers |= signatures(body, SECRET + "-not")
    return requests.post(url, data=body, headers=headers, timeout=10)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES, signing=st.sampled_from(["signed", "signed", "signed", "unsigned", "wrong"]))
def test_any_post_gets_a_clear_answer_and_makes_no_job(
    receiver: ReceiverThread, redis_client: redis.Redis, body: bytes, signing: str
) -> None:
    answer = _post(receiver.url, body, signing)
    assert answer.status_code in (200, 400, 401, 413), (answer.status_code, answer.text[:300])
    assert isinstance(answer.json(), dict)  # a JSON body, also when refused
    if signing != "signed":
        assert answer.status_code in (401, 413)
    elif len(body) > MAX_BODY:
        assert answer.status_code == 413
    assert redis_client.keys("cloudrec:job:*") == []  # a notification never makes a job
    health = requests.get(receiver.url + "health", timeout=5)
    assert health.status_code == 200  # and the receiver keeps answering

"""Property-based (hypothesis): every public input surface, fed generated input, answers with a
clear error or works; none crashes (no 500, no traceback), none leaves a half-made job or a
recording running.

Surfaces: the emulator's REST bodies (acquire, start, update, updateLayout, stop), its dev API
bodies (join, patch, faults, failover), and ``cloudrec record --spec FILE``. (The job spec
through ``recording.submit`` is tests/worker/test_bad_input.py; NCS posts are the NCS
receiver's.) Inputs are mutations of a valid body (a value anywhere replaced by any JSON value,
a key dropped or added), any JSON at all, and bytes that are not JSON.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator import EmulatorServer, serve_in_thread
from tests.support.emulator import AUTH, FAST, start_request
from worker.cli import cli
from worker.store import DUE_KEY

APP = "props"
BASE = f"/v1/apps/{APP}/cloud_recording"
PROFILE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
not_json = st.binary(max_size=64).filter(lambda b: not _parses(b))


def _parses(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (object keys and list indices)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """``valid`` with one to three changes: a value replaced, a key dropped or one added."""
    body = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(body)))
        if not path:
            return draw(json_values)
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
        else:
            parent[path[-1]] = draw(json_values)
    return body


def inputs(valid: Any) -> st.SearchStrategy[bytes]:
    """Request bodies: mostly mutations of ``valid``, some any JSON, some not JSON."""
    as_json = st.one_of(mutated(valid), mutated(valid), json_values).map(
        lambda v: json.dumps(v).encode()
    )
    return st.one_of(as_json, as_json, as_json, not_json)


# -- the emulator ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    media = tmp_path_factory.mktemp("media")
    (media / "clip.mp4").write_bytes(b"\x00" * 64)
    config = replace(FAST, storage_dir=tmp_path_factory.mktemp("storage"), media_dirs=(media,))
    server = serve_in_thread(config)
    yield server
    server.stop()


def _send(server: EmulatorServer, method: str, path: str, raw: bytes) -> requests.Response:
    return requests.request(
        method,
        server.base_url + path,
        data=raw,
        auth=AUTH,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def _clear_answer(response: requests.Response) -> dict[str, Any]:
    """Not a 500, and a JSON body a client can act on: an error names its problem."""
    assert response.status_code < 500 or response.status_code in (503, 504), response.text
    payload = response.json()
    assert isinstance(payload, dict | list), payload
    if response.status_code >= 400 and isinstance(payload, dict):
        text = payload.get("reason") or payload.get("message")
        assert isinstance(text, str) and text, payload
    return payload if isinstance(payload, dict) else {"items": payload}


def _live(server: EmulatorServer) -> list[dict[str, Any]]:
    rows = requests.get(f"{server.base_url}/dev/recordings", params={"live": "true"}, timeout=10)
    return list(rows.json())


def _acquire(server: EmulatorServer, cname: str, uid: str = "9") -> str:
    body = {"cname": cname, "uid": uid, "clientRequest": {}}
    response = _send(server, "POST", f"{BASE}/acquire", json.dumps(body).encode())
    assert response.status_code == 200, response.text
    return str(response.json()["resourceId"])


def _stop_everything(server: EmulatorServer) -> None:
    for row in _live(server):
        body = {"cname": row["cname"], "uid": row["uid"], "clientRequest": {}}
        path = f"{BASE}/resourceid/{row['resourceId']}/sid/{row['sid']}/mode/mix/stop"
        _send(server, "POST", path, json.dumps(body).encode())


VALID_ACQUIRE = {"cname": "props", "uid": "9", "clientRequest": {"resourceExpiredHour": 24}}
VALID_START = {"cname": "props", "uid": "9", "clientRequest": start_request()}


@PROFILE
@given(raw=inputs(VALID_ACQUIRE))
def test_acquire_bodies(emulator: EmulatorServer, raw: bytes) -> None:
    _clear_answer(_send(emulator, "POST", f"{BASE}/acquire", raw))


@PROFILE
@given(raw=inputs(VALID_START))
def test_start_bodies_never_crash_nor_leave_a_recording(emulator: EmulatorServer, raw: bytes):
    rid = _acquire(emulator, "props")
    answer = _send(emulator, "POST", f"{BASE}/resourceid/{rid}/mode/mix/start", raw)
    _clear_answer(answer)
    if answer.status_code == 200:  # it worked: a real recording, which the caller stops
        _stop_everything(emulator)
    assert _live(emulator) == []


@pytest.fixture(scope="module")
def live(emulator: EmulatorServer) -> Iterator[tuple[str, str]]:
    """One live recording whose update and updateLayout bodies are generated."""
    requests.post(
        f"{emulator.base_url}/dev/channels/updates/users",
        json={"uid": "1", "video": {"color": "#FF0000"}, "audio": {"tone": 440}},
        timeout=10,
    )
    rid = _acquire(emulator, "updates")
    body = {"cname": "updates", "uid": "9", "clientRequest": start_request()}
    started = _send(
        emulator, "POST", f"{BASE}/resourceid/{rid}/mode/mix/start", json.dumps(body).encode()
    )
    assert started.status_code == 200, started.text
    yield rid, str(started.json()["sid"])
    _stop_everything(emulator)
    assert _live(emulator) == []


VALID_UPDATE = {
    "cname": "updates",
    "uid": "9",
    "clientRequest": {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["1"]}}},
}
VALID_LAYOUT = {
    "cname": "updates",
    "uid": "9",
    "clientRequest": {
        "mixedVideoLayout": 3,
        "backgroundColor": "#000000",
        "layoutConfig": [{"x_axis": 0.0, "y_axis": 0.0, "width": 0.5, "height": 0.5}],
    },
}


@PROFILE
@given(raw=inputs(VALID_UPDATE), layout=inputs(VALID_LAYOUT))
def test_update_and_update_layout_bodies(emulator, live, raw: bytes, layout: bytes) -> None:
    rid, sid = live
    task = f"{BASE}/resourceid/{rid}/sid/{sid}/mode/mix"
    _clear_answer(_send(emulator, "POST", f"{task}/update", raw))
    _clear_answer(_send(emulator, "POST", f"{task}/updateLayout", layout))
    assert [row["sid"] for row in _live(emulator)] == [sid]  # still recording, nothing else


@PROFILE
@given(raw=inputs({"cname": "props", "uid": "9", "clientRequest": {"async_stop": False}}))
def test_stop_bodies(emulator: EmulatorServer, raw: bytes) -> None:
    path = f"{BASE}/resourceid/{'r' * 20}/sid/{'s' * 32}/mode/mix/stop"
    _clear_answer(_send(emulator, "POST", path, raw))


VALID_JOIN = {
    "uid": "5",
    "role": "host",
    "video": {"color": "#00FF00"},
    "audio": {"file": "clip.mp4"},
}


@PROFILE
@given(join=inputs(VALID_JOIN), patch=inputs({"video": False, "audio": {"tone": 880}}))
def test_dev_channel_bodies(emulator: EmulatorServer, join: bytes, patch: bytes) -> None:
    base = f"{emulator.base_url}/dev/channels/devprops/users"
    joined = requests.post(base, data=join, timeout=10)
    _clear_answer(joined)
    if joined.status_code == 201:
        uid = joined.json()["uid"]
        _clear_answer(requests.patch(f"{base}/{uid}", data=patch, timeout=10))
        assert requests.delete(f"{base}/{uid}", timeout=10).status_code == 200
    users = requests.get(f"{emulator.base_url}/dev/channels/devprops", timeout=10).json()["users"]
    assert users == []


@PROFILE
@given(
    faults=inputs({"latency": [{"operation": "start", "seconds": 0.1, "when": "before"}]}),
    failover=inputs({"seconds": 3}),
)
def test_dev_faults_and_failover_bodies(emulator: EmulatorServer, faults: bytes, failover: bytes):
    put = requests.put(f"{emulator.base_url}/dev/faults", data=faults, timeout=10)
    _clear_answer(put)
    assert requests.put(f"{emulator.base_url}/dev/faults", json={}, timeout=10).status_code == 200
    _clear_answer(
        requests.post(
            f"{emulator.base_url}/dev/recordings/nosuch/failover", data=failover, timeout=10
        )
    )


# -- cloudrec record --spec FILE ------------------------------------------------------------------
VALID_SPEC = {
    "cname": "cliprops",
    "duration": 60,
    # Nothing starts: the job waits (within CLOUDREC_MAX_START_AHEAD), the test inspects it.
    "start_at": (datetime.now(UTC) + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "recordingConfig": {"maxIdleTime": 30, "transcodingConfig": {"width": 320, "height": 240}},
    "recordingFileConfig": {"avFileType": ["hls"]},
    "labels": {"team": "a"},
}


@PROFILE
@given(raw=inputs(VALID_SPEC))
def test_cli_spec_files(redis_url: str, tmp_path: Path, raw: bytes) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    spec = tmp_path / "spec.json"
    spec.write_bytes(raw)
    env = {"CLOUDREC_REDIS_URL": redis_url, "CLOUDREC_API_BASE_URL": "http://127.0.0.1:1"}
    result = CliRunner().invoke(cli, ["record", "cliprops", "--spec", str(spec)], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result
    if result.exit_code == 0:  # it worked: the job is whole, its deadline set
        job_id = result.stdout.strip().splitlines()[-1]
        assert client.exists(f"cloudrec:job:{job_id}")
        assert client.zscore(DUE_KEY, f"stop:{job_id}") is not None
    else:
        assert result.exit_code in (1, 2), result.output  # refused spec (1), unusable file (2)
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "Traceback" not in result.output, result.output
        assert client.keys("cloudrec:*") == []  # nothing half-made
    client.close()

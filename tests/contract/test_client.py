"""Tier 2: the worker's REST client against the emulator over real HTTP on loopback.

Every answer class of docs/service/errors.md#classification that the emulator can produce is driven
through the client and must come out as the right class of the error tree, with status, code and
request id, and without a secret anywhere in the message or the logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
import urllib3

from config import Settings
from contract.models import (
    AcquireClientRequest,
    LayoutUpdate,
    RecordingConfig,
    RecordingFileConfig,
    StartClientRequest,
    StorageConfig,
    StreamSubscribe,
    UpdateClientRequest,
    file_names,
)
from emulator import EmulatorConfig, serve_in_thread
from tests.support.waiting import wait_for
from worker.client import STOP_429_RESENDS, RecordingApiClient
from worker.devapi import DevApiClient
from worker.errors import (
    AlreadyStarted,
    AlreadyStopping,
    EmptyRecording,
    PermanentApiError,
    RateLimitedByService,
    ReacquireError,
    RetryableApiError,
    TaskConflict,
    TransportError,
    WorkerNotFound,
)
from worker.limiter import Priority

SECRET = "s3cr3t-customer-secret"
STORAGE_SECRET = "storage-secret-key-xyz"
TOKEN = "rtc-token-abc123"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[object]:
    server = serve_in_thread(
        EmulatorConfig(
            port=0,
            storage_dir=tmp_path,
            customer_secret=SECRET,
            startup_seconds=0.5,
            slice_seconds=1.0,
            exit_linger_seconds=2.0,
            resource_ttl_seconds=2.0,
            qps=0,
        )
    )
    yield server
    server.stop()


@pytest.fixture
def client(emulator) -> Iterator[RecordingApiClient]:
    settings = Settings(api_base_url=emulator.base_url, customer_secret=SECRET)
    api = RecordingApiClient(settings)
    yield api
    api.close()


@pytest.fixture
def dev(emulator) -> DevApiClient:
    return DevApiClient(emulator.base_url)


def _start_request(**recording: object) -> StartClientRequest:
    return StartClientRequest(
        token=TOKEN,
        recordingConfig=RecordingConfig.model_validate(
            {"maxIdleTime": 30, "transcodingConfig": {"width": 160, "height": 120}} | recording
        ),
        recordingFileConfig=RecordingFileConfig(avFileType=["hls", "mp4"]),
        storageConfig=StorageConfig(
            vendor=1,
            region=0,
            bucket="b",
            accessKey="ak",
            secretKey=STORAGE_SECRET,
            fileNamePrefix=["x"],
        ),
    )


def _started(client: RecordingApiClient, cname: str = "c1", uid: str = "7") -> tuple[str, str]:
    rid = client.acquire(cname, uid, AcquireClientRequest()).resourceId
    sid = client.start(rid, cname, uid, _start_request()).sid
    return rid, sid


def test_full_lifecycle_with_files(client, dev):
    dev.join("c1", "1", video={"color": "#FF0000"}, audio={"tone": 440})
    rid, sid = _started(client)
    assert len(sid) == 32 and len(rid) > 100

    def running():
        return client.query(rid, sid).serverResponse.status in (4, 5)

    wait_for(running, 10, what="status 4/5")
    client.update(
        rid,
        sid,
        "c1",
        "7",
        UpdateClientRequest(
            streamSubscribe=StreamSubscribe.model_validate(
                {"audioUidList": {"subscribeAudioUids": ["#allstream#"]}}
            )
        ),
    )
    client.update_layout(rid, sid, "c1", "7", LayoutUpdate(mixedVideoLayout=1))
    wait_for(lambda: client.query(rid, sid).serverResponse.fileList, 10, what="first slice")
    stopped = client.stop(rid, sid, "c1", "7")
    assert stopped.serverResponse is not None
    assert stopped.serverResponse.uploadingStatus == "uploaded"
    names = file_names(stopped.serverResponse.fileList)
    assert f"{sid}_c1.m3u8" in names and f"{sid}_c1_0.mp4" in names


def test_repeated_start_is_already_started(client):
    rid = client.acquire("c2", "8", AcquireClientRequest()).resourceId
    client.start(rid, "c2", "8", _start_request())
    with pytest.raises(AlreadyStarted) as info:
        client.start(rid, "c2", "8", _start_request())
    assert (info.value.status, info.value.code) == (201, 7)


def test_same_channel_and_uid_is_a_task_conflict(client):
    _started(client, "c3", "9")
    rid2 = client.acquire("c3", "9", AcquireClientRequest()).resourceId
    with pytest.raises(TaskConflict) as info:
        client.start(rid2, "c3", "9", _start_request())
    assert info.value.code == 53


def test_expired_resource_means_acquire_again(client):
    rid = client.acquire("c4", "10", AcquireClientRequest()).resourceId
    time.sleep(2.2)  # the test emulator's resource TTL is 2 s
    with pytest.raises(ReacquireError) as info:
        client.start(rid, "c4", "10", _start_request())
    assert info.value.code == 433


def test_mismatched_uid_means_acquire_again(client):
    rid = client.acquire("c5", "11", AcquireClientRequest()).resourceId
    with pytest.raises(ReacquireError) as info:
        client.start(rid, "c5", "12", _start_request())
    assert info.value.code == 432


def test_unknown_task_is_worker_not_found(client):
    rid = client.acquire("c6", "13", AcquireClientRequest()).resourceId
    with pytest.raises(WorkerNotFound) as info:
        client.query(rid, "0" * 32)
    assert (info.value.status, info.value.code) == (404, 404)


def test_stop_of_an_empty_recording_then_404(client):
    rid, sid = _started(client, "c7", "14")
    with pytest.raises(EmptyRecording) as info:
        client.stop(rid, sid, "c7", "14")
    assert (info.value.status, info.value.code) == (206, 435)


def test_repeated_stop_is_already_stopping(client, dev):
    dev.join("c8", "1", video={"color": "#00FF00"}, audio=None)
    rid, sid = _started(client, "c8", "15")
    wait_for(lambda: client.query(rid, sid).serverResponse.status in (4, 5), 10)
    client.stop(rid, sid, "c8", "15")
    with pytest.raises(AlreadyStopping) as info:
        client.stop(rid, sid, "c8", "15")
    assert info.value.code == 49


def test_bad_parameter_is_permanent_and_names_the_field(client):
    rid = client.acquire("c9", "16", AcquireClientRequest()).resourceId
    request = _start_request()
    body_with_bad_field = request.model_copy(
        update={"recordingConfig": request.recordingConfig.model_copy(update={"maxIdleTime": 1})}
    )
    with pytest.raises(PermanentApiError) as info:
        client.start(rid, "c9", "16", body_with_bad_field)
    assert info.value.code == 2
    assert "maxIdleTime" in (info.value.reason or "")


def test_wrong_credentials_are_permanent_and_never_echoed(emulator):
    settings = Settings(api_base_url=emulator.base_url, customer_secret="wrong-secret-value")
    api = RecordingApiClient(settings)
    with pytest.raises(PermanentApiError) as info:
        api.acquire("c10", "17", AcquireClientRequest())
    assert info.value.status == 401
    assert "wrong-secret-value" not in str(info.value)


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        ({"status": 206, "code": 65, "reason": "request not completed"}, RetryableApiError),
        ({"status": 500, "code": 62, "reason": "request timeout"}, RetryableApiError),
        ({"status": 504, "code": 62, "reason": "request timeout"}, RetryableApiError),
        ({"status": 429, "message": "API rate limit exceeded"}, RateLimitedByService),
        ({"status": 500, "code": 502, "reason": "Failed to allocate worker"}, ReacquireError),
    ],
)
def test_injected_service_faults_are_classified(client, dev, fault, cls):
    rid = client.acquire("c11", "18", AcquireClientRequest()).resourceId
    dev.set_faults({"errors": [fault | {"operations": ["start"], "count": 1}]})
    with pytest.raises(cls) as info:
        client.start(rid, "c11", "18", _start_request())
    assert info.value.status == fault["status"]
    assert info.value.request_id  # the emulator sends X-Request-Id like the real service
    # The fault was for one call only: the same resource starts now.
    assert client.start(rid, "c11", "18", _start_request()).sid


def test_failover_window_404_then_found_again(client, dev):
    dev.join("c12", "1", video={"color": "#0000FF"}, audio=None)
    rid, sid = _started(client, "c12", "19")
    dev.set_faults({"notFoundSeconds": 1.0})
    with pytest.raises(WorkerNotFound):
        client.query(rid, sid)
    wait_for(lambda: _query_ok(client, rid, sid), 5, what="the task to be found again")


def _query_ok(client: RecordingApiClient, rid: str, sid: str) -> bool:
    try:
        client.query(rid, sid)
    except WorkerNotFound:
        return False
    return True


def test_service_qps_limit_is_a_429(tmp_path):
    server = serve_in_thread(EmulatorConfig(port=0, storage_dir=tmp_path, qps=2))
    try:
        api = RecordingApiClient(Settings(api_base_url=server.base_url))
        with pytest.raises(RateLimitedByService):
            for _ in range(10):
                api.acquire("c13", "20", AcquireClientRequest())
    finally:
        server.stop()


class _SlotLog:
    """The limiter hooks of a client: which slots it took and how many it gave back."""

    def __init__(self) -> None:
        self.taken: list[Priority] = []
        self.refunds = 0

    def take(self, priority: Priority) -> None:
        self.taken.append(priority)

    def refund(self) -> None:
        self.refunds += 1


def _limited_client(emulator, slots: _SlotLog) -> RecordingApiClient:
    settings = Settings(api_base_url=emulator.base_url, customer_secret=SECRET)
    return RecordingApiClient(settings, acquire_slot=slots.take, refund_slot=slots.refund)


def test_a_stop_refused_with_429_is_sent_again_at_once_through_the_limiter(emulator, dev):
    # Stops in a crunch are paced at the budget; a 429 is one arriving a hair early in the
    # service's window. It must go again within the call, not a task retry later.
    dev.join("c13b", "1", video={"color": "#00FF00"}, audio=None)
    slots = _SlotLog()
    api = _limited_client(emulator, slots)
    rid = api.acquire("c13b", "23", AcquireClientRequest()).resourceId
    sid = api.start(rid, "c13b", "23", _start_request()).sid
    wait_for(lambda: api.query(rid, sid).serverResponse.status == 5, 10, what="recording")
    rate_limited = {"status": 429, "message": "API rate limit exceeded"}
    dev.set_faults({"errors": [rate_limited | {"operations": ["stop"], "count": 1}]})
    started = time.monotonic()
    answer = api.stop(rid, sid, "c13b", "23")
    assert answer.sid == sid
    assert time.monotonic() - started < 5
    stops = [p for p in slots.taken if p is Priority.STOP]
    assert stops == [Priority.STOP, Priority.STOP]  # the refused call, then the one answered
    assert slots.refunds == 1  # the refused call's slot was given back


def test_a_stop_refused_with_429_again_and_again_is_left_to_the_task_retry(emulator, dev):
    dev.join("c13c", "1", video={"color": "#00FF00"}, audio=None)
    slots = _SlotLog()
    api = _limited_client(emulator, slots)
    rid = api.acquire("c13c", "24", AcquireClientRequest()).resourceId
    sid = api.start(rid, "c13c", "24", _start_request()).sid
    rate_limited = {"status": 429, "message": "API rate limit exceeded"}
    dev.set_faults({"errors": [rate_limited | {"operations": ["stop"], "count": 100}]})
    with pytest.raises(RateLimitedByService):
        api.stop(rid, sid, "c13c", "24")
    sent = 1 + STOP_429_RESENDS
    assert [p for p in slots.taken if p is Priority.STOP] == [Priority.STOP] * sent
    assert slots.refunds == sent
    # Other operations are not sent again: their 429 is the task's to back off from.
    dev.set_faults({"errors": [rate_limited | {"operations": ["query"], "count": 1}]})
    with pytest.raises(RateLimitedByService):
        api.query(rid, sid)
    assert slots.taken.count(Priority.QUERY) == 1


def test_no_answer_is_a_transport_error():
    api = RecordingApiClient(Settings(api_base_url="http://127.0.0.1:9", api_connect_timeout=1))
    with pytest.raises(TransportError) as info:
        api.acquire("c14", "21", AcquireClientRequest())
    assert isinstance(info.value.__cause__, urllib3.exceptions.HTTPError)


def test_every_call_takes_a_limiter_slot_with_its_priority(emulator, dev):
    seen: list[Priority] = []
    api = RecordingApiClient(
        Settings(api_base_url=emulator.base_url, customer_secret=SECRET), acquire_slot=seen.append
    )
    rid = api.acquire("c15", "22", AcquireClientRequest()).resourceId
    sid = api.start(rid, "c15", "22", _start_request()).sid
    api.query(rid, sid)
    with pytest.raises(EmptyRecording):
        api.stop(rid, sid, "c15", "22")
    assert seen == [Priority.START, Priority.START, Priority.QUERY, Priority.STOP]


def test_no_secret_in_logs_or_errors(client, dev, caplog):
    caplog.set_level(logging.DEBUG)
    rid, sid = _started(client, "c16", "23")
    with pytest.raises(EmptyRecording) as info:
        client.stop(rid, sid, "c16", "23")
    text = caplog.text + str(info.value) + repr(info.value.as_record())
    for secret in (SECRET, STORAGE_SECRET, TOKEN):
        assert secret not in text
    assert "api start -> 200" in caplog.text  # the calls were logged, just not the secrets


def test_the_connections_read_the_environment_once(monkeypatch, emulator):
    """Proxies and the CA bundle come from the environment when the client is built, for the
    API's host (NO_PROXY honoured), and no request reads the environment again."""
    import requests.utils

    from worker.client import http_pool

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/tmp/bundle.pem")
    remote = http_pool("https://api.sd-rtn.com")
    assert isinstance(remote, urllib3.ProxyManager)
    assert (remote.proxy.host, remote.proxy.port) == ("proxy.example", 3128)
    assert remote.connection_pool_kw["ca_certs"] == "/tmp/bundle.pem"
    local = http_pool(emulator.base_url)
    assert not isinstance(local, urllib3.ProxyManager)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert http_pool(emulator.base_url).connection_pool_kw["ca_certs"] == certifi.where()

    def read(*_args, **_kwargs):
        raise AssertionError("the environment was read again")

    monkeypatch.setattr(requests.utils, "get_environ_proxies", read)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would refuse every call
    api = RecordingApiClient(
        Settings(api_base_url=emulator.base_url, customer_secret=SECRET), http=local
    )
    assert api.acquire("c17", "24", AcquireClientRequest()).resourceId

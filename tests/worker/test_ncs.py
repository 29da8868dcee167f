"""The NCS receiver (``cloudrec ncs``) and its ledger, over real HTTP and a real Redis: signature
checks, body bound, deduplication (noticeId and sequence), reordering, and the emulator's
notifications arriving through it, duplicated, delayed and lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from config import Settings
from contract.ncs import signatures
from emulator import serve_in_thread
from emulator.server import EmulatorServer
from tests.support.emulator import STEP_EMULATOR
from tests.support.waiting import wait_for
from worker.devapi import DevApiClient
from worker.metrics import NCS_EVENTS, NCS_REJECTED
from worker.ncs import Envelope, NcsLedger, rec_key
from worker.ncs_receiver import ReceiverThread, build_app

SECRET = "ncs-test-secret"


@pytest.fixture
def receiver(redis_url: str) -> Iterator[ReceiverThread]:
    server = ReceiverThread(Settings(redis_url=redis_url, ncs_secret=SECRET, ncs_max_body=4096))
    yield server
    server.stop()


@pytest.fixture
def ledger(redis_client: redis.Redis) -> NcsLedger:
    return NcsLedger(redis_client)


def envelope(
    event_type: int,
    sid: str,
    sequence: int,
    *,
    cname: str = "room",
    uid: str = "900",
    notice: str | None = None,
    sendts: int | None = None,
    **details: Any,
) -> dict[str, Any]:
    ts = sendts if sendts is not None else int(time.time() * 1000)
    return {
        "noticeId": notice or uuid.uuid4().hex,
        "productId": 3,
        "eventType": event_type,
        "notifyMs": ts,
        "payload": {
            "cname": cname,
            "uid": uid,
            "sid": sid,
            "sequence": sequence,
            "sendts": ts,
            "serviceType": 0,
            "details": details,
        },
    }


def post(url: str, data: Any, secret: str | None = SECRET, **headers: str) -> requests.Response:
    body = json.dumps(data).encode()
    signed = signatures(body, secret) if secret is not None else {}
    return requests.post(
        url, data=body, headers={"Content-Type": "application/json", **signed, **headers}, timeout=5
    )


def counters(client: redis.Redis, key: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(key).items()}


def test_unsigned_and_wrongly_signed_posts_are_refused(
    receiver: ReceiverThread, ledger: NcsLedger, redis_client: redis.Redis
) -> None:
    event = envelope(40, "a" * 32, 0, status=0)
    unsigned = post(receiver.url, event, secret=None)
    wrong_key = post(receiver.url, event, secret="not-the-secret")
    body = json.dumps(event).encode()
    good = signatures(body, SECRET)
    v1_wrong = requests.post(
        receiver.url,
        data=body,
        headers={**good, "Agora-Signature": signatures(body, "other")["Agora-Signature"]},
        timeout=5,
    )
    assert [r.status_code for r in (unsigned, wrong_key, v1_wrong)] == [401, 401, 401]
    assert unsigned.json()["error"] == "unsigned"
    assert ledger.get("a" * 32) is None
    assert counters(redis_client, NCS_REJECTED) == {"unsigned": 1, "bad_signature": 2}
    # Either header alone is enough when it is right: V2 only, then V1 only.
    only_v2 = requests.post(
        receiver.url, data=body, headers={"Agora-Signature-V2": good["Agora-Signature-V2"]}
    )
    assert only_v2.status_code == 200 and only_v2.json() == {"ok": True, "duplicate": False}
    assert ledger.get("a" * 32) is not None


def test_body_is_bounded_and_must_be_an_envelope(receiver: ReceiverThread) -> None:
    huge = envelope(31, "b" * 32, 0, fileList=[{"fileName": "x" * 5000}])
    assert post(receiver.url, huge).status_code == 413
    no_sid = envelope(40, "c" * 32, 0)
    del no_sid["payload"]["sid"]
    answer = post(receiver.url, no_sid)
    assert answer.status_code == 400 and "payload.sid" in answer.json()["error"]
    other_product = envelope(40, "d" * 32, 0) | {"productId": 1}
    assert post(receiver.url, other_product).json()["ok"] is True


def test_duplicates_counted_once_and_order_does_not_matter(
    receiver: ReceiverThread, ledger: NcsLedger, redis_client: redis.Redis
) -> None:
    sid = "e" * 32
    files = [{"fileName": f"{sid}_room.m3u8"}, {"fileName": f"{sid}_room_0.mp4"}]
    # The end arrives first, the start last; one resend (same noticeId) and one redundant copy
    # (new noticeId, same sequence).
    exit_event = envelope(11, sid, 5, exitStatus=0)
    uploaded = envelope(31, sid, 4, status=0, fileList=files)
    events = [
        exit_event,
        uploaded,
        envelope(41, sid, 3, leaveCode=4),
        uploaded | {"notifyMs": 1},
        envelope(31, sid, 4, status=0, fileList=files),
        envelope(40, sid, 1, status=0),
        envelope(30, sid, 0, status=0),
    ]
    responses = [post(receiver.url, e) for e in events]
    assert [r.json()["duplicate"] for r in responses] == [
        False,
        False,
        False,
        True,
        True,
        False,
        False,
    ]
    # NCS wants its answer within 10 s; storing an event takes one Redis round trip.
    assert max(r.elapsed.total_seconds() for r in responses) < 1.0
    rec = ledger.get(sid)
    assert rec is not None
    assert rec.types == {11, 31, 41, 40, 30}
    assert rec.finished and rec.idle_exit and rec.started
    assert (rec.exit_status, rec.upload_status) == (0, "uploaded")
    assert rec.file_names == [f"{sid}_room.m3u8", f"{sid}_room_0.mp4"]
    assert [e["t"] for e in ledger.events(sid)] == [11, 31, 41, 40, 30]
    assert counters(redis_client, NCS_EVENTS)["31|duplicate"] == 2
    assert ledger.find_sid("room", "900", time.time() - 5) == sid


def test_failover_uids_and_claims(receiver: ReceiverThread, ledger: NcsLedger) -> None:
    sid = "f" * 32
    old = time.time() - 120
    post(receiver.url, envelope(30, sid, 0, sendts=int(old * 1000), status=0))
    post(receiver.url, envelope(12, sid, 7, newUid=4242))
    post(receiver.url, envelope(12, sid, 7, newUid=4242))  # redundant copy
    post(receiver.url, envelope(12, sid, 9, uid="4242", newUid=777))
    rec = ledger.get(sid)
    assert rec is not None and rec.new_uids == ["4242", "777"]
    assert [r.sid for r in ledger.unclaimed()] == [sid]
    assert ledger.find_sid("room", "900", old, job_id="job-1") == sid
    ledger.claim(sid, "job-1")
    assert ledger.unclaimed() == []
    assert ledger.find_sid("room", "900", old, job_id="job-2") is None  # held by job-1
    assert ledger.find_sid("room", "900", time.time() + 60) is None  # began before that


def test_receiver_refuses_to_start_without_secret(redis_url: str) -> None:
    with pytest.raises(ValueError, match="CLOUDREC_NCS_SECRET"):
        build_app(Settings(redis_url=redis_url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDREC_")}
    env["CLOUDREC_REDIS_URL"] = redis_url
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "ncs", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "CLOUDREC_NCS_SECRET" in done.stderr


def test_unclaimed_command_lists_what_no_job_holds(
    receiver: ReceiverThread, redis_url: str
) -> None:
    sid = "9" * 32
    post(receiver.url, envelope(40, sid, 0, sendts=int((time.time() - 300) * 1000), status=0))
    post(receiver.url, envelope(40, "8" * 32, 0, status=0))  # too new to call unclaimed yet
    env = {**os.environ, "CLOUDREC_REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "ncs", "unclaimed", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [r["sid"] for r in listed] == [sid]
    assert listed[0]["events"] == [40] and listed[0]["cname"] == "room"


# -- the emulator posting through the receiver -------------------------------------------------
@pytest.fixture
def noisy_emulator(receiver: ReceiverThread, tmp_path: Path) -> Iterator[EmulatorServer]:
    config = replace(
        STEP_EMULATOR, storage_dir=tmp_path / "storage", ncs_url=receiver.url, ncs_secret=SECRET
    )
    server = serve_in_thread(config)
    yield server
    server.stop()


def test_emulator_events_reach_the_ledger_duplicated_and_reordered(
    noisy_emulator: EmulatorServer, ledger: NcsLedger, redis_client: redis.Redis
) -> None:
    from tests.support.emulator import start_request

    dev = DevApiClient(noisy_emulator.base_url)
    dev.set_faults({"ncsDuplicateRate": 1, "ncsDelayRate": 0.5, "ncsDelaySeconds": 0.5, "seed": 3})
    api = _Api(noisy_emulator.base_url)
    dev.join("room", "1", video={"color": "#00FF00"}, audio={"tone": 440})
    rid, sid = api.start("room", "100", start_request(files=["hls", "mp4"]))
    time.sleep(2.5)
    stopped = api.stop(rid, sid, "room", "100").json()["serverResponse"]
    sent = [e["eventType"] for e in dev.events(sid)]
    rec = wait_for(
        lambda: (r := ledger.get(sid)) and r.finished and len(r.types) == len(set(sent)) and r,
        15,
        what="every event type in the ledger",
    )
    assert rec.upload_status == stopped["uploadingStatus"]
    assert rec.file_names == [f["fileName"] for f in stopped["fileList"]]
    assert rec.leave_code == 16 and not rec.idle_exit
    wait_for(lambda: noisy_emulator.service.events.delivery()["pending"] == 0, 15)  # type: ignore[attr-defined]
    delivery = noisy_emulator.service.events.delivery()  # type: ignore[attr-defined]
    assert delivery["duplicates"] == len(sent) and delivery["delayed"] > 0
    stored = counters(redis_client, NCS_EVENTS)
    assert sum(v for k, v in stored.items() if k.endswith("|stored")) == len(sent)
    assert sum(v for k, v in stored.items() if k.endswith("|duplicate")) == len(sent)
    dev.close()


def test_lost_events_are_lost_not_invented(
    noisy_emulator: EmulatorServer, ledger: NcsLedger
) -> None:
    from tests.support.emulator import start_request

    dev = DevApiClient(noisy_emulator.base_url)
    dev.set_faults({"ncsDropRate": 1})
    api = _Api(noisy_emulator.base_url)
    rid, sid = api.start("room2", "100", start_request())
    api.stop(rid, sid, "room2", "100")
    assert dev.events(sid)  # the emulator emitted them; none was posted
    time.sleep(0.5)
    assert ledger.get(sid) is None
    assert noisy_emulator.service.events.delivery()["dropped"] == len(dev.events(sid))  # type: ignore[attr-defined]
    dev.close()


class _Api:
    """The REST calls these tests make, with the emulator's default credentials."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.auth = ("demo", "demo-secret")

    def _post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(
            f"{self.base}/v1/apps/demo-app/cloud_recording/{path}",
            json=body,
            auth=self.auth,
            timeout=10,
        )

    def start(self, cname: str, uid: str, client_request: dict[str, Any]) -> tuple[str, str]:
        rid = self._post("acquire", {"cname": cname, "uid": uid, "clientRequest": {}}).json()[
            "resourceId"
        ]
        answer = self._post(
            f"resourceid/{rid}/mode/mix/start",
            {"cname": cname, "uid": uid, "clientRequest": client_request},
        )
        assert answer.status_code == 200, answer.text
        return rid, answer.json()["sid"]

    def stop(self, rid: str, sid: str, cname: str, uid: str) -> requests.Response:
        return self._post(
            f"resourceid/{rid}/sid/{sid}/mode/mix/stop",
            {"cname": cname, "uid": uid, "clientRequest": {}},
        )


def test_a_ledger_with_no_receiver_keeps_no_key_for_an_unheard_recording(
    redis_client: redis.Redis,
) -> None:
    quiet = NcsLedger(redis_client, receiving=False)
    quiet.claim("never-heard", "job-1")
    assert quiet.get("never-heard") is None
    assert not redis_client.exists(rec_key("never-heard"))
    # A recording something was heard of is claimed all the same.
    quiet.record(Envelope.parse(envelope(40, "heard", 1, status=0)))
    quiet.claim("heard", "job-2")
    heard = quiet.get("heard")
    assert heard is not None and heard.job_id == "job-2"
    assert quiet.unclaimed() == []

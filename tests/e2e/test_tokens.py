"""Tier 3, real processes: tokens minted for the recorder (worker.tokens) against an emulator
that checks them (``cloudrec emulator --app-certificate``, emulator.tokens), in real-service
mode (``CLOUDREC_DEV_API=false``), driven through ``cloudrec record --wait`` as a user does.

- A worker with the certificate records a job whose first start meets a recorder holding its
  uid (53): the restart acquires again with another uid and mints a token for that uid, which
  the emulator lets join; the recording, longer than the token margin by far, runs to its
  deadline (a token that ended sooner would drop it: 109) and the job completes with its MP4.
  No token is in the status output, the logs or Redis.
- A worker without the certificate, with no token, against that emulator: the start is
  accepted, the recorder cannot join (event 1, 110), the job ends failed saying why.
"""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from contract.tokens import build_rtc_token
from tests.support.emulator import Api, start_request
from tests.support.mediacheck import probe
from tests.support.ports import free_port
from tests.support.processes import (
    cloudrec_env,
    processes,
    run_cli,
    spawn,
    start_beat_process,
    start_worker_process,
    wait_http,
)
from tests.support.redis_db import every_value
from worker.devapi import DevApiClient

pytestmark = pytest.mark.e2e

APP_ID = "970ca35de60c44645bbae8a215061b33"
CERT = "5cfd2fd1755d40ecb72977518be15d3b"
DURATION = 12
MARGIN = 1  # the token ends one second after the deadline: any shortfall would show


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[SimpleNamespace]:
    """``cloudrec emulator --app-certificate`` as a process, and a way to start cloudrec."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    storage = tmp_path / "storage"
    with processes() as procs:
        emulator_argv = [
            "emulator", "--port", str(port), "--storage-dir", str(storage), "--qps", "0",
            "--slice-seconds", "2", "--app-certificate", CERT,
        ]  # fmt: skip
        procs.append(spawn("emulator", emulator_argv, cloudrec_env(redis_url, base), log_dir))
        wait_http(f"{base}/dev/faults")

        def start(**extra: str) -> dict[str, str]:
            env = cloudrec_env(redis_url, base, CLOUDREC_DEV_API="false", **extra)
            procs.append(start_worker_process(env, log_dir))
            procs.append(start_beat_process(env, log_dir))
            return env

        yield SimpleNamespace(
            base=base, start=start, dev=DevApiClient(base), storage=storage, procs=procs
        )


def _publish(dev: DevApiClient, cname: str) -> None:
    dev.join(cname, "1", video={"color": "#00FF00"}, audio={"tone": 440})


def _record(env: dict[str, str], cname: str, job_id: str, *extra: str) -> Any:
    argv = [
        "record", cname, "--job-id", job_id, "--duration", str(DURATION), "--size", "160x120",
        "--fps", "10", "--bitrate", "200", "--files", "hls,mp4", "--wait", *extra,
    ]  # fmt: skip
    return run_cli(argv, env, timeout=180)


def _status(env: dict[str, str], job_id: str) -> tuple[str, dict[str, Any]]:
    done = run_cli(["status", job_id, "--json"], env)
    return done.stdout, json.loads(done.stdout)


def _row(dev: DevApiClient, sid: str) -> dict[str, Any]:
    (row,) = [r for r in dev.recordings() if r["sid"] == sid]
    return dict(row)


def _unix(iso: str) -> float:
    return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))


def test_a_worker_with_the_certificate_records_through_a_restart(
    world: SimpleNamespace, redis_url: str
) -> None:
    env = world.start(
        CLOUDREC_APP_ID=APP_ID, CLOUDREC_APP_CERTIFICATE=CERT, CLOUDREC_TOKEN_MARGIN=str(MARGIN)
    )
    cname, squatter_uid = "minted", "424242"
    _publish(world.dev, cname)
    # Another recorder holds (channel, uid) with its own valid token: the job's start gets 53.
    api = Api(SimpleNamespace(base_url=world.base), appid=APP_ID)  # type: ignore[arg-type]
    squatter = start_request(max_idle=5) | {
        "token": build_rtc_token(APP_ID, CERT, cname, squatter_uid, lifetime=600)
    }
    rid = api.acquire(cname, squatter_uid)
    assert api.start_raw(rid, cname, squatter_uid, squatter).status_code == 200

    done = _record(env, cname, "minted-job", "--uid", squatter_uid)
    out, status = _status(env, "minted-job")
    assert done.returncode == 0, done.stdout + done.stderr + out
    assert status["state"] == "completed"
    assert status["uid"] != squatter_uid  # restarted with another uid
    row = _row(world.dev, status["sid"])
    token = row["token"]
    assert token["accepted"] and token["uid"] == status["uid"]  # minted for the new uid
    # valid through the end: the deadline plus the margin, and the recorder stayed until stop
    stop_at = _unix(status["stop_at"])
    assert stop_at + MARGIN - 1 <= _unix(token["validUntil"]) <= stop_at + MARGIN + 2
    assert row["exitReason"] == "stop" and row["error"] is None
    assert not [e for e in world.dev.events(status["sid"]) if e["eventType"] == 1]
    (mp4,) = [f for f in status["files"] if f["fileName"].endswith(".mp4")]
    facts = probe(world.storage / "recordings" / mp4["key"])
    assert facts.duration >= DURATION - 4, facts  # recorded to the deadline, not dropped
    # the token is nowhere a user or an onlooker can read
    readable = [out, done.stdout, done.stderr] + [p.output() for p in world.procs]
    readable.append(repr(every_value(redis_url)))
    assert not [text for text in readable if "007eJ" in text or CERT in text]


def test_a_worker_without_the_certificate_or_a_token_fails_with_the_real_error(
    world: SimpleNamespace,
) -> None:
    env = world.start()
    _publish(world.dev, "bare")
    done = _record(env, "bare", "bare-job")
    out, status = _status(env, "bare-job")
    assert done.returncode == 12, done.stdout + done.stderr + out  # ended failed
    assert status["state"] == "failed"
    reason = status["error"]["reason"]
    assert "recorder exited (status 20)" in reason or "never started" in reason, reason
    assert "no RTC token" in reason and "CLOUDREC_APP_CERTIFICATE" in reason
    (error,) = [e for e in world.dev.events(status["sid"]) if e["eventType"] == 1]
    assert error["payload"]["details"]["errorCode"] == 110  # what NCS would tell
    assert _row(world.dev, status["sid"])["token"]["errorCode"] == 110


def test_the_emulator_takes_the_certificate_from_the_environment(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = cloudrec_env(redis_url, base, CLOUDREC_APP_ID=APP_ID, CLOUDREC_APP_CERTIFICATE=CERT)
    argv = ["emulator", "--port", str(port), "--storage-dir", str(tmp_path / "s"), "--qps", "0"]
    with processes() as procs:
        procs.append(spawn("emulator", argv, env, tmp_path))
        wait_http(f"{base}/dev/faults")
        api = Api(SimpleNamespace(base_url=base), appid=APP_ID)  # type: ignore[arg-type]
        rid = api.acquire("envcert", "100")
        sid = api.start_raw(rid, "envcert", "100", start_request()).json()["sid"]  # no token
        assert api.wait_exited(sid)["token"]["errorCode"] == 110
        good = start_request() | {
            "token": build_rtc_token(APP_ID, CERT, "envcert", 101, lifetime=60)
        }
        rid = api.acquire("envcert", "101")
        sid = api.start_raw(rid, "envcert", "101", good).json()["sid"]
        assert api.recording(sid)["token"]["accepted"]
        assert CERT not in procs[0].output()


SCHOOL_ID = "0123456789abcdef0123456789abcdef"
SCHOOL_CERT = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"


def test_the_emulator_checks_each_app_id_with_its_own_certificate(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = cloudrec_env(redis_url, base)
    argv = [
        "emulator", "--port", str(port), "--storage-dir", str(tmp_path / "s"), "--qps", "0",
        "--app-certificate", CERT, "--app-certificate", f"{SCHOOL_ID}={SCHOOL_CERT}",
    ]  # fmt: skip
    with processes() as procs:
        procs.append(spawn("emulator", argv, env, tmp_path))
        wait_http(f"{base}/dev/faults")

        def start(app_id: str, cert: str, uid: str) -> dict[str, Any]:
            api = Api(SimpleNamespace(base_url=base), appid=app_id)  # type: ignore[arg-type]
            body = start_request() | {
                "token": build_rtc_token(app_id, cert, "percert", uid, lifetime=60)
            }
            rid = api.acquire("percert", uid)
            sid = api.start_raw(rid, "percert", uid, body).json()["sid"]
            return api.recording(sid)["token"]

        assert start(APP_ID, CERT, "100")["accepted"]  # the default certificate
        assert start(SCHOOL_ID, SCHOOL_CERT, "101")["accepted"]  # the school's own
        assert start(SCHOOL_ID, CERT, "102")["errorCode"] == 110  # another project's
        assert CERT not in procs[0].output() and SCHOOL_CERT not in procs[0].output()

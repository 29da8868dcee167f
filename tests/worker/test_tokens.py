"""The recorder's RTC token (worker.tokens), against an emulator that has the App Certificate.

With ``CLOUDREC_APP_CERTIFICATE`` every start request carries a token minted then: for the job's
channel and current uid, join and publish privileges, valid to the deadline plus the margin
(however long the recording), a fresh one for each start (a restart with another uid gets one
for that uid, and the emulator lets it join). It is never stored. A job's own token is used as it
is (a warning, without the token, when it ends before the deadline). Without a certificate and
without a token, a start against a project that has one fails, and the job says why.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import Settings
from contract.models import AcquireClientRequest
from contract.tokens import ALL_PRIVILEGES, build_rtc_token, parse_token
from emulator.server import EmulatorServer
from tests.support.emulator import STEP_EMULATOR, serving
from tests.support.redis_db import every_value
from tests.support.specs import small_spec
from tests.support.stack import make_settings
from tests.support.waiting import wait_for
from worker import recording
from worker.devapi import DevApiClient
from worker.logs import Redactor, settings_secrets
from worker.ncs import Envelope
from worker.reconcile import reconcile
from worker.recording import Next
from worker.runtime import Runtime
from worker.states import JobState
from worker.tokens import mint_recorder_token

APP_ID = "970ca35de60c44645bbae8a215061b33"
CERT = "5cfd2fd1755d40ecb72977518be15d3b"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    config = replace(STEP_EMULATOR, storage_dir=tmp_path / "storage", app_certificate=CERT)
    with serving(config) as server:
        yield server


def _runtime(redis_url: str, emulator: EmulatorServer, **overrides: object) -> Runtime:
    values: dict[str, object] = {"app_id": APP_ID} | overrides
    return Runtime.build(make_settings(redis_url, emulator.base_url, **values))


@pytest.fixture
def rt(redis_url: str, emulator: EmulatorServer) -> Iterator[Runtime]:
    runtime = _runtime(redis_url, emulator, app_certificate=CERT, token_margin=120)
    yield runtime
    runtime.close()


@pytest.fixture
def bare_rt(redis_url: str, emulator: EmulatorServer) -> Iterator[Runtime]:
    """A worker without the certificate."""
    runtime = _runtime(redis_url, emulator)
    yield runtime
    runtime.close()


def _start_token(rt: Runtime, job_id: str) -> str:
    token = recording.build_start_request(rt, rt.store.get(job_id)).token
    assert token is not None
    return token.get_secret_value()


def test_a_start_carries_a_token_for_its_channel_and_uid_until_the_deadline(rt: Runtime) -> None:
    # Two hours: longer than any builder's default life (Agora's samples use 600 or 3600 s).
    job, _ = recording.submit(rt, small_spec("minted", duration=7200))
    before = time.time()
    token = parse_token(_start_token(rt, job.job_id))
    assert token.signed_by(CERT)
    assert (token.app_id, token.channel, token.uid) == (APP_ID, "minted", job.uid)
    assert sorted(token.privileges) == sorted(int(p) for p in ALL_PRIVILEGES)
    assert abs(token.issue_ts - before) <= 2
    # the deadline plus the margin, to the second: the whole recording and its stop
    assert job.stop_at + 120 <= token.valid_until <= job.stop_at + 122
    assert {token.privilege_expires_at(p) for p in ALL_PRIVILEGES} == {token.expires_at}


def test_a_minted_token_is_never_stored(rt: Runtime) -> None:
    job, _ = recording.submit(rt, small_spec("unstored"))
    token = _start_token(rt, job.job_id)
    assert not job.has_token and rt.vault.get(job.job_id) is None
    assert recording.acquire_step(rt, job.job_id) == Next("start")
    assert recording.start_step(rt, job.job_id).step == "watch"
    dump = b" ".join(every_value(rt.settings.redis_url))
    assert token.encode() not in dump and b"007eJ" not in dump
    status = json.dumps(rt.store.get(job.job_id).status_json())
    assert "007eJ" not in status


def test_every_start_request_mints_afresh(rt: Runtime) -> None:
    job, _ = recording.submit(rt, small_spec("fresh"))
    first, second = _start_token(rt, job.job_id), _start_token(rt, job.job_id)
    assert first != second
    assert parse_token(first).salt != parse_token(second).salt


def test_a_restart_with_another_uid_gets_a_token_for_that_uid(
    rt: Runtime, dev: DevApiClient
) -> None:
    job, _ = recording.submit(rt, small_spec("restart"))
    # Another recorder already holds (channel, uid): the start answers 53 and the job acquires
    # again with another uid (docs/service/behaviour.md#identity).
    squatter = recording.build_start_request(rt, job)
    rid = rt.client.acquire("restart", job.uid, AcquireClientRequest()).resourceId
    rt.client.start(rid, "restart", job.uid, squatter)
    assert recording.acquire_step(rt, job.job_id) == Next("start")
    assert recording.start_step(rt, job.job_id) == Next("acquire")
    moved = rt.store.get(job.job_id)
    assert moved.uid != job.uid and moved.state == JobState.ACQUIRING
    assert recording.acquire_step(rt, job.job_id) == Next("start")
    assert recording.start_step(rt, job.job_id).step == "watch"
    sid = rt.store.get(job.job_id).sid
    (row,) = [r for r in dev.recordings() if r["sid"] == sid]
    assert row["uid"] == moved.uid
    assert row["token"]["accepted"] and row["token"]["uid"] == moved.uid
    wait_for(lambda: recording.watch_step(rt, job.job_id) == recording.DONE, 10)
    assert rt.store.get(job.job_id).state == JobState.RECORDING


def test_a_jobs_own_token_is_used_and_a_short_one_is_warned_of(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    own = build_rtc_token(APP_ID, CERT, "own", 0, lifetime=30)
    job, _ = recording.submit(rt, small_spec("own", duration=600, token=own))
    assert job.has_token
    with caplog.at_level(logging.WARNING, logger="cloudrec.tokens"):
        assert _start_token(rt, job.job_id) == own
    (warning,) = [r for r in caplog.records if r.name == "cloudrec.tokens"]
    assert "before the job's deadline" in warning.getMessage()
    assert own not in warning.getMessage()


def test_a_jobs_own_token_that_lasts_is_used_without_a_word(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    own = build_rtc_token(APP_ID, CERT, "lasting", 0, lifetime=3600)
    job, _ = recording.submit(rt, small_spec("lasting", duration=600, token=own))
    with caplog.at_level(logging.WARNING, logger="cloudrec.tokens"):
        assert _start_token(rt, job.job_id) == own
    assert not [r for r in caplog.records if r.name == "cloudrec.tokens"]


def test_without_a_certificate_a_start_carries_no_token(bare_rt: Runtime) -> None:
    job, _ = recording.submit(bare_rt, small_spec("bare"))
    assert recording.build_start_request(bare_rt, job).token is None


def _failed_start_error(rt: Runtime, dev: DevApiClient, cname: str) -> dict[str, object]:
    job, _ = recording.submit(rt, small_spec(cname))
    assert recording.acquire_step(rt, job.job_id) == Next("start")
    assert recording.start_step(rt, job.job_id).step == "watch"  # accepted: 200 and a sid
    sid = rt.store.get(job.job_id).sid
    wait_for(lambda: next(r for r in dev.recordings() if r["sid"] == sid)["status"] == 20, 10)
    return {"job_id": job.job_id, "sid": sid}


def test_no_token_for_a_project_with_a_certificate_fails_the_start_and_says_why(
    bare_rt: Runtime, dev: DevApiClient
) -> None:
    ids = _failed_start_error(bare_rt, dev, "nocert")
    assert recording.watch_step(bare_rt, str(ids["job_id"])) == Next("stop")
    error = bare_rt.store.get(str(ids["job_id"])).error
    assert error is not None
    assert "recorder exited (status 20)" in error["reason"]
    assert "no RTC token" in error["reason"] and "CLOUDREC_APP_CERTIFICATE" in error["reason"]


def test_the_services_error_code_reaches_the_job_when_ncs_told_it(
    bare_rt: Runtime, dev: DevApiClient
) -> None:
    ids = _failed_start_error(bare_rt, dev, "told")
    for event in dev.events(str(ids["sid"])):  # what NCS would have posted to `cloudrec ncs`
        bare_rt.ncs.record(Envelope.parse(event))
    assert recording.watch_step(bare_rt, str(ids["job_id"])) == Next("stop")
    error = bare_rt.store.get(str(ids["job_id"])).error
    assert error is not None and error["code"] == 110
    assert "RTC token invalid (110)" in error["reason"]


# -- settings, redaction -------------------------------------------------------------------------
def test_the_certificate_must_be_32_hex_characters_and_is_never_echoed() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(app_id=APP_ID, app_certificate="not-a-certificate-zzzz")
    text = str(caught.value)
    assert "app_certificate" in text and "32 hexadecimal" in text
    assert "not-a-certificate-zzzz" not in text


def test_minting_needs_the_real_app_id() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(app_id="demo-app", app_certificate=CERT)
    text = str(caught.value)
    assert "CLOUDREC_APP_ID" in text and CERT not in text
    assert Settings(app_certificate="").app_certificate is None  # set empty: none


def test_logs_redact_the_certificate_and_any_rtc_token() -> None:
    settings = Settings(app_id=APP_ID, app_certificate=CERT)
    token = mint_recorder_token(APP_ID, CERT, "c", "1", valid_until=time.time() + 60)
    redact = Redactor(settings_secrets(settings))
    line = redact(f"cert={CERT} token={token.get_secret_value()} end")
    assert line == "cert=*** token=*** end"
    assert CERT not in repr(settings)


def test_a_token_lasts_at_most_24_hours(caplog: pytest.LogCaptureFixture) -> None:
    now = 1_800_000_000.0
    with caplog.at_level(logging.WARNING, logger="cloudrec.tokens"):
        token = mint_recorder_token(APP_ID, CERT, "long", "7", valid_until=now + 30 * 3600, now=now)
    assert parse_token(token.get_secret_value()).expire == 24 * 3600
    assert "at most 86400 s" in caplog.text


def test_a_minted_token_the_service_refuses_says_what_to_check(
    redis_url: str, emulator: EmulatorServer, dev: DevApiClient
) -> None:
    wrong = _runtime(redis_url, emulator, app_certificate="0" * 32)  # not the project's
    try:
        ids = _failed_start_error(wrong, dev, "wrongcert")
        assert next(r for r in dev.recordings() if r["sid"] == ids["sid"])["token"]["reason"] == (
            "signature does not match the App Certificate"
        )
        assert recording.watch_step(wrong, str(ids["job_id"])) == Next("stop")
        error = wrong.store.get(str(ids["job_id"])).error
        assert error is not None and "CLOUDREC_APP_CERTIFICATE are the project's" in error["reason"]
    finally:
        wrong.close()


def test_a_callers_short_token_drops_the_recorder_and_the_job_ends_failed_saying_so(
    redis_url: str, emulator: EmulatorServer, dev: DevApiClient
) -> None:
    # What minting prevents: a caller's token that ends mid-recording (4 s into a 60 s job).
    rt = _runtime(redis_url, emulator, dev_api=False)
    try:
        dev.join("short", "1", video={"color": "#00FF00"}, audio={"tone": 440})
        own = build_rtc_token(APP_ID, CERT, "short", 0, lifetime=4)
        job, _ = recording.submit(rt, small_spec("short", duration=60, token=own))
        recording.acquire_step(rt, job.job_id)
        assert recording.start_step(rt, job.job_id).step == "watch"
        sid = rt.store.get(job.job_id).sid
        wait_for(lambda: recording.watch_step(rt, job.job_id) == recording.DONE, 10)
        assert rt.store.get(job.job_id).state == JobState.RECORDING
        row = wait_for(
            lambda: next(r for r in dev.recordings() if r["sid"] == sid)["status"] == 20, 15
        )
        assert row
        for event in dev.events(sid):  # what NCS posts to `cloudrec ncs`
            rt.ncs.record(Envelope.parse(event))
        reconcile(rt)
        ended = rt.store.get(job.job_id)
        assert ended.state == JobState.FAILED and ended.error is not None
        assert "error 109" in ended.error["reason"] and "token expired" in ended.error["reason"]
    finally:
        rt.close()

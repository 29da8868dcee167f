"""Each app's own App Certificate (``CLOUDREC_APPS__<NAME>__APP_CERTIFICATE``; the app
"default"'s is ``CLOUDREC_APP_CERTIFICATE``): validated like the default's, redacted from logs,
and the recorder's token of a job is minted with its app's App ID and certificate, which the
emulator (checking each App ID with its own certificate) lets join."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import Settings
from contract.tokens import parse_token
from emulator import EmulatorServer
from emulator.config import EmulatorApp
from tests.support.emulator import STEP_EMULATOR, serving
from tests.support.specs import small_spec
from tests.support.stack import make_settings
from worker import recording
from worker.devapi import DevApiClient
from worker.logs import Redactor, settings_secrets
from worker.recording import Next
from worker.runtime import Runtime

APP_ID = "970ca35de60c44645bbae8a215061b33"
CERT = "5cfd2fd1755d40ecb72977518be15d3b"
SCHOOL_ID = "0123456789abcdef0123456789abcdef"
SCHOOL_CERT = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"
SCHOOL = EmulatorApp(SCHOOL_ID, "school-customer", "school-customer-secret", qps=0)


def school_profile(**extra: object) -> dict[str, object]:
    return {
        "app_id": SCHOOL.app_id,
        "customer_id": SCHOOL.customer_id,
        "customer_secret": SCHOOL.customer_secret,
    } | extra


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    config = replace(
        STEP_EMULATOR,
        storage_dir=tmp_path / "storage",
        apps=(SCHOOL,),
        app_certificate=CERT,
        app_certificates=((SCHOOL_ID, SCHOOL_CERT),),
    )
    with serving(config) as server:
        yield server


@pytest.fixture
def rt(redis_url: str, emulator: EmulatorServer) -> Iterator[Runtime]:
    settings = make_settings(
        redis_url,
        emulator.base_url,
        app_id=APP_ID,
        app_certificate=CERT,
        apps={"school": school_profile(app_certificate=SCHOOL_CERT)},
    )
    runtime = Runtime.build(settings)
    yield runtime
    runtime.close()


def test_each_apps_job_is_minted_with_its_apps_id_and_certificate_and_joins(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    jobs = {
        "default": recording.submit(rt, small_spec("cert-default"))[0],
        "school": recording.submit(rt, small_spec("cert-school", app="school"))[0],
    }
    own = {"default": (APP_ID, CERT), "school": (SCHOOL_ID, SCHOOL_CERT)}
    for app, job in jobs.items():
        request = recording.build_start_request(rt, rt.store.get(job.job_id))
        assert request.token is not None
        token = parse_token(request.token.get_secret_value())
        app_id, cert = own[app]
        assert (token.app_id, token.channel, token.uid) == (app_id, job.cname, job.uid)
        assert token.signed_by(cert)
        assert not token.signed_by(own["school" if app == "default" else "default"][1])
        # Started for real: the emulator checks each App ID's token with its certificate.
        assert recording.acquire_step(rt, job.job_id) == Next("start")
        assert recording.start_step(rt, job.job_id).step == "watch"
    dev = DevApiClient(emulator.base_url)
    rows = {r["cname"]: r for r in dev.recordings()}
    dev.close()
    for app, job in jobs.items():
        row = rows[job.cname]
        assert row["appId"] == own[app][0]
        assert row["token"]["accepted"], row["token"]


def test_an_app_without_a_certificate_mints_nothing_even_if_the_default_has_one(
    redis_url: str,
) -> None:
    settings = make_settings(
        redis_url, "http://127.0.0.1:9", app_id=APP_ID, app_certificate=CERT,
        apps={"school": school_profile()},
    )  # fmt: skip
    rt = Runtime.build(settings)
    try:
        job, _ = recording.submit(rt, small_spec("cert-none", app="school"))
        assert recording.build_start_request(rt, rt.store.get(job.job_id)).token is None
    finally:
        rt.close()


@pytest.mark.parametrize(
    ("profile", "field", "rule"),
    [
        (school_profile(app_certificate="not-hex-" * 4), "apps.school.app_certificate", "32 hex"),
        (
            school_profile(app_id="school-app-id", app_certificate=SCHOOL_CERT),
            "apps.school",
            "APP_ID must be the project's App ID, 32 hexadecimal characters",
        ),
    ],
)
def test_an_apps_certificate_is_validated_like_the_defaults(
    profile: dict[str, object], field: str, rule: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(apps={"school": profile})
    text = str(caught.value)
    assert field in text and rule in text
    assert "not-hex-" not in text and SCHOOL_CERT not in text  # never echoed


def test_an_apps_certificate_from_the_environment_is_redacted_from_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for field, value in school_profile(app_certificate=SCHOOL_CERT).items():
        monkeypatch.setenv(f"CLOUDREC_APPS__SCHOOL__{field.upper()}", str(value))
    settings = Settings()
    profile = settings.app_profile("school")
    assert profile.app_certificate is not None
    assert profile.app_certificate.get_secret_value() == SCHOOL_CERT
    assert SCHOOL_CERT not in repr(settings)
    redact = Redactor(settings_secrets(settings))
    assert SCHOOL_CERT not in redact(f"minting with {SCHOOL_CERT}")

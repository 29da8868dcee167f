"""The emulator serving several App IDs (own credentials, own QPS bucket each; today's flags
unchanged), and the NCS receiver telling the apps' notifications apart by their secrets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import requests
from click.testing import CliRunner

from config import Settings
from emulator import EmulatorServer
from emulator.config import EmulatorApp, EmulatorConfig
from tests.support.emulator import FAST, serving
from tests.support.ports import free_port
from tests.support.processes import processes, spawn, wait_http
from tests.worker.test_ncs import envelope, post
from worker.cli import cli
from worker.metrics import NCS_EVENTS, NCS_REJECTED
from worker.ncs_receiver import ReceiverThread

SCHOOL = EmulatorApp("school-app", "school-customer", "school-secret", qps=3)
CLINIC = EmulatorApp("clinic-app", "clinic-customer", "clinic-secret", qps=0)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    # Any other App ID: the default credentials (demo/demo-secret) and --qps 2.
    with serving(replace(FAST, qps=2, apps=(SCHOOL, CLINIC))) as server:
        yield server


def acquire(base: str, app_id: str, auth: tuple[str, str]) -> requests.Response:
    return requests.post(
        f"{base}/v1/apps/{app_id}/cloud_recording/acquire",
        json={"cname": "room", "uid": "1", "clientRequest": {}},
        auth=auth,
        timeout=10,
    )


SCHOOL_AUTH = ("school-customer", "school-secret")
CLINIC_AUTH = ("clinic-customer", "clinic-secret")
DEFAULT_AUTH = ("demo", "demo-secret")


def codes(base: str, app_id: str, auth: tuple[str, str], times: int = 1) -> list[int]:
    return [acquire(base, app_id, auth).status_code for _ in range(times)]


def test_each_app_id_takes_its_own_credentials(emulator: EmulatorServer) -> None:
    base = emulator.base_url
    assert codes(base, "school-app", SCHOOL_AUTH) == [200]
    assert codes(base, "clinic-app", CLINIC_AUTH) == [200]
    assert codes(base, "other-app", DEFAULT_AUTH) == [200]
    # Another app's credentials (or the default ones) do not open an App ID that has its own.
    assert codes(base, "school-app", CLINIC_AUTH) == [401]
    assert codes(base, "school-app", DEFAULT_AUTH) == [401]
    assert codes(base, "other-app", SCHOOL_AUTH) == [401]


def test_each_app_id_has_its_own_rate_limit(emulator: EmulatorServer) -> None:
    base = emulator.base_url
    school = codes(base, "school-app", SCHOOL_AUTH, 5)
    clinic = codes(base, "clinic-app", CLINIC_AUTH, 8)
    other = codes(base, "other-app", DEFAULT_AUTH, 3)
    # All within about a second: school's 3/s, the default 2/s; clinic unlimited; the busy
    # buckets never took from the others.
    assert school.count(200) == 3 and school.count(429) == 2, school
    assert clinic == [200] * 8
    assert other.count(200) == 2 and other.count(429) == 1, other


def test_an_allow_list_still_admits_the_apps() -> None:
    config = replace(FAST, app_ids=frozenset({"listed"}), apps=(SCHOOL,))
    with serving(config) as server:
        assert codes(server.base_url, "school-app", SCHOOL_AUTH) == [200]
        assert codes(server.base_url, "listed", DEFAULT_AUTH) == [200]
        assert codes(server.base_url, "unlisted", DEFAULT_AUTH) == [400]


@pytest.mark.parametrize(
    ("text", "app"),
    [
        ("a:b:c", EmulatorApp("a", "b", "c", 10)),
        ("a:b:c:0", EmulatorApp("a", "b", "c", 0)),
        ("a:b:c:25", EmulatorApp("a", "b", "c", 25)),
    ],
)
def test_the_app_option_parses(text: str, app: EmulatorApp) -> None:
    assert EmulatorApp.parse(text) == app


@pytest.mark.parametrize("text", ["a:b", "a::c", "a:b:c:x", "a:b:c:1:2", "a:b:c:-1"])
def test_a_bad_app_option_is_a_usage_error_without_the_secret(text: str) -> None:
    result = CliRunner().invoke(cli, ["emulator", "--port", "0", "--app", text])
    assert result.exit_code == 2, result.output
    assert "--app" in result.output and "APPID:CUSTOMER_ID:SECRET[:QPS]" in result.output


def test_one_app_by_default() -> None:
    config = EmulatorConfig()
    assert config.apps == ()
    assert config.app("anything") == EmulatorApp("anything", "demo", "demo-secret", 10)


# -- NCS: each project signs with its own secret -------------------------------------------------
def test_the_receiver_verifies_each_apps_notifications_with_its_secret(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = Settings(
        redis_url=redis_url,
        ncs_secret="main-ncs-secret",
        apps={
            "school": {
                "app_id": "school-app",
                "customer_id": "c",
                "customer_secret": "s",
                "ncs_secret": "school-ncs-secret",
            },
            "quiet": {"app_id": "quiet-app", "customer_id": "c", "customer_secret": "s2"},
        },
    )
    receiver = ReceiverThread(settings)
    try:
        for n, secret in enumerate(("main-ncs-secret", "school-ncs-secret")):
            answer = post(receiver.url, envelope(40, f"sid-{n}", 0), secret=secret)
            assert answer.status_code == 200, answer.text
        refused = post(receiver.url, envelope(40, "sid-x", 0), secret="someone-elses-secret")
        unsigned = post(receiver.url, envelope(40, "sid-y", 0), secret=None)
    finally:
        receiver.stop()
    assert refused.status_code == 401 and refused.json()["error"] == "bad signature"
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "unsigned"
    rejected = {k.decode(): int(v) for k, v in redis_client.hgetall(NCS_REJECTED).items()}
    assert rejected == {"bad_signature": 1, "unsigned": 1}
    # Each event counted under the app whose secret signed it.
    events = {k.decode(): int(v) for k, v in redis_client.hgetall(NCS_EVENTS).items()}
    assert events == {"40|stored": 1, "40|stored|school": 1}


def test_another_apps_ncs_secret_alone_lets_the_receiver_start(redis_url: str) -> None:
    settings = Settings(
        redis_url=redis_url,
        apps={
            "school": {
                "app_id": "school-app",
                "customer_id": "c",
                "customer_secret": "s",
                "ncs_secret": "school-ncs-secret",
            }
        },
    )
    receiver = ReceiverThread(settings)
    try:
        signed = post(receiver.url, envelope(40, "sid-school", 0), secret="school-ncs-secret")
    finally:
        receiver.stop()
    assert signed.status_code == 200


def test_the_emulator_command_serves_its_apps(tmp_path: Path) -> None:
    port = free_port()
    argv = ["emulator", "--port", str(port), "--storage-dir", str(tmp_path), "--qps", "0"]
    argv += ["--app", "school-app:school-customer:school-secret:1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDREC_")}
    with processes() as procs:
        procs.append(spawn("emulator", argv, env, tmp_path))
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/dev/recordings")
        school = codes(base, "school-app", SCHOOL_AUTH, 2)
        wrong = codes(base, "school-app", DEFAULT_AUTH)
        others = codes(base, "other", DEFAULT_AUTH, 5)
    assert school == [200, 429] and wrong == [401]
    assert others == [200] * 5  # --qps 0 and today's credentials for any other App ID

"""Who may see the page and where it listens, from outside: `cloudrec web` processes asked with a
plain HTTP client (no browser), and the command's refusal to listen beyond loopback without a
password."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from config import Settings
from tests.support.fleet import RedisServer
from tests.support.ports import free_port
from tests.support.processes import Proc, cloudrec_env, run_cli, spawn, wait_http
from tests.support.redis_db import TEST_REDIS_URL
from tests.support.waiting import wait_for
from worker.logs import settings_secrets
from worker.web.access import credentials_match, is_loopback

USER = "viewer"
PASSWORD = "s3cret-page-password"
NO_API = "http://127.0.0.1:9"  # the page reads Redis and storage only: no API call is made
PATHS = (
    "/",
    "/?state=active",
    "/api/jobs",
    "/api/jobs/some-job",
    "/jobs/some-job",
    "/jobs/some-job/files/x.m3u8",
    "/static/app.js",
    "/static/hls.min.js",
    "/static/nothing-here.js",
)


def start_web(tmp_path: Path, **settings: str) -> tuple[Proc, str]:
    port = free_port()
    env = cloudrec_env(TEST_REDIS_URL, NO_API, **settings)
    argv = ["web", "--port", str(port), "--storage-dir", str(tmp_path / "storage")]
    proc = spawn("web", argv, env, tmp_path)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture
def guarded(redis_url: str, tmp_path: Path) -> Iterator[tuple[Proc, str]]:
    proc, url = start_web(tmp_path, CLOUDREC_WEB_USER=USER, CLOUDREC_WEB_PASSWORD=PASSWORD)
    try:
        wait_http(f"{url}/", auth=(USER, PASSWORD))
        yield proc, url
    finally:
        proc.stop()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize("path", PATHS)
def test_every_path_needs_the_credentials(guarded: tuple[Proc, str], path: str) -> None:
    _, url = guarded
    wrong = (
        {},
        basic(USER, "not-it"),
        basic("someone", PASSWORD),
        basic(USER, PASSWORD + "x"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": f"Bearer {PASSWORD}"},
    )
    for headers in wrong:
        answer = requests.get(url + path, headers=headers, timeout=10)
        assert answer.status_code == 401, (path, headers, answer.status_code)
        assert answer.headers["www-authenticate"].startswith('Basic realm="cloudrec"')
        assert PASSWORD not in answer.text


def test_the_credentials_open_the_page(guarded: tuple[Proc, str]) -> None:
    proc, url = guarded
    auth = (USER, PASSWORD)
    page = requests.get(f"{url}/", auth=auth, timeout=10)
    assert page.status_code == 200 and '<table class="jobs">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    listing = requests.get(f"{url}/api/jobs", auth=auth, timeout=10)
    assert listing.status_code == 200 and listing.json()["jobs"] == []
    hls = requests.get(f"{url}/static/hls.min.js", auth=auth, timeout=10)
    assert hls.status_code == 200 and "javascript" in hls.headers["content-type"]
    licence = requests.get(f"{url}/static/hls.min.js.LICENSE", auth=auth, timeout=10)
    assert licence.status_code == 200 and "Apache License" in licence.text
    assert requests.get(f"{url}/jobs/nope", auth=auth, timeout=10).status_code == 404
    assert PASSWORD not in page.text + listing.text + proc.output()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.org"])
@pytest.mark.parametrize("password", [None, ""])
def test_it_refuses_to_listen_beyond_loopback_without_a_password(
    redis_url: str, host: str, password: str | None
) -> None:
    extra = {} if password is None else {"CLOUDREC_WEB_PASSWORD": password}
    env = cloudrec_env(redis_url, NO_API, **extra)
    done = run_cli(["web", "--host", host, "--port", str(free_port())], env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "CLOUDREC_WEB_PASSWORD" in done.stderr and repr(host) in done.stderr
    assert "Traceback" not in done.stderr


def test_on_loopback_it_is_open_without_a_password(redis_url: str, tmp_path: Path) -> None:
    proc, url = start_web(tmp_path)
    try:
        answer = wait_http(f"{url}/api/jobs")  # no credentials
        assert answer.json()["jobs"] == []
        assert "no password: loopback only" in wait_for(
            lambda: "loopback only" in proc.output() and proc.output(), 10, 0.1, "the banner"
        )
    finally:
        proc.stop()


def test_the_credential_check() -> None:
    good = basic(USER, PASSWORD)["Authorization"]
    assert credentials_match(good, USER, PASSWORD)
    assert credentials_match(basic(USER, "p:w")["Authorization"], USER, "p:w")
    for header in (None, "", "Basic", basic(USER, "")["Authorization"], good.lower()):
        assert not credentials_match(header, USER, PASSWORD), header
    assert not credentials_match(basic("", "")["Authorization"], USER, PASSWORD)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example.org", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_redis_that_goes_away_is_a_503_and_the_page_recovers(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    private = RedisServer(tmp_path / "redis").start()
    try:
        port = free_port()
        env = cloudrec_env(private.url, NO_API)
        argv = ["web", "--port", str(port), "--storage-dir", str(tmp_path / "storage")]
        proc = spawn("web", argv, env, tmp_path)
        try:
            url = f"http://127.0.0.1:{port}/api/jobs"
            wait_http(url)
            private.kill()
            answer = requests.get(url, timeout=30)
            assert answer.status_code == 503 and "Redis does not answer" in answer.text
            private.start()
            assert wait_http(url).json()["jobs"] == []
            assert "Traceback" not in proc.output()
        finally:
            proc.stop()
    finally:
        private.stop()


def test_the_password_is_one_of_the_secrets_logs_redact() -> None:
    settings = Settings(web_password=PASSWORD)
    assert PASSWORD in settings_secrets(settings)
    assert PASSWORD not in repr(settings)

"""The command line and its settings: a bad setting is one line naming its variable (no
traceback, nothing run), and the offline commands neither load settings nor import the Redis
and HTTP clients, so `cloudrec render` starts as fast as the compositor allows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.processes import REPO, cloudrec_env, run_cli
from tests.support.redis_db import TEST_REDIS_URL
from tests.test_render_cli import SCENARIO


def _env(**settings: str) -> dict[str, str]:
    return cloudrec_env(TEST_REDIS_URL, "http://127.0.0.1:9", **settings)  # nothing is called


def test_a_bad_setting_is_one_line_naming_its_variable():
    result = run_cli(["jobs"], _env(CLOUDREC_API_RATE_LIMIT="lots"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CLOUDREC_API_RATE_LIMIT" in lines[0] and "valid number" in lines[0]


def test_render_needs_no_settings(tmp_path: Path):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(SCENARIO | {"duration": 1}))
    env = _env(CLOUDREC_API_RATE_LIMIT="lots", CLOUDREC_REDIS_URL="not a url")
    result = run_cli(["render", str(scenario), "--out", str(tmp_path / "out")], env)
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "out").rglob("*.mp4"))


def test_the_cli_module_does_not_import_the_service_clients():
    probe = (
        "import sys, worker.cli; "
        "print(sorted(m for m in ('redis', 'requests', 'pydantic_settings', 'celery') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_bad_app_certificate_is_refused_without_echoing_it():
    bad = "not-the-certificate-9f8e7d"
    result = run_cli(["jobs"], _env(CLOUDREC_APP_ID="a" * 32, CLOUDREC_APP_CERTIFICATE=bad))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "CLOUDREC_APP_CERTIFICATE" in result.stderr and "32 hexadecimal" in result.stderr
    assert bad not in result.stderr + result.stdout
    emulator = run_cli(["emulator", "--port", "9", "--app-certificate", bad], _env())
    assert emulator.returncode == 2 and "--app-certificate" in emulator.stderr
    assert bad not in emulator.stderr + emulator.stdout


def test_a_bad_app_certificate_of_another_app_is_refused_without_echoing_it():
    bad = "not-the-certificate-9f8e7d"
    school = {
        "CLOUDREC_APPS__SCHOOL__APP_ID": "b" * 32,
        "CLOUDREC_APPS__SCHOOL__CUSTOMER_ID": "school",
        "CLOUDREC_APPS__SCHOOL__CUSTOMER_SECRET": "school-secret",
        "CLOUDREC_APPS__SCHOOL__APP_CERTIFICATE": bad,
    }
    result = run_cli(["jobs"], _env(**school))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "APP_CERTIFICATE" in result.stderr and "32 hexadecimal" in result.stderr
    assert bad not in result.stderr + result.stdout
    argv = ["emulator", "--port", "9", "--app-certificate", f"{'b' * 32}={bad}"]
    emulator = run_cli(argv, _env())
    assert emulator.returncode == 2 and "--app-certificate" in emulator.stderr
    assert bad not in emulator.stderr + emulator.stdout

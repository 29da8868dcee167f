"""``cloudrec-client`` (clients/python), installed alone in a venv of its own, used by a separate
interpreter against a real ``cloudrec worker`` and ``cloudrec beat``: submit with a sealed token,
status, wait, cancel, stop, typed results and errors; the token never crosses the broker in the
clear and the spec never shows in a message's ``argsrepr`` (what Flower displays)."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.processes import Cloudrec
from tests.support.specs import process_spec
from tests.support.venvs import _clean_env, run_outside
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

TOKEN = "007eJxCLIENT-SECRET-TOKEN-9a8b7c"


def _later() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


def client_script(cloudrec: Cloudrec, body: str, **names: Any) -> str:
    """A script for the client venv: imports, a client on the test's broker, then ``body``."""
    values = "".join(f"{k} = {v!r}\n" for k, v in names.items())
    return (
        "import json, time\n"
        "import cloudrec_client as cc\n"
        f"client = cc.CloudrecClient({cloudrec.redis_url!r}, "
        f"vault_key={cloudrec.env['CLOUDREC_VAULT_KEY']!r}, timeout=30)\n"
        f"{values}{body}"
    )


def test_the_client_venv_holds_only_the_client_and_celery(
    client_python: Path, tmp_path: Path
) -> None:
    probe = (
        "import importlib.metadata as md, importlib.util as u\n"
        "dist = md.distribution('cloudrec-client')\n"
        "tops = sorted({f.parts[0] for f in dist.files if f.suffix == '.py'})\n"
        "print(tops, [m for m in ('worker', 'tasks', 'config', 'emulator') if u.find_spec(m)])\n"
        "print(sorted(r.split(';')[0] for r in dist.requires))\n"
    )
    result = run_outside(client_python, probe, tmp_path)
    assert result.returncode == 0, result.stderr
    tops, requires = result.stdout.splitlines()
    assert tops == "['cloudrec_client'] []"
    assert requires == "['celery[redis]<6,>=5.3', 'cryptography>=42']", requires


def test_submit_wait_status_and_errors_from_the_client_venv(
    cloudrec: Cloudrec, client_python: Path, tmp_path: Path
) -> None:
    cloudrec.start_worker()
    cloudrec.start_beat()
    cloudrec.dev.join("client-a", "3", video={"color": "#00FF00"}, audio={"tone": 550})
    bad = process_spec("client-bad")
    bad["recordingConfig"]["maxIdleTime"] = 1
    body = """
job_id = client.submit(spec)
done = client.wait(job_id, timeout=90, poll=0.3)
assert isinstance(done, cc.JobStatus) and done.terminal
out = {"job_id": job_id, "state": done.state, "files": [f.key for f in done.files],
       "stop_at": done.stop_at.isoformat(), "history": [h.state for h in done.history]}
try:
    client.submit(bad)
except cc.JobSpecError as exc:
    out["spec_error"] = str(exc)
try:
    client.status("no-such-job")
except cc.JobNotFound as exc:
    out["not_found"] = [str(exc), exc.job_id, isinstance(exc, KeyError)]
later = client.submit(dict(spec, cname="client-later", start_at=start_at))
try:
    client.wait(later, timeout=0.5, poll=0.1)
except cc.WaitTimeout as exc:
    out["wait_timeout"] = exc.status.state
out["cancelled"] = client.cancel(later).state
out["wait_cancelled"] = client.wait(later, timeout=1).state
try:
    cc.CloudrecClient(broker, queue="nobody-serves-this", timeout=1).status(job_id)
except cc.NoAnswer as exc:
    out["no_answer"] = str(exc)
print(json.dumps(out))
"""
    code = client_script(
        cloudrec,
        body,
        spec=process_spec("client-a", token=TOKEN),
        bad=bad,
        start_at=_later(),
        broker=cloudrec.redis_url,
    )

    result = run_outside(client_python, code, tmp_path, timeout=180)

    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["state"] == "completed"
    assert out["files"] and all(k.startswith("ops/") for k in out["files"])
    assert out["history"][-1] == "completed" and "recording" in out["history"]
    assert out["spec_error"] == "recordingConfig.maxIdleTime: must be between 5 and 2592000 (got 1)"
    assert out["not_found"] == ["no job with id 'no-such-job'", "no-such-job", True]
    assert out["cancelled"] == "cancelled" and out["wait_cancelled"] == "cancelled"
    assert "queue 'nobody-serves-this'" in out["no_answer"]
    assert out["wait_timeout"] == "queued"
    # The token reached the vault intact (sealed by the client, opened by the worker).
    assert cloudrec.runtime.vault.get(out["job_id"]).get_secret_value() == TOKEN


def test_stop_a_live_recording_from_the_client(
    cloudrec: Cloudrec, client_python: Path, tmp_path: Path
) -> None:
    cloudrec.start_worker()
    cloudrec.start_beat()
    cloudrec.dev.join("client-s", "4", video={"color": "#FFFF00"}, audio={"tone": 660})
    body = """
job_id = client.submit(spec)
while client.status(job_id).state != "recording":
    time.sleep(0.2)
stopped = client.stop(job_id)
done = client.wait(job_id, timeout=60, poll=0.3)
print(json.dumps([stopped.state, stopped.stop_reason, done.state, done.stop_reason]))
"""
    code = client_script(cloudrec, body, spec=process_spec("client-s", duration=600))

    result = run_outside(client_python, code, tmp_path, timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    before, reason, after, final_reason = json.loads(result.stdout.strip().splitlines()[-1])
    assert before in {"recording", "stopping", "completed"} and reason == "stop"
    assert (after, final_reason) == ("completed", "stop")


def test_the_token_is_sealed_and_the_spec_hidden_in_the_message(
    cloudrec: Cloudrec, client_python: Path, tmp_path: Path
) -> None:
    """The message is caught on a queue nobody serves, read, then handed to the intake."""
    client = redis.Redis.from_url(cloudrec.redis_url)
    cloudrec.start_worker()
    code = client_script(
        cloudrec,
        "print(client.submit(spec))\n",
        spec=process_spec("client-seal", token=TOKEN, start_at=_later()),
    ).replace("timeout=30)", "timeout=60, queue='held')")
    caller = subprocess.Popen(
        [str(client_python), "-c", code],
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        raw = wait_for(lambda: client.lindex("held", 0), 30, 0.1, "the message on 'held'")
        message = json.loads(raw)
        body = base64.b64decode(message["body"])
        client.rpoplpush("held", "cloudrec")
        out, err = caller.communicate(timeout=60)
    finally:
        caller.kill()
    assert caller.returncode == 0, err[-3000:]
    job_id = out.strip()

    assert message["headers"]["argsrepr"] == "(<job spec>)"
    assert TOKEN.encode() not in raw and TOKEN.encode() not in body
    (spec,), _, _ = json.loads(body)
    assert spec["token"].startswith("cloudrec-sealed:")
    assert cloudrec.runtime.vault.get(job_id).get_secret_value() == TOKEN
    assert TOKEN not in json.dumps(cloudrec.runtime.store.get(job_id).status_json())

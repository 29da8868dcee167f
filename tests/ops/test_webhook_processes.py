"""Webhooks as an operator runs them: ``cloudrec worker`` and ``cloudrec beat`` processes with the
webhook settings from the environment deliver a job's callback (so the worker consumes the
``cloudrec.callbacks`` queue), and a secret that is not a Standard Webhooks one stops the
command with one line naming the variable, never echoing it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from tasks.recording import submit
from tests.support.processes import processes, run_cli, start_beat_process, start_worker_process
from tests.support.specs import process_spec
from tests.support.waiting import wait_for

SECRET = "whsec_b3BzLXdlYmhvb2stc2VjcmV0LXZhbHVlLTMyYnl0ZXM="


@pytest.fixture
def receiver() -> Iterator[dict[str, Any]]:
    box: dict[str, Any] = {"requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            box["requests"].append((dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["url"] = f"http://127.0.0.1:{server.server_port}/hook"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield box
    server.shutdown()
    server.server_close()


def test_cloudrec_worker_processes_deliver_a_signed_webhook(
    env: dict[str, str], log_dir: Path, receiver: dict[str, Any]
):
    env |= {"CLOUDREC_WEBHOOK_SECRET": SECRET, "CLOUDREC_WEBHOOK_ALLOW": "127.0.0.1/32"}
    with processes() as started:
        started.append(start_worker_process(env, log_dir))
        started.append(start_beat_process(env, log_dir))
        spec = process_spec("opshook", duration=2, callback={"webhook": receiver["url"]})
        job_id = submit.apply_async((spec,)).get(timeout=30)
        wait_for(lambda: receiver["requests"], 60, 0.2, "the webhook delivery")
        logs = "".join(p.output() for p in started)
    [(headers, body)] = receiver["requests"]
    assert Webhook(SECRET).verify(body, headers)["job_id"] == job_id
    assert SECRET not in logs and SECRET.removeprefix("whsec_") not in logs


@pytest.mark.parametrize("value", ["plain-old-hmac-key", "whsec_tooshort", "whsec_***"])
def test_a_secret_of_another_form_stops_the_command_naming_the_variable(
    env: dict[str, str], value: str
):
    result = run_cli(["jobs"], env | {"CLOUDREC_WEBHOOK_SECRET": value})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "CLOUDREC_WEBHOOK_SECRET" in line and "whsec_" in line and "base64" in line
    assert value not in line

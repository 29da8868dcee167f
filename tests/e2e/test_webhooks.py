"""Tier 3: completion webhooks as receivers and operators see them, through the real Celery
worker, the dispatcher and the emulator.

- The README's receiver, run verbatim (only its port substituted) in an interpreter that has the
  ``standardwebhooks`` package from PyPI and nothing of cloudrec, verifies real deliveries.
- Receivers that trickle a byte a second or never answer cost no stop its second and no job its
  start: deliveries have their own queue, a bounded share of the worker and a total deadline.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import standardwebhooks

from tasks.recording import submit_and_start
from tests.support.ports import free_port
from tests.support.stack import WEBHOOK_SECRET
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TERMINAL = ("completed", "empty", "idle_exit", "failed", "cancelled")


def _spec(cname: str, duration: int, webhook: str) -> dict[str, Any]:
    return {
        "cname": cname,
        "duration": duration,
        "recordingConfig": {
            "maxIdleTime": 30,
            "transcodingConfig": {"width": 160, "height": 120, "fps": 7, "bitrate": 100},
        },
        "callback": {"webhook": webhook},
    }


def _readme_receiver(port: int) -> str:
    """The receiver code block of the README's "Completion callbacks" section, on ``port``."""
    section = (REPO / "README.md").read_text().split("\n## Completion callbacks\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.count('("0.0.0.0", 8080)') == 1, "the README's receiver changed shape"
    return code.replace('("0.0.0.0", 8080)', f'("127.0.0.1", {port})')


@pytest.fixture
def outside_python(tmp_path: Path) -> Iterator[list[str]]:
    """An interpreter with the standard library and standardwebhooks only (no site-packages,
    so no cloudrec, run outside the repository)."""
    site = tmp_path / "receiver-site"
    shutil.copytree(Path(standardwebhooks.__file__).parent, site / "standardwebhooks")
    env = {"PYTHONPATH": str(site), "CLOUDREC_WEBHOOK_SECRET": WEBHOOK_SECRET}
    probe = "import standardwebhooks\ntry:\n import worker, config\nexcept ImportError: print('ok')"
    check = subprocess.run(
        [sys.executable, "-S", "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert check.stdout.strip() == "ok", check.stderr
    yield [sys.executable, "-S"]


def test_the_readme_receiver_verifies_real_deliveries(stack, outside_python, tmp_path):
    port = free_port()
    receiver = subprocess.Popen(
        [*outside_python, "-c", _readme_receiver(port)],
        env={
            "PYTHONPATH": str(tmp_path / "receiver-site"),
            "CLOUDREC_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/recordings"
        wait_for(lambda: _answers(url), 10, 0.1, "the receiver to listen")
        # A forged delivery (right shape, wrong key) is refused by the receiver.
        forged = standardwebhooks.Webhook("whsec_" + "Zm9yZ2VkLWtleS1vZi10d2VudHktZm91ci1i")
        body = '{"job_id": "forged", "state": "completed", "files": []}'
        at = datetime.now()
        headers = {
            "webhook-id": "msg_forged",
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": forged.sign("msg_forged", at, body),
        }
        assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 401

        stack.dev.join("hooked", "1", video={"color": "#FF0000"}, audio={"tone": 440})
        job, _ = submit_and_start(stack.runtime, _spec("hooked", 3, url))
        status = wait_for(
            lambda: (
                _webhook_state(stack, job.job_id) == "delivered"
                and stack.runtime.store.get(job.job_id).callback_status
            ),
            40,
            0.2,
            "the delivery",
        )
        assert status["webhook"]["status"] == 204 and status["webhook"]["attempts"] == 1
        job = stack.runtime.store.get(job.job_id)
        assert job.state == "completed" and job.files
    finally:
        receiver.terminate()
        out, err = receiver.communicate(timeout=10)
    # What the receiver printed after verifying: the job, its state and its files' keys.
    [line] = out.splitlines()
    assert line.startswith(f"{job.job_id} completed [") and job.files[0].key in line, err


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
    except requests.ConnectionError:
        return False
    return True


def _webhook_state(stack: Any, job_id: str) -> str | None:
    status = stack.runtime.store.get(job_id).callback_status or {}
    return (status.get("webhook") or {}).get("state")


# -- bad receivers -----------------------------------------------------------------------------
@pytest.fixture
def trickler() -> Iterator[dict[str, Any]]:
    """A receiver that reads the request, then answers one byte a second, for minutes."""
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    box: dict[str, Any] = {"url": url, "conns": 0, "open": 0, "most_open": 0}
    lock = threading.Lock()

    def trickle(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.settimeout(1)
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 300:
                    conn.sendall(bytes([byte]))
                    try:  # a second between bytes, noticing at once when the client hangs up
                        if conn.recv(1) == b"":
                            break
                    except TimeoutError:
                        pass
            except OSError:
                pass
            finally:
                with lock:
                    box["open"] -= 1

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with lock:
                box["conns"] += 1
                box["open"] += 1
                box["most_open"] = max(box["most_open"], box["open"])
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield box
    listener.close()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A receiver whose connections the kernel accepts (the backlog) and nobody ever answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    listener.close()


def test_stuck_webhook_receivers_cost_no_stop_its_second_and_no_job_its_start(
    stack, trickler, black_hole
):
    # 14 jobs, every one reporting to a receiver that holds whoever calls it: the first six end
    # after 4 s, the others one a second from 7 s on, while the first ones' deliveries hang.
    # The stack's worker has 4 threads: without bounds, the stuck deliveries would take them all.
    receivers = [trickler["url"], black_hole]
    durations = [4] * 6 + list(range(7, 15))
    jobs = [
        submit_and_start(stack.runtime, _spec(f"stuck{i}", d, receivers[i % 2]))[0]
        for i, d in enumerate(durations)
    ]
    store = stack.runtime.store
    wait_for(
        lambda: all(store.get(j.job_id).state in TERMINAL for j in jobs), 60, 0.25, "every job"
    )
    stopped = {r["sid"]: r for r in stack.dev.recordings()}
    lateness = []
    for job in (store.get(j.job_id) for j in jobs):
        assert job.sid is not None and job.state == "empty", (job.job_id, job.state, job.error)
        stopped_at = datetime.fromisoformat(stopped[job.sid]["stoppedAt"]).timestamp()
        lateness.append(stopped_at - job.stop_at)
    assert max(lateness) <= 2.0, sorted(lateness)
    # The deliveries really were stuck meanwhile: the trickler held attempts up to their
    # deadline, one at a time (the worker's 4 threads give callbacks 1 slot), none delivered.
    assert trickler["conns"] >= 1 and trickler["most_open"] == 1
    states = [_webhook_state(stack, j.job_id) for j in jobs]
    assert "delivered" not in states

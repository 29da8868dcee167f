"""``cloudrec demo``: a real composite recording on a machine where nothing is running.

It uses the configured Redis, or starts a private ``redis-server`` when none answers, then runs
the emulator, a Celery worker and celery beat as child processes (the same commands a
deployment runs), puts three simulated users in a channel (three colours, three tones), records
them through the worker, and prints where the M3U8, TS and MP4 files are.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from config import Settings
from worker.devapi import DevApiClient, DevApiError
from worker.errors import CloudrecError

DEMO_USERS = (
    ("101", "#E53935", 440.0),  # red, A4
    ("102", "#43A047", 660.0),  # green, E5
    ("103", "#1E88E5", 880.0),  # blue, A5
)
DEMO_CHANNEL = "demo"


class DemoError(CloudrecError):
    """The demo could not run; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_answers(settings: Settings) -> bool:
    from worker.redis_conn import redis_client

    client = redis_client(settings, socket_connect_timeout=1, retry=None)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A throw-away redis-server on a free port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise DemoError(
            "no Redis answers at CLOUDREC_REDIS_URL and redis-server is not installed. "
            "Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) "
            "or point CLOUDREC_REDIS_URL at a running Redis."
        )
    port = free_port()
    print(f"No Redis answers at CLOUDREC_REDIS_URL; starting a private redis-server on {port}.")
    with tempfile.TemporaryDirectory(prefix="cloudrec-redis-") as data_dir:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                data_dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            plain = Settings(redis_url=url, redis_sentinels=(), redis_master=None)
            wait_until(lambda: redis_answers(plain), 10, "the private redis-server to start")
            yield url
        finally:
            stop_process(proc)


def wait_until(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[Any]:
    """Start ``cloudrec ARGS`` as a child process with its output in ``log_path``."""
    log_file = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def run_demo(settings: Settings, *, duration: int, storage_dir: Path) -> None:
    with contextlib.ExitStack() as stack:
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, CLOUDREC_REDIS_URL=settings.redis_url, CLOUDREC_API_BASE_URL=api_url)
        demo_settings = settings.model_copy(update={"api_base_url": api_url})
        if not redis_answers(settings):
            # A private Redis, plain: no sentinel of the configuration applies to it.
            private = stack.enter_context(private_redis())
            env.update(CLOUDREC_REDIS_URL=private, CLOUDREC_REDIS_SENTINELS="")
            env.pop("CLOUDREC_REDIS_MASTER", None)
            demo_settings = demo_settings.model_copy(
                update={"redis_url": private, "redis_sentinels": (), "redis_master": None}
            )
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cloudrec-demo-")))
        storage_dir = storage_dir.resolve()
        children = [
            spawn(
                [
                    "emulator",
                    "--port",
                    str(port),
                    "--storage-dir",
                    str(storage_dir),
                    "--slice-seconds",
                    "4",
                ],
                env,
                logs / "emulator.log",
            ),
            spawn(["worker", "-c", "4", "--pool", "threads"], env, logs / "worker.log"),
            spawn(["beat"], env, logs / "beat.log"),
        ]
        for child in children:
            stack.callback(stop_process, child)
        try:
            _record_demo(demo_settings, duration, storage_dir, children)
        except (DemoError, DevApiError):
            for name in ("emulator", "worker", "beat"):
                tail = (logs / f"{name}.log").read_text(errors="replace")[-1500:]
                print(f"--- last lines of the {name} log ---\n{tail}", file=sys.stderr)
            raise


def _record_demo(
    settings: Settings, duration: int, storage_dir: Path, children: list[subprocess.Popen[Any]]
) -> None:
    from tasks.recording import submit_and_start
    from worker.celery_app import app, configure, runtime
    from worker.cli.live import follow_job

    dev = DevApiClient(settings.api_base_url, token=settings.dev_token_value)
    wait_until(lambda: _answers(dev), 30, "the emulator to answer")
    configure(settings)
    print("Waiting for the Celery worker...")
    wait_until(
        lambda: _children_alive(children) and app.control.ping(timeout=0.5),
        60,
        "the Celery worker to answer a ping",
    )
    for uid, color, tone in DEMO_USERS:
        dev.join(DEMO_CHANNEL, uid, video={"color": color}, audio={"tone": tone})
        print(f"user {uid} joined channel {DEMO_CHANNEL!r}: video {color}, tone {tone:.0f} Hz")
    spec = {
        "cname": DEMO_CHANNEL,
        "duration": duration,
        "recordingConfig": {
            "maxIdleTime": 30,
            "audioProfile": 1,
            "transcodingConfig": {
                "width": 640,
                "height": 360,
                "fps": 15,
                "bitrate": 800,
                "mixedVideoLayout": 1,
                "backgroundColor": "#202020",
            },
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "fileNamePrefix": ["demo"],
    }
    rt = runtime()
    job, _ = submit_and_start(rt, spec)
    print(f"Recording job {job.job_id}: {duration} s, best-fit layout, 640x360 @ 15 fps")
    job = follow_job(rt.store, job.job_id)
    if job.state != "completed":
        raise DemoError(f"the job ended {job.state}: {job.error}")
    bucket = settings.storage_profile(job.storage).bucket
    folder = storage_dir / bucket / "/".join(job.job_spec.fileNamePrefix)
    print(f"\nDone: job {job.job_id} completed (sid {job.sid}). Files:")
    for path in sorted(folder.glob(f"{job.sid}_*")):
        print(f"  {path}")


def _answers(dev: DevApiClient) -> bool:
    try:
        dev.recordings()
    except DevApiError:
        return False
    return True


def _children_alive(children: list[subprocess.Popen[Any]]) -> bool:
    dead = [c.args for c in children if c.poll() is not None]
    if dead:
        raise DemoError(f"a demo process exited early: {dead[0]!r}")
    return True

"""Tier 3: secrets never leave config. Full jobs run through the real worker; then the customer
secret, the storage keys and the RTC token are searched for in everything someone could read:
every key and value of the broker's Redis database (sampled all through the run, so queued and
unacked messages are seen, and their base64 bodies decoded), the job records, the captured logs
of the worker and the client, the task events Flower displays (args/argsrepr/kwargsrepr), the
status output. None may contain any of them.

The token rule (README): a spec with a plain token is submitted through the Python API
(``submit_and_start``), which puts it in the vault encrypted before anything is queued; over the
broker, ``recording.submit`` takes only a token sealed with ``worker.vault.seal_token`` and
refuses a plain one.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from config import Settings
from config.settings import StorageProfile
from emulator import EmulatorConfig, serve_in_thread
from tasks.recording import submit_and_start
from tests.support.waiting import wait_for
from worker import jobcodec
from worker.celery_app import app, configure, queue_layout, runtime
from worker.devapi import DevApiClient
from worker.errors import JobSpecError
from worker.keys import job_key
from worker.vault import seal_token

pytestmark = pytest.mark.e2e

CUSTOMER_SECRET = "cust-SECRET-7f3a9c1e55"
ACCESS_KEY = "AKIA-SECRET-ACCESS-4411"
SECRET_KEY = "storage-SECRET-key-90ab"
TOKEN = "007eJxRTC-SECRET-TOKEN-c0ffee"
SECRETS = {
    "customer secret": CUSTOMER_SECRET,
    "storage access key": ACCESS_KEY,
    "storage secret key": SECRET_KEY,
    "RTC token": TOKEN,
}


@dataclass
class Seen:
    """Everything an onlooker could have read, gathered during the run."""

    redis_values: list[bytes] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def _dump_db(client: redis.Redis) -> list[bytes]:
    """Every key and every value in the database, whatever the type."""
    out: list[bytes] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        try:
            if kind == b"string":
                values = [client.get(key) or b""]
                if key.startswith(job_key("").encode()):  # a job record: its spec is deflated
                    job_id = key[len(job_key("")) :].decode()
                    values.append(json.dumps(jobcodec.decode(values[0], job_id)).encode())
            elif kind == b"hash":
                values = [k + b"=" + v for k, v in client.hgetall(key).items()]
            elif kind == b"list":
                values = client.lrange(key, 0, -1)
            elif kind == b"set":
                values = list(client.smembers(key))
            elif kind == b"zset":
                values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
            else:
                values = []
        except redis.ResponseError:  # the key changed type or vanished between the calls
            values = []
        out.append(key)
        out.extend(values)
    return out


def _expand(value: bytes) -> list[bytes]:
    """The value plus every base64 message body inside it (kombu encodes bodies)."""
    out = [value]
    try:
        doc = json.loads(value.split(b"=", 1)[-1] if value[:1] != b"{" else value)
    except (ValueError, UnicodeDecodeError):
        return out
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            body = item.get("body")
            if isinstance(body, str):
                try:
                    out.append(base64.b64decode(body, validate=True))
                except (binascii.Error, ValueError):
                    out.append(body.encode())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            out.append(item.encode())
    return out


def _sample_redis(url: str, stop: threading.Event, seen: Seen) -> None:
    client = redis.Redis.from_url(url)
    while not stop.wait(0.02):
        seen.redis_values.extend(_dump_db(client))
    seen.redis_values.extend(_dump_db(client))
    client.close()


def _capture_events(stop: threading.Event, ready: threading.Event, seen: Seen) -> None:
    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": seen.events.append})
        ready.set()
        while not stop.is_set():
            try:
                receiver.capture(limit=None, timeout=0.3, wakeup=False)
            except TimeoutError:
                continue


@pytest.fixture
def secret_stack(redis_url: str, tmp_path: Path) -> Iterator[tuple[Settings, Seen]]:
    server = serve_in_thread(
        EmulatorConfig(
            port=0,
            qps=0,
            storage_dir=tmp_path / "storage",
            customer_secret=CUSTOMER_SECRET,
            startup_seconds=0.5,
            slice_seconds=1.0,
            exit_linger_seconds=1.0,
        )
    )
    settings = Settings(
        redis_url=redis_url,
        api_base_url=server.base_url,
        customer_secret=CUSTOMER_SECRET,
        storage={"default": StorageProfile(access_key=ACCESS_KEY, secret_key=SECRET_KEY)},
        start_confirm_timeout=20,
        failover_window=3,
        dev_api=True,
    )
    configure(settings)
    seen = Seen()
    stop, ready = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=_sample_redis, args=(redis_url, stop, seen), daemon=True),
        threading.Thread(target=_capture_events, args=(stop, ready, seen), daemon=True),
    ]
    for thread in threads:
        thread.start()
    ready.wait(10)
    ticker_stop = threading.Event()

    def tick() -> None:
        from tasks.recording import dispatch

        while not ticker_stop.wait(0.25):
            dispatch()

    ticker = threading.Thread(target=tick, daemon=True)
    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=queue_layout(settings),
        shutdown_timeout=30,
    ):
        ticker.start()
        yield settings, seen
        ticker_stop.set()
        ticker.join()
    stop.set()
    for thread in threads:
        thread.join(10)
    server.stop()


def _spec(cname: str, **extra: Any) -> dict[str, Any]:
    return {
        "cname": cname,
        "uid": "4242",
        "duration": 3,
        "recordingConfig": {
            "maxIdleTime": 30,
            "transcodingConfig": {"width": 160, "height": 120, "fps": 7, "bitrate": 100},
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        **extra,
    }


def test_no_secret_reaches_the_broker_records_logs_events_or_status(secret_stack, caplog):
    settings, seen = secret_stack
    caplog.set_level(logging.DEBUG)
    rt = runtime()
    dev = DevApiClient(settings.api_base_url)
    dev.join("sec1", "11", video={"color": "#FF0000"}, audio={"tone": 440})
    dev.join("sec2", "12", video={"color": "#00FF00"}, audio={"tone": 660})
    # A plain token through the Python API; a sealed one over the broker; a start the service
    # refuses (its error is stored on the job).
    job1, _ = submit_and_start(rt, _spec("sec1", token=TOKEN))
    job2_id = app.send_task(
        "recording.submit", args=[_spec("sec2", token=seal_token(settings, TOKEN))]
    ).get(timeout=20)
    for job_id in (job1.job_id, job2_id):
        wait_for(lambda i=job_id: rt.store.get(i).sid, 20, 0.1, "the recordings to start")
    dev.set_faults(
        {
            "errors": [
                {"operations": ["start"], "status": 400, "code": 2, "reason": "bad", "count": 1}
            ]
        }
    )
    job3, _ = submit_and_start(rt, _spec("sec3", token=TOKEN))
    ids = [job1.job_id, job2_id, job3.job_id]
    jobs = wait_for(
        lambda: all(rt.store.get(i).terminal for i in ids) and [rt.store.get(i) for i in ids],
        60,
        0.2,
        "every job to end",
    )
    assert [j.state for j in jobs] == ["completed", "completed", "failed"], jobs
    wait_for(
        lambda: any(e.get("type") == "task-succeeded" for e in seen.events),
        10,
        0.1,
        "the task events",
    )
    time.sleep(0.5)  # let the samplers take a last look (a deadline, not a poll)

    places: dict[str, list[bytes]] = {
        "the broker's Redis database": [v for raw in seen.redis_values for v in _expand(raw)],
        "the task events Flower shows": [json.dumps(e, default=str).encode() for e in seen.events],
        "the logs": [
            _log_text(r).encode()
            for r in caplog.records
            if not r.name.startswith(("emulator", "uvicorn"))
        ],
        "the status output": [json.dumps(j.status_json()).encode() for j in jobs],
        "the job records": [json.dumps(j.model_dump(mode="json")).encode() for j in jobs],
    }
    assert any(b"recording.acquire" in v for v in places["the task events Flower shows"])
    assert len(places["the broker's Redis database"]) > 100  # the sampler did see the traffic
    for place, values in places.items():
        for name, secret in SECRETS.items():
            leaks = [v[:200] for v in values if secret.encode() in v]
            assert not leaks, f"the {name} leaked into {place}: {leaks[:3]}"


def test_a_plain_token_over_the_broker_is_refused_without_echoing_it(secret_stack):
    with pytest.raises(Exception, match="token: a plain RTC token must not travel") as info:
        app.send_task("recording.submit", args=[_spec("plain", token=TOKEN)]).get(timeout=20)
    assert TOKEN not in str(info.value)
    assert runtime().store.ids() == []
    with pytest.raises(JobSpecError, match="sealed token does not open"):
        submit_and_start(
            runtime(),
            _spec("wrongkey", token=seal_token(Settings(customer_secret="another-secret"), TOKEN)),
        )


def _log_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), record.exc_text or ""]
    parts += [f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD]
    return " ".join(parts)


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}

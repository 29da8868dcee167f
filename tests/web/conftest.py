"""Fixtures of the page's tests: a deployment (the emulator in a thread; ``cloudrec worker``,
``cloudrec beat`` and ``cloudrec web`` processes on the test Redis) and a headless chromium."""

from __future__ import annotations

from collections.abc import Iterator

import boto3  # type: ignore[import-untyped]  # no stubs
import pytest
import redis
from moto.server import ThreadedMotoServer
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.browser import chromium
from tests.support.emulator import start_emulator
from tests.support.ports import free_port
from tests.support.processes import (
    cloudrec_env,
    processes,
    spawn,
    start_beat_process,
    start_worker_process,
    wait_http,
)
from tests.support.redis_db import TEST_REDIS_URL
from tests.web.site import PASSWORD, S3_BUCKET, USER, Site, s3_settings
from worker.devapi import DevApiClient
from worker.store import JobStore


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    base = tmp_path_factory.mktemp("web")
    logs = base / "logs"
    logs.mkdir()
    storage = base / "storage"
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    endpoint = "http://{}:{}".format(*s3.get_host_and_port())
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="admin", aws_secret_access_key="admin",
    ).create_bucket(Bucket=S3_BUCKET)  # fmt: skip
    server = start_emulator(storage)
    env = cloudrec_env(
        TEST_REDIS_URL,
        server.base_url,
        CLOUDREC_WEB_USER=USER,
        CLOUDREC_WEB_PASSWORD=PASSWORD,
        **s3_settings(endpoint),
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        with processes() as procs:
            procs.append(start_worker_process(env, logs))
            procs.append(start_beat_process(env, logs))
            argv = ["web", "--port", str(port), "--storage-dir", str(storage)]
            procs.append(spawn("web", argv, env, logs))
            wait_http(f"{url}/", auth=(USER, PASSWORD))
            yield Site(url, env, DevApiClient(server.base_url), JobStore(client), storage, logs)
    finally:
        server.stop()
        s3.stop()
        client.flushdb()
        client.close()


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[WebDriver]:
    with chromium(USER, PASSWORD) as driver:
        yield driver

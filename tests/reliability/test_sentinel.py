"""Redis through Sentinel, end to end: ``cloudrec worker`` and ``cloudrec beat`` processes
configured only with ``CLOUDREC_REDIS_SENTINELS`` / ``CLOUDREC_REDIS_MASTER`` (and a
``CLOUDREC_REDIS_URL`` whose host resolves nowhere: only its password and db number apply), in
real-service mode, while the master is SIGKILLed in the middle of a batch of jobs submitted
through the intake by a plain Celery app (scenario: :mod:`tests.support.failover`).

After the failover: every acknowledged job is on the new master and ends terminal, every
recording is stopped, none started twice, the worker used no dev API; the stop lateness (all
deadline stops, and those due during the failover) is printed. The full size and its figures:
``benchmarks/sentinel_failover.py``.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import redis
import requests

from config import Settings
from tests.support.failover import Plan, run_failover
from tests.support.processes import cloudrec_env, run_cli
from tests.support.sentinel import DB, PASSWORD, SentinelGroup
from worker.celery_app import celery_config
from worker.errors import NotDurable
from worker.redis_conn import confirm_replicated, redis_client

pytestmark = pytest.mark.reliability


def test_every_acknowledged_job_survives_a_master_killed_mid_batch(tmp_path: Path):
    report = run_failover(tmp_path, Plan(jobs=24, kill_after=10))
    for line in report.lines():
        print(line)
    verdict = report.verdict
    assert len(report.acked) == 24, (report.acked, report.refusals)
    assert report.stored_on_new_master == 24  # WAIT: nothing acknowledged was lost
    assert verdict.not_terminal == [], verdict.not_terminal
    assert verdict.left_live == [], verdict.left_live
    assert verdict.started_twice == [] and verdict.unknown_recordings == []
    assert report.dev_requests_from_worker == [], report.dev_requests_from_worker[:3]
    # The jobs recorded (an empty channel: the stop answers 435) and were stopped by their
    # deadline, also those whose deadline fell while there was no master. On a machine loaded
    # beyond reason a 5 s job may miss its start: it says so, and nothing was recorded for it.
    recorded = {r.job_id for r in verdict.recordings}
    for job_id, reason in verdict.failures.items():
        assert reason == "the deadline passed before the recording started", (job_id, reason)
        assert job_id not in recorded, job_id
    assert verdict.states["empty"] >= 22, verdict.reasons
    assert len(verdict.lateness) == len(verdict.recordings) == verdict.states["empty"]
    assert report.during_failover(), "no deadline fell during the failover"
    assert verdict.max_lateness < 30.0, sorted(verdict.lateness)


def test_a_submit_is_not_acknowledged_without_a_replica(tmp_path: Path):
    """WAIT: with the replica gone, the write reaches the master but is refused as not
    durable (NotDurable names the settings); with it back, the same call is acknowledged."""
    group = SentinelGroup(tmp_path / "sentinel").start()
    try:
        settings = Settings(**group.settings(), redis_wait_timeout=0.3)
        assert settings.wait_replicas == 1  # the default with sentinels
        client = redis_client(settings)
        client.set("cloudrec:job:probe", "1")
        confirm_replicated(client, ["cloudrec:job:probe"], 1, 0.3)
        replica = next(n for n in group.nodes if n is not group.master())
        replica.kill()
        with pytest.raises(NotDurable, match="CLOUDREC_REDIS_WAIT_REPLICAS"):
            confirm_replicated(client, ["cloudrec:job:probe"], 1, 0.3)
        with pytest.raises(NotDurable, match="lost in a Redis failover"):
            confirm_replicated(client, ["cloudrec:job:missing"], 1, 0.3)
        group.restart_as_replica(replica)
        confirm_replicated(client, ["cloudrec:job:probe"], 1, 0.3)
        assert client.get("cloudrec:job:probe") == b"1"
        assert client.connection_pool.connection_kwargs["db"] == 3  # the URL's db applies
        client.close()
    finally:
        group.stop()


def test_a_node_restarted_empty_is_not_promoted_before_it_is_in_sync(tmp_path: Path):
    """The restart docs/operations.md prescribes (``--replica-priority 0`` until in sync): the
    new master frozen past down-after-ms while the old one, empty, comes back as its replica.
    The sentinels must not promote the empty node (with the default priority they do, and the
    master then resyncs from it, empty: a CI run lost its jobs that way)."""
    group = SentinelGroup(tmp_path / "sentinel").start()
    try:
        client = redis_client(Settings(**group.settings(), redis_wait_timeout=2.0))
        client.set("cloudrec:job:probe", "1")
        confirm_replicated(client, ["cloudrec:job:probe"], 1, 2.0)
        client.close()
        old = group.kill_master()
        group.wait_failover(old)
        new = group.master()
        group.start_unpromotable_replica(old)
        time.sleep(0.3)  # it has connected: the master lists it
        assert new.proc is not None
        new.proc.send_signal(signal.SIGSTOP)
        time.sleep(4 * group.down_after_ms / 1000)
        new.proc.send_signal(signal.SIGCONT)
        group.wait_in_sync_then_promotable(old)
        assert group.master_port() == new.port
        on_master = redis.Redis(port=new.port, password=PASSWORD, db=DB, socket_timeout=5)
        assert on_master.get("cloudrec:job:probe") == b"1"
        on_master.close()
    finally:
        group.stop()


def test_the_cli_and_the_exporter_work_through_the_sentinels(tmp_path: Path):
    """Commands and the exporter, given only the sentinel settings (the URL's host resolves
    nowhere): they read and write the master the sentinels name, also after a failover."""
    group = SentinelGroup(tmp_path / "sentinel").start()
    try:
        env = cloudrec_env(group.redis_url, "http://127.0.0.1:9", **group.env())
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps({"cname": "weekly", "duration": 60}))
        added = run_cli(["schedule", "add", "weekly", "--every", "3600", "--spec", str(spec)], env)
        assert added.returncode == 0, added.stderr
        old = group.kill_master()
        group.wait_failover(old)
        listed = run_cli(["schedule", "list", "--json"], env)
        assert listed.returncode == 0, listed.stderr
        assert [s["name"] for s in json.loads(listed.stdout)] == ["weekly"]
        health = run_cli(["health", "--json"], env)
        assert json.loads(health.stdout) == {"ok": True, "problems": []}, health.stderr
        jobs = run_cli(["jobs", "--json"], env)
        assert jobs.returncode == 0 and json.loads(jobs.stdout) == [], jobs.stderr
        from worker.exporter import serve_metrics

        settings = Settings(**group.settings())
        server, _ = serve_metrics(settings.redis_url, "127.0.0.1", 0, settings)
        try:
            page = requests.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10)
        finally:
            server.shutdown()
            server.server_close()
        assert page.status_code == 200 and "cloudrec_schedules" in page.text, page.text[:500]
    finally:
        group.stop()


def test_celery_reaches_broker_backend_and_schedules_through_the_sentinels():
    settings = Settings(
        redis_url="redis://:p%40ss@ignored:6379/4",
        redis_sentinels="10.0.0.1:26379, [::1]:26380",  # type: ignore[arg-type]
        redis_master="cloudrec",
    )
    conf = celery_config(settings)
    url = "sentinel://:p%40ss@10.0.0.1:26379/4;sentinel://:p%40ss@[::1]:26380/4"
    assert conf["broker_url"] == url and conf["result_backend"] == url
    assert conf["broker_transport"] == "worker.transport:SentinelTransport"
    assert conf["broker_transport_options"]["master_name"] == "cloudrec"
    assert conf["broker_transport_options"]["visibility_timeout"] == 300
    assert conf["result_backend_transport_options"] == {"master_name": "cloudrec"}
    assert conf["redbeat_redis_url"] == "redis-sentinel://"
    options = conf["redbeat_redis_options"]
    assert options["sentinels"] == [("10.0.0.1", 26379), ("::1", 26380)]
    assert (options["service_name"], options["db"], options["password"]) == ("cloudrec", 4, "p@ss")
    plain = celery_config(Settings(redis_url="redis://127.0.0.1:6379/2"))
    assert plain["broker_url"] == plain["redbeat_redis_url"] == "redis://127.0.0.1:6379/2"
    assert plain["broker_transport"] == "worker.transport:Transport"


@pytest.mark.parametrize(
    ("env", "rule"),
    [
        ({"CLOUDREC_REDIS_SENTINELS": "10.0.0.1:26379"}, "go together"),
        ({"CLOUDREC_REDIS_MASTER": "cloudrec"}, "go together"),
        ({"CLOUDREC_REDIS_SENTINELS": "10.0.0.1", "CLOUDREC_REDIS_MASTER": "m"}, "host:port"),
        ({"CLOUDREC_REDIS_SENTINELS": "h:99999", "CLOUDREC_REDIS_MASTER": "m"}, "host:port"),
    ],
)
def test_sentinel_settings_are_checked(monkeypatch: pytest.MonkeyPatch, env, rule):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=rule):
        Settings()

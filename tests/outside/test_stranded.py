"""A caller that forgot the queue: its plain ``send_task("recording.submit", ...)`` lands on
Celery's default queue ``celery``, which a cloudrec worker does not serve (on a shared broker it
would take the caller's own tasks). It is told: ``cloudrec health`` fails with one line naming
the queue, the count and the fix, and the exporter's ``cloudrec_stranded_tasks`` counts it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port
from tests.support.processes import Cloudrec, run_cli, spawn, wait_http
from tests.support.specs import process_spec
from tests.support.venvs import run_outside
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def forgetful_send(broker: str, cname: str) -> str:
    """The README snippet's call without its queue=: where a hurried caller ends up."""
    return (
        "from celery import Celery\n"
        f"app = Celery(broker={broker!r}, backend={broker!r})\n"
        f"print(app.send_task('recording.submit', args=[{process_spec(cname)!r}]).id)\n"
    )


def stranded_gauge(url: str) -> dict[str, float]:
    text = requests.get(url, timeout=5).text
    return {
        sample.labels["queue"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "cloudrec_stranded_tasks"
        for sample in family.samples
    }


def test_a_task_sent_to_the_default_queue_is_reported_stranded(
    cloudrec: Cloudrec, outside_python: Path, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(cloudrec.redis_url)
    cloudrec.start_worker()
    assert run_cli(["health"], cloudrec.env).returncode == 0

    sent = run_outside(outside_python, forgetful_send(cloudrec.redis_url, "forgot"), tmp_path)
    assert sent.returncode == 0, sent.stderr[-2000:]
    port = free_port()
    exporter = spawn(
        "metrics", ["metrics", "--host", "127.0.0.1", "--port", str(port)], cloudrec.env,
        cloudrec.log_dir,
    )  # fmt: skip
    cloudrec.procs.append(exporter)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_http(url)
    health = run_cli(["health"], cloudrec.env)

    assert client.llen("celery") == 1  # the worker left it alone
    assert cloudrec.runtime.store.ids() == []
    assert health.returncode == 1
    lines = health.stderr.strip().splitlines()
    assert len(lines) == 1, health.stderr
    assert "1 cloudrec task message(s) (recording.submit) waiting on queue 'celery'" in lines[0]
    assert "queue='cloudrec'" in lines[0]
    assert stranded_gauge(url) == {"celery": 1.0}

    # Moved to the intake (the fix the line names), it runs and the report clears.
    client.rpoplpush("celery", "cloudrec")
    wait_for(lambda: cloudrec.runtime.store.ids(), 30, 0.2, "the job to be submitted")
    assert run_cli(["health"], cloudrec.env).returncode == 0
    assert stranded_gauge(url) == {"celery": 0.0}


def test_opt_in_serves_the_default_queue_as_intake(
    cloudrec: Cloudrec, outside_python: Path, tmp_path: Path
) -> None:
    cloudrec.env["CLOUDREC_INTAKE_DEFAULT_QUEUE"] = "true"
    cloudrec.env["CLOUDREC_CALLBACK_QUEUE"] = "myapp.callbacks"  # not "celery": served now
    cloudrec.start_worker()

    sent = run_outside(outside_python, forgetful_send(cloudrec.redis_url, "optin"), tmp_path)

    assert sent.returncode == 0, sent.stderr[-2000:]
    ids = wait_for(lambda: cloudrec.runtime.store.ids(), 30, 0.2, "the job to be submitted")
    assert cloudrec.runtime.store.get(ids[0]).cname == "optin"
    assert run_cli(["health"], cloudrec.env).stdout.strip() == "ok"

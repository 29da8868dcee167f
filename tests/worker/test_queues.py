"""The queue layout (intake, internal queues, the opt-in default queue) and the detection of
cloudrec tasks stranded on queues no cloudrec worker serves, on a real Redis."""

from __future__ import annotations

import base64
import json

import pytest
import redis
from prometheus_client import generate_latest
from pydantic import ValidationError

from config import Settings
from worker.celery_app import app, celery_config, configure
from worker.exporter import build_registry
from worker.queues import (
    PUBLIC_TASKS,
    cloudrec_task,
    find_stranded,
    priority_keys,
    queue_layout,
    stranded_counts,
    watched_queues,
)


def message(task: str, protocol: int = 2) -> bytes:
    if protocol == 1:
        body = base64.b64encode(json.dumps({"task": task, "args": []}).encode()).decode()
        return json.dumps(
            {"body": body, "headers": {}, "properties": {"body_encoding": "base64"}}
        ).encode()
    return json.dumps({"body": "W10=", "headers": {"task": task, "id": "x"}}).encode()


def test_layout_polls_control_then_recording_then_the_intake() -> None:
    settings = Settings()
    config = celery_config(settings)
    assert queue_layout(settings) == [
        "cloudrec.control",
        "cloudrec.recording",
        "cloudrec",
        "cloudrec.callbacks",  # deliveries late: a slow receiver never delays a job
        "cloudrec.merge",  # merges last: minutes of work that must never delay anything else
    ]
    assert [q.name for q in config["task_queues"]] == queue_layout(settings)
    assert "celery" not in queue_layout(settings)


def test_public_tasks_route_to_the_intake_and_steps_do_not(redis_url: str) -> None:
    configure(Settings(redis_url=redis_url, intake_queue="rec-in"))
    try:
        route = app.amqp.router.route
        for name in PUBLIC_TASKS:
            assert route({}, name)["queue"].name == "rec-in", name
        assert route({}, "recording.stop")["queue"].name == "cloudrec.control"
        assert route({}, "recording.acquire")["queue"].name == "cloudrec.recording"
    finally:
        configure(Settings(redis_url=redis_url))


def test_opt_in_adds_the_default_queue_to_the_intake() -> None:
    settings = Settings(intake_default_queue=True, callback_queue="myapp")
    assert queue_layout(settings)[-4:-2] == ["cloudrec", "celery"]
    assert watched_queues(settings) == []
    assert watched_queues(Settings()) == ["celery"]
    assert watched_queues(Settings(intake_queue="rec-in")) == ["celery", "cloudrec"]


def test_cloudrec_task_reads_protocol_2_headers_and_protocol_1_bodies() -> None:
    assert cloudrec_task(message("recording.submit")) == "recording.submit"
    assert cloudrec_task(message("recording.status", protocol=1)) == "recording.status"
    assert cloudrec_task(message("billing.charge")) is None
    assert cloudrec_task(b"not json") is None
    assert cloudrec_task(b"[1, 2]") is None


def test_stranded_messages_are_found_on_every_priority_list(redis_client: redis.Redis) -> None:
    redis_client.lpush("celery", message("recording.submit"), message("billing.charge"))
    redis_client.lpush("celery\x06\x163", message("recording.status"))
    redis_client.lpush("celery\x06\x169", message("recording.submit", protocol=1))
    redis_client.lpush("cloudrec", message("recording.submit"))  # served: not stranded

    (stranded,) = find_stranded(redis_client, Settings())

    assert (stranded.queue, stranded.count, stranded.partial) == ("celery", 3, False)
    assert stranded.tasks == ("recording.status", "recording.submit")
    line = stranded.describe()
    assert "3 cloudrec task message(s)" in line and "queue 'celery'" in line
    assert "queue='cloudrec'" in line and "\n" not in line
    opted_in = Settings(intake_default_queue=True, callback_queue="myapp")
    assert find_stranded(redis_client, opted_in) == []


def test_reading_is_bounded_by_the_sample(redis_client: redis.Redis) -> None:
    redis_client.lpush("celery", *[message("recording.submit")] * 30)

    (stranded,) = find_stranded(redis_client, Settings(), sample=10)

    assert (stranded.count, stranded.partial) == (10, True)
    assert stranded.describe().startswith("10+ cloudrec task message(s)")


def test_no_report_without_cloudrec_messages(redis_client: redis.Redis) -> None:
    redis_client.lpush("celery", message("billing.charge"))
    assert find_stranded(redis_client, Settings()) == []
    assert stranded_counts(redis_client, Settings()) == {"celery": 0}
    assert priority_keys("q")[:2] == ["q", "q\x06\x161"]


def test_the_exporter_exposes_a_gauge_per_watched_queue(redis_client: redis.Redis) -> None:
    redis_client.lpush("celery", message("recording.submit"), message("recording.submit"))
    redis_client.lpush("cloudrec", message("recording.submit"))
    renamed = Settings(intake_queue="rec-in")

    text = generate_latest(build_registry(redis_client, settings=renamed)).decode()

    assert 'cloudrec_stranded_tasks{queue="celery"} 2.0' in text
    assert 'cloudrec_stranded_tasks{queue="cloudrec"} 1.0' in text


def test_the_intake_cannot_take_an_internal_queue_name() -> None:
    with pytest.raises(ValidationError, match="reserved for cloudrec's internal queues"):
        Settings(intake_queue="cloudrec.control")
    with pytest.raises(ValidationError, match="intake_queue"):
        Settings(intake_queue="two,queues")


def test_callback_tasks_never_go_to_a_queue_cloudrec_serves() -> None:
    with pytest.raises(ValidationError, match="CLOUDREC_CALLBACK_QUEUE"):
        Settings(intake_default_queue=True)  # callbacks default to "celery"
    with pytest.raises(ValidationError, match="callback_queue"):
        Settings(callback_queue="cloudrec")
    assert Settings(intake_default_queue=True, callback_queue="myapp").intake_default_queue


def test_a_stop_sent_and_not_begun_is_not_sent_again(redis_url: str, redis_client: redis.Redis):
    """A deadline whose lease runs out while its stop task still waits (workers behind) does not
    add a second stop task; once a task began (its heartbeat keeps the lease), it is sent again."""
    import time

    from tasks.recording import PENDING_SEND_TTL, send_due
    from worker.celery_app import CONTROL_QUEUE
    from worker.leases import PendingSends
    from worker.store import DueEntry

    configure(Settings(redis_url=redis_url))
    entry = DueEntry("stop", "pending-1", time.time())
    send_due([entry])
    assert redis_client.llen(CONTROL_QUEUE) == 1
    assert 0 < redis_client.pttl("cloudrec:sent:stop:pending-1") <= PENDING_SEND_TTL * 1000
    send_due([entry, DueEntry("stop", "other", time.time())])
    assert redis_client.llen(CONTROL_QUEUE) == 2  # only "other" went
    PendingSends(redis_client, PENDING_SEND_TTL).begun("stop", "pending-1")
    send_due([entry])
    assert redis_client.llen(CONTROL_QUEUE) == 3

"""Tier 1: the one step table (worker.steps) says what routing, dispatch and retries always did,
and the stored strings (task names, due actions, stop reasons, Redis keys) are unchanged."""

from __future__ import annotations

from config import Settings
from worker import keys
from worker.celery_app import celery_config
from worker.queues import (
    CALLBACKS_QUEUE,
    CONTROL_QUEUE,
    MERGE_QUEUE,
    PUBLIC_TASKS,
    RECORDING_QUEUE,
)
from worker.steps import PUBLIC_STEPS, STEPS, Step, StopReason, attempts, due_leases, task_name


def test_every_step_has_one_row_and_its_stable_task_name():
    assert set(STEPS) == set(Step)
    assert task_name(Step.STOP_NOW) == "recording.stop_now"
    assert tuple(task_name(s) for s in PUBLIC_STEPS) == PUBLIC_TASKS


def test_routing_reads_the_table():
    settings = Settings(intake_queue="intake-x")
    routes = celery_config(settings)["task_routes"]
    queue = {name: route["queue"] for name, route in routes.items()}
    assert queue["recording.stop"] == queue["recording.dispatch"] == CONTROL_QUEUE
    for name in ("acquire", "start", "watch", "reconcile", "fire_schedule"):
        route = queue.get(f"recording.{name}", queue["recording.*"])
        assert route == RECORDING_QUEUE, name
    assert queue["recording.callback"] == CALLBACKS_QUEUE
    assert queue["recording.merge"] == MERGE_QUEUE
    assert all(queue[name] == "intake-x" for name in PUBLIC_TASKS)


def test_retries_and_due_leases_read_the_table():
    assert [attempts(s) for s in (Step.ACQUIRE, Step.START, Step.WATCH, Step.STOP)] == [
        8,
        8,
        20,
        10_000,
    ]
    assert due_leases() == {"start": 300.0, "callback": 120.0, "merge": 600.0}


def test_stored_strings_are_unchanged():
    assert [r.value for r in StopReason] == [
        "deadline",
        "stop",
        "cancel",
        "error",
        "start_timeout",
        "sid_unknown",
    ]
    assert keys.claim_key(Step.START, "j1") == "cloudrec:claim:start:j1"
    assert keys.due_member(Step.STOP, "j1") == "stop:j1"
    assert (
        keys.schedule_slot_key("daily", 1700000000.4) == "cloudrec:schedule:daily:slot:1700000000"
    )
    assert keys.vault_key("schedule/daily") == "cloudrec:vault:schedule/daily"
    assert keys.ncs_uid_key("room", "7") == "cloudrec:ncs:uid:7:room"
    assert keys.callback_slots_key("w1") == "cloudrec:callback-slots:w1"

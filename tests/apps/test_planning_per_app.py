"""Each App ID's stops are planned on their own budget, at their app's rate (worker.planner,
tasks.recording.plan_stops / send_planned): a crunch of one app marks only that app's stops
behind, so the other app's stops, starts and queries never wait for it (a real Redis)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks.recording import plan_stops, send_planned
from tests.support.specs import small_spec
from tests.support.stack import make_settings
from worker import jobcodec
from worker.celery_app import configure, runtime
from worker.keys import job_key, plan_behind_key
from worker.limiter import Priority
from worker.planner import PlannedStop, budget_key
from worker.reconcile import planned_stops
from worker.recording import submit
from worker.runtime import Runtime
from worker.states import JobState
from worker.store import DueEntry

S = JobState
PATH = [(S.QUEUED, S.ACQUIRING), (S.ACQUIRING, S.STARTING), (S.STARTING, S.RECORDING)]
SCHOOL_ID = "school-app-id"
SCHOOL = {
    "app_id": SCHOOL_ID,
    "customer_id": "school-customer",
    "customer_secret": "school-customer-secret",
    "api_rate_limit": 2,
}


@pytest.fixture
def rt(redis_url: str) -> Iterator[Runtime]:
    # No API call is made here: the emulator's address is never reached.
    runtime = Runtime.build(make_settings(redis_url, "http://127.0.0.1:9", apps={"school": SCHOOL}))
    yield runtime
    runtime.close()


def recording(rt: Runtime, name: str, count: int, **spec: object) -> list[str]:
    ids = []
    for i in range(count):
        job, _ = submit(rt, small_spec(f"{name}-{i}", duration=600, **spec))
        for source, target in PATH:
            rt.store.transition(job.job_id, {source}, target, sid="s")
        ids.append(job.job_id)
    return ids


def test_each_apps_plan_is_its_app_ids_budget_at_its_rate(rt: Runtime) -> None:
    plans = rt.stop_plans()
    assert set(plans) == {"default", "school"}
    assert (plans["school"].budget, plans["school"].rate) == (budget_key(SCHOOL_ID), 2)
    settings = rt.settings
    assert (plans["default"].budget, plans["default"].rate) == (
        budget_key(settings.app_id),
        settings.api_rate_limit,
    )
    # Each app's limiter yields to its own budget's stops behind, nobody else's.
    assert rt.limiters["school"]._behind_key == plan_behind_key(budget_key(SCHOOL_ID))
    assert rt.limiters["default"]._behind_key == plan_behind_key(budget_key(settings.app_id))


def test_deadline_stops_go_to_their_apps_plan_and_a_crunch_marks_only_that_app(
    rt: Runtime,
) -> None:
    school = recording(rt, "plan-school", 12, app="school")
    plain = recording(rt, "plan-plain", 2)
    # The record names the app only when it is not the default (per-job state stays small).
    stored = [jobcodec.parse(rt.redis.get(job_key(ids[0]))) for ids in (plain, school)]
    assert "a" not in stored[0] and stored[1]["a"] == b"school"  # "a": the app's code
    now = rt.store.get(school[0]).stop_at  # every deadline is the same second, roughly
    entries = [DueEntry("stop", j, now) for j in school + plain]
    assert plan_stops(rt, entries) == []  # all planned, none sent as they are
    plans = rt.stop_plans()
    assert {s.job_id for s in plans["school"].stops()} == set(school)
    assert {s.job_id for s in plans["default"].stops()} == set(plain)

    # A round: 12 stops at 2/s are a crunch for the school; 2 stops at 10/s are not for the
    # default app. Rounds run in the past here (the deadlines are 600 s ahead): plan as of then.
    for plan in plans.values():
        plan.round(now, horizon=1.0, lease=60)
    assert rt.redis.exists(plan_behind_key(budget_key(SCHOOL_ID)))
    assert not rt.redis.exists(plan_behind_key(budget_key(rt.settings.app_id)))
    assert rt.limiters["school"].try_acquire(Priority.START) > 0  # the school's start waits
    assert rt.limiters["school"].try_acquire(Priority.STOP) == 0.0  # its stops go
    for priority in (Priority.START, Priority.QUERY, Priority.STOP):
        assert rt.limiters["default"].try_acquire(priority) == 0.0  # the other app: untouched
    # The default app's two stops went out in that round, at their deadline; the school's
    # first ones too, the rest wait in its plan.
    assert plans["default"].stops() == []
    left = {s.job_id for s in plans["school"].stops()}
    assert 0 < len(left) < len(school)
    # The reconciler finds each waiting stop in its own app's plan (none is overdue-and-lost).
    records = [rt.store.get(j) for j in school]
    assert planned_stops(rt, records, now + 3600) == left


def test_send_planned_serves_every_apps_budget(redis_url: str) -> None:
    # The dispatcher's round through the Celery app (its broker is this Redis): both apps'
    # plans are served, each stop sent to the recording queue.
    configure(make_settings(redis_url, "http://127.0.0.1:9", apps={"school": SCHOOL}))
    rt = runtime()
    school = recording(rt, "send-school", 1, app="school")
    plain = recording(rt, "send-plain", 1)
    rt.stop_plan("school").admit([PlannedStop(j, 0.0) for j in school])
    rt.stop_plan().admit([PlannedStop(j, 0.0) for j in plain])
    # Both deadlines are past: one round sends both, each from its own app's plan.
    assert send_planned(rt) == 2
    assert rt.stop_plan("school").stops() == rt.stop_plan().stops() == []
    leased = rt.store.due_scores("stop", school + plain)
    assert all(score is not None for score in leased)  # leased from their send time

"""Tier 1: stops planned against the API budget (worker.planner), on a real Redis.

The plan itself (which stop goes when), the plan's state in Redis (two dispatchers never send
one stop twice), the limiter making every other call wait while stops are behind, the
dispatcher taking deadline stops into the plan (and nothing else), and ``stop_early_max`` in
the job spec."""

from __future__ import annotations

import itertools
import time

import pytest

from tasks.recording import plan_stops
from tests.support.specs import small_spec
from tests.support.waiting import wait_for
from worker.errors import JobSpecError
from worker.keys import plan_behind_key
from worker.limiter import ApiRateLimiter, Priority
from worker.planner import (
    PlannedStop,
    StopPlan,
    latest_times,
    least_lateness,
    plan_sends,
    release_time,
)
from worker.recording import submit
from worker.states import JobState
from worker.store import DueEntry

D = 10_000.0  # a deadline
S = JobState
PATH = [(S.QUEUED, S.ACQUIRING), (S.ACQUIRING, S.STARTING), (S.STARTING, S.RECORDING)]


def schedule(
    stops: list[PlannedStop], start: float, rate: float
) -> list[tuple[PlannedStop, float]]:
    return latest_times(stops, start, rate, least_lateness(stops, start, rate))


@pytest.mark.parametrize(
    ("count", "rate", "early", "bound"),
    [(3000, 10, 0, 300), (3000, 10, 120, 180), (40, 4, 0, 10), (40, 4, 5, 5)],
)
def test_simultaneous_deadlines_get_the_least_max_lateness(count, rate, early, bound):
    stops = [PlannedStop(f"j{i}", D, early) for i in range(count)]
    times = schedule(stops, D - early - 10, rate)
    lateness = max(at - s.deadline for s, at in times)
    assert bound - 1.0 / rate - 1e-6 <= lateness <= bound  # max(0, N/R - T), less one slot
    assert all(at >= s.release - 1e-9 for s, at in times)  # never before its release
    ordered = sorted(at for _, at in times)
    assert all(b - a >= 1.0 / rate - 1e-9 for a, b in itertools.pairwise(ordered))  # the rate


def test_a_stop_goes_early_only_when_a_crunch_needs_its_slot():
    alone = plan_sends([PlannedStop("a", D, 120)], D - 120, 10, D - 117)
    assert alone.lateness == 0 and not alone.crunch and alone.sends == []  # not yet: at D
    assert schedule([PlannedStop("a", D, 120)], D - 120, 10)[0][1] == D
    # Twenty stops at 10/s with 5 s of tolerance: on time, the first 1.9 s early, no earlier.
    times = schedule([PlannedStop(f"j{i}", D, 5) for i in range(20)], D - 5, 10)
    assert max(at for _, at in times) == pytest.approx(D)
    assert min(at for _, at in times) == pytest.approx(D - 1.9)


def test_earliest_deadline_first_and_a_tight_stop_before_a_tolerant_one():
    tolerant = [PlannedStop(f"t{i}", D, 120) for i in range(1200)]
    tight = [PlannedStop(f"z{i}", D, 0) for i in range(600)]
    times = schedule(tolerant + tight, D - 120, 10)
    late = {s.job_id: at - s.deadline for s, at in times}
    # 1,800 stops, 1,200 of them allowed 120 s early: 60 s of lateness, for anyone.
    assert max(late.values()) == pytest.approx(59.9)
    assert all(at >= s.release - 1e-9 for s, at in times)


def test_only_this_rounds_sends_leave_the_plan(redis_url, redis_client):
    plan = StopPlan(redis_client, "app-a", 4)
    now = time.time()
    plan.admit([PlannedStop(f"j{i}", now + 1, 0) for i in range(40)])
    sends = plan.round(now, horizon=3.0, lease=5.0)
    assert [s.job_id for s, _ in sends] and len(sends) == 8  # due within 3 s at 4/s: 1 s..3 s
    assert all(now + 1 - 1e-6 <= at < now + 3 for _, at in sends)
    assert len(plan.stops()) == 32
    assert plan.behind()  # 40 stops at 4/s: 10 s behind; the other calls wait
    # The next round starts where the budget is free again: no slot is handed out twice, and
    # nothing is committed beyond the horizon from now.
    later = plan.round(now + 1, horizon=3.0, lease=5.0)
    assert min(at for _, at in later) >= max(at for _, at in sends) + 0.25 - 1e-6
    assert max(at for _, at in later) < now + 4 and len(later) == 4


def test_two_dispatchers_never_send_one_stop_twice(redis_client):
    now = time.time()
    one, two = StopPlan(redis_client, "app-a", 10), StopPlan(redis_client, "app-a", 10)
    one.admit([PlannedStop(f"j{i}", now, 0) for i in range(10)])
    sent = [s.job_id for s, _ in one._take([(s, now) for s in one.stops()], 5.0)]
    again = two._take([(s, now) for s in [PlannedStop(f"j{i}", now, 0) for i in range(10)]], 5.0)
    assert sorted(sent) == sorted(f"j{i}" for i in range(10)) and again == []


def test_the_behind_mark_lasts_until_the_last_planned_stop_has_gone(redis_client):
    plan = StopPlan(redis_client, "app-a", 10)
    now = time.time()
    plan.admit([PlannedStop(f"j{i}", now, 0) for i in range(5)])
    sends = plan.round(now, horizon=10.0, lease=5.0)  # all five: now .. now + 0.4
    assert len(sends) == 5 and plan.stops() == [] and plan.behind()
    # A second after the last one, at most, the other calls go again.
    assert 0 < redis_client.pttl(plan_behind_key("app-a")) <= 1500
    plan.round(time.time(), horizon=10.0, lease=5.0)  # nothing left: the mark runs out
    wait_for(lambda: not plan.behind(), 5.0, 0.05, "the mark to run out")


def test_other_calls_wait_while_stops_are_behind(redis_client):
    behind = plan_behind_key("app-a")
    limiter = ApiRateLimiter(redis_client, 10, key="cloudrec:test:rl", stops_behind_key=behind)
    assert limiter.try_acquire(Priority.QUERY) == 0.0
    redis_client.set(behind, "1", px=2000)
    for priority in (Priority.START, Priority.UPDATE, Priority.QUERY):
        assert 0 < limiter.try_acquire(priority) <= 1.0  # waits, the window nearly empty
    assert limiter.try_acquire(Priority.STOP) == 0.0  # a stop goes
    redis_client.delete(behind)
    assert limiter.try_acquire(Priority.START) == 0.0


def test_the_dispatcher_plans_deadline_stops_and_sends_the_rest_as_before(rt):
    early, _ = submit(rt, small_spec("plan-a", duration=600, stop_early_max=120))
    assert rt.store.due_at("stop", early.job_id) == release_time(early.stop_at, 120)
    recording, _ = submit(rt, small_spec("plan-b", duration=600))
    cancelled, _ = submit(rt, small_spec("plan-c", duration=600))
    for job in (early, recording, cancelled):
        for source, target in PATH:
            rt.store.transition(job.job_id, {source}, target, sid="s")
    rt.store.transition(cancelled.job_id, {JobState.RECORDING}, None, stop_reason="cancel")
    entries = [DueEntry("stop", j.job_id, j.stop_at) for j in (early, recording, cancelled)]
    entries.append(DueEntry("start", "other", time.time()))
    direct = plan_stops(rt, entries)
    assert [(e.action, e.job_id) for e in direct] == [
        ("stop", cancelled.job_id),
        ("start", "other"),
    ]
    planned = {s.job_id: s for s in rt.stop_plan().stops()}
    assert set(planned) == {early.job_id, recording.job_id}
    assert planned[early.job_id].release == pytest.approx(early.stop_at - 120)
    # While planned, the due entry stays out of the dispatcher's way.
    assert (rt.store.due_at("stop", early.job_id) or 0) > early.stop_at + 60


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (-1, "greater than or equal to 0"),
        ("soon", "must be a number"),
        (5000, "CLOUDREC_STOP_EARLY_CAP = 3600"),
        (600, "less than the recording's length"),
    ],
)
def test_stop_early_max_is_validated(rt, value, rule):
    with pytest.raises(JobSpecError) as caught:
        submit(rt, small_spec("bad-early", duration=600, stop_early_max=value))
    assert "stop_early_max" in str(caught.value) and rule in str(caught.value)
    assert rt.store.due_count() == 0  # nothing stored


def test_a_call_the_service_refused_gives_its_slot_back(redis_client):
    # Stops paced at the limit meet a 429 now and then (the service's window is not ours to
    # the millisecond); the refused call did not count there, so it does not count here.
    limiter = ApiRateLimiter(redis_client, 2, key="cloudrec:test:refund")
    assert limiter.try_acquire(Priority.STOP) == limiter.try_acquire(Priority.STOP) == 0.0
    assert limiter.try_acquire(Priority.STOP) > 0
    limiter.refund()
    assert limiter.try_acquire(Priority.STOP) == 0.0
    limiter.refund()
    limiter.refund()  # only the last admitted call of this thread, once
    assert redis_client.zcard("cloudrec:test:refund") == 1

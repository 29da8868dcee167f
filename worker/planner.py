"""Stops planned against the API budget.

The service allows so many requests per second per App ID (10): 3,000 recordings that end at
10:00 need 300 s of that budget to be stopped, whatever the machine. Sent as they fall due, the
stops race each other and every query and start for the same slots. Planned, the dispatcher
sees the stops due and the budget, and gives each stop a send time so that the worst lateness is
the least the budget allows:

- a job may let its stop go early, up to ``stop_early_max`` seconds (default 0: never early),
  so a stop is *released* at ``deadline - stop_early_max`` (its due entry is scored there,
  :func:`release_time`) and never sent before;
- the released stops of one budget wait in a sorted set by deadline (:data:`plan_key`), and
  every dispatch round plans them (:func:`plan_sends`): earliest deadline first from each stop's
  release, at the budget's rate, which gives the least possible maximum lateness ``L`` (for
  stops that each take one request, EDF from release times is optimal); then each stop is
  placed *as late as* that ``L`` allows (the same schedule built backwards), so a stop goes
  early only when a crunch ahead needs its slot, never because budget happens to be free;
- the stops placed within the next round are sent, each to run at its time; the rest stay in
  the set and are planned again next round with whatever arrived meanwhile;
- while the plan uses the whole budget (a stop goes early or late), the budget's *stops behind*
  key is set, and every other call for that budget (acquire, start, update, query) waits in the
  limiter (:mod:`worker.limiter`) until the stops have caught up.

N simultaneous deadlines at rate R with tolerance T: the least max lateness is about
``max(0, N/R - T)`` (3,000 at 10/s: 300 s with T = 0, 180 s with T = 120). Stops are paced at
:data:`PACE` (99 %) of the budget, which leaves room for the service's and our clocks to
disagree by a few milliseconds without a 429: 3 s more over 300 s.

Budgets are keyed by App ID (:func:`budget_key`): each app's stops wait in its App ID's plan, at
that app's rate (``Runtime.stop_plan(app)``), and each app's limiter reads its own budget's mark,
so one app's crunch holds back only its own calls. Per job this adds nothing to Redis while its
stop is not due: the tolerance is one small hash field (only when non-zero) and the due entry's
score; a released stop is one member of its budget's plan until it is sent.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from worker.keys import (
    DUE_KEY,
    due_member,
    plan_behind_key,
    plan_free_key,
    plan_from_key,
    plan_key,
)

# A planned stop's due entry is pushed this far out while it waits in the plan (the plan is the
# stop's handle then; a dispatcher killed between taking a stop from the plan and sending it
# leaves the reconciler to re-drive the overdue job).
PLAN_HOLD_SECONDS = 3600.0
# Planned stops are paced at this share of the budget. The service counts its window on arrival,
# our limiter on admission: paced at exactly the limit, every few milliseconds of jitter between
# a call and the one ten calls later turn into a 429 (measured: one stop in three refused at
# 10/s on a loaded machine), and each 429 costs a resend. One per cent of headroom absorbs
# the jitter; it costs 3 s over 300 s (paced at 100 % on an idle machine, 3,000 stops came
# 1.2 s later than at 99 %, with more 429s: benchmarks/README.md).
PACE = 0.99
# How long the "stops behind" mark outlives the round that set it, at most (rounds renew it):
# a dispatcher that stops planning frees the budget for the others within this.
BEHIND_MAX_SECONDS = 5.0
# The other calls of a budget give way this long before its crunch's first stop goes: the
# service counts requests over one second, so the stops find that window empty. Not earlier:
# a crunch planned seconds ahead (the dispatch lookahead) must not hold back the starts that
# the budget has room for meanwhile.
CRUNCH_LEAD_SECONDS = 1.0


@dataclass(frozen=True)
class PlannedStop:
    """A stop the planner may send: never before ``release``, ideally at ``deadline``."""

    job_id: str
    deadline: float
    early: float = 0.0  # the job's stop_early_max

    @property
    def release(self) -> float:
        return self.deadline - self.early


@dataclass(frozen=True)
class Plan:
    """One round's decision for one budget."""

    sends: list[tuple[PlannedStop, float]]  # (stop, when to send it), in time order
    lateness: float  # the least max lateness the budget allows the stops in the plan
    crunch: bool  # the budget is the bottleneck: some stop goes before or after its deadline
    busy_until: float  # when the last planned stop goes (the crunch's end)
    busy_from: float = 0.0  # when the first planned stop goes (the crunch's start)


def release_time(deadline: float, early: float) -> float:
    """When a stop may be sent at the earliest (its due entry's score)."""
    return deadline - max(0.0, early)


def budget_key(app_id: str) -> str:
    """The budget a job's calls spend: its App ID's (each App ID has its own limit)."""
    return app_id


def least_lateness(stops: Sequence[PlannedStop], start: float, rate: float) -> float:
    """The least max lateness (>= 0) of sending ``stops`` from ``start`` at ``rate`` per second,
    none before its release: earliest deadline first among the released, one every 1/rate."""
    gap = 1.0 / rate
    pending = sorted(stops, key=lambda s: s.release)
    ready: list[float] = []
    worst = 0.0
    now = start
    i = 0
    while i < len(pending) or ready:
        if not ready:
            now = max(now, pending[i].release)
        while i < len(pending) and pending[i].release <= now:
            heapq.heappush(ready, pending[i].deadline)
            i += 1
        worst = max(worst, now - heapq.heappop(ready))
        now += gap
    return worst


def latest_times(
    stops: Sequence[PlannedStop], start: float, rate: float, lateness: float
) -> list[tuple[PlannedStop, float]]:
    """Each stop's send time, as late as ``lateness`` allows: the EDF schedule built backwards
    (from the latest slot down, the stop whose release is latest takes it), never before its
    release nor ``start``. Returned in time order."""
    gap = 1.0 / rate
    by_target = sorted(stops, key=lambda s: s.deadline, reverse=True)
    ready: list[tuple[float, float, int]] = []  # (-lowest time, -deadline, index)
    out: list[tuple[PlannedStop, float]] = []
    slot = math.inf
    i = 0
    while i < len(by_target) or ready:
        if not ready:
            slot = min(slot, by_target[i].deadline + lateness)
        while i < len(by_target) and by_target[i].deadline + lateness >= slot:
            stop = by_target[i]
            heapq.heappush(ready, (-max(stop.release, start), -stop.deadline, i))
            i += 1
        lowest, _, index = heapq.heappop(ready)
        # Never before its release: if rounding put the slot there, the stop keeps its release.
        at = max(slot, -lowest)
        out.append((by_target[index], at))
        slot = at - gap
    out.reverse()
    return out


def plan_sends(stops: Sequence[PlannedStop], start: float, rate: float, until: float) -> Plan:
    """Plan ``stops`` on a budget of ``rate`` requests per second that is free from ``start``:
    the sends due before ``until`` (this round's), and whether the budget is in a crunch."""
    if not stops:
        return Plan([], 0.0, False, start)
    lateness = least_lateness(stops, start, rate)
    times = latest_times(stops, start, rate, lateness)
    # A crunch: some stop goes more than one slot off its deadline, early or late.
    crunch = any(abs(at - stop.deadline) > 1.0 / rate + 1e-6 for stop, at in times)
    sends = [(stop, at) for stop, at in times if at < until]
    return Plan(sends, lateness, crunch, times[-1][1], times[0][1])


# -- the plan in Redis ---------------------------------------------------------------------------
def _member(stop: PlannedStop) -> str:
    # The tolerance travels in the member (job ids never hold a space): planning reads nothing
    # else per stop. The score is the deadline.
    return f"{stop.job_id} {stop.early:g}"


def _parse(member: bytes | str, score: float) -> PlannedStop:
    text = member.decode() if isinstance(member, bytes) else member
    job_id, _, early = text.rpartition(" ")
    return PlannedStop(job_id, score, float(early))


class StopPlan:
    """One budget's released stops, waiting for their send time."""

    def __init__(self, client: redis.Redis, budget: str, rate: float) -> None:
        self.redis = client
        self.budget = budget
        self.rate = rate
        self.key = plan_key(budget)

    def admit(self, stops: Iterable[PlannedStop]) -> int:
        """Take released stops into the plan (again: a no-op); their due entries are held out
        of the dispatcher's way meanwhile. Returns how many were new."""
        stops = list(stops)
        if not stops:
            return 0
        hold = {due_member("stop", s.job_id): s.deadline + PLAN_HOLD_SECONDS for s in stops}
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key, {_member(s): s.deadline for s in stops})
            pipe.zadd(DUE_KEY, hold, xx=True)
            added, _ = pipe.execute()
        return int(added)

    def stops(self) -> list[PlannedStop]:
        raw = self.redis.zrange(self.key, 0, -1, withscores=True)
        return [_parse(member, float(score)) for member, score in cast(list[Any], raw)]

    def planned(self, stops: Sequence[PlannedStop]) -> list[bool]:
        """Whether each stop waits in this plan."""
        if not stops:
            return []
        scores = self.redis.zmscore(self.key, [_member(s) for s in stops])
        return [s is not None for s in scores]

    def round(self, now: float, horizon: float, lease: float) -> list[tuple[PlannedStop, float]]:
        """Plan the waiting stops; take this round's sends out of the plan and return them
        (each with its send time). Marks the budget's stops behind while in a crunch."""
        free = self.redis.get(plan_free_key(self.budget))
        start = max(now, float(free) if free is not None else now)
        # Only this round's sends are committed, up to ``horizon`` from now (never from where
        # the budget is free: the commitments would run ahead of the clock round after round).
        pace = self.rate * PACE
        plan = plan_sends(self.stops(), start, pace, now + horizon)
        committed_from = self._committed_from(now) if start > now else None
        self._mark(plan, now, committed_from)
        if not plan.sends:
            return []
        mine = self._take(plan.sends, lease)
        if mine:
            last = max(at for _, at in mine)
            self.redis.set(plan_free_key(self.budget), repr(last + 1.0 / pace), px=60_000)
            if committed_from is None:  # a new run of commitments: where it begins
                first = min(at for _, at in mine)
                self.redis.set(plan_from_key(self.budget), repr(first), px=60_000)
        return mine

    def _committed_from(self, now: float) -> float:
        """When the stops earlier rounds took (and that still go until the budget is free)
        begin: a crunch is under way from then."""
        value = self.redis.get(plan_from_key(self.budget))
        return float(value) if value is not None else now

    def _take(
        self, sends: list[tuple[PlannedStop, float]], lease: float
    ) -> list[tuple[PlannedStop, float]]:
        """Remove the sends from the plan; keep those this process removed (two dispatchers
        never send the same stop) and lease their due entries from their send time."""
        with self.redis.pipeline(transaction=False) as pipe:
            for stop, _ in sends:
                pipe.zrem(self.key, _member(stop))
            removed = pipe.execute()
        mine = [send for send, gone in zip(sends, removed, strict=True) if gone]
        if mine:
            # xx: a job that ended meanwhile dropped its entry; it stays dropped.
            leased = {due_member("stop", s.job_id): at + lease for s, at in mine}
            self.redis.zadd(DUE_KEY, leased, xx=True)
        return mine

    def _mark(self, plan: Plan, now: float, committed_from: float | None) -> None:
        # Set once the crunch is under way or about to be (CRUNCH_LEAD_SECONDS before its first
        # stop, planned now or taken by an earlier round), renewed every round of it, to last
        # until a second after its last planned stop (capped: a dispatcher that stops planning
        # frees the budget soon). Once the plan is empty the mark runs out by itself, after the
        # last stops already sent have gone.
        begins = plan.busy_from if committed_from is None else min(plan.busy_from, committed_from)
        if plan.crunch and begins - now <= CRUNCH_LEAD_SECONDS + 1e-6:
            until = min(plan.busy_until - now, BEHIND_MAX_SECONDS) + 1.0
            key = plan_behind_key(self.budget)
            self.redis.set(key, repr(plan.busy_until), px=max(1, int(until * 1000)))

    def behind(self) -> bool:
        return bool(self.redis.exists(plan_behind_key(self.budget)))

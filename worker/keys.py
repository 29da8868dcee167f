"""Every Redis key cloudrec writes, built here and nowhere else.

The names are a stored format: a worker of the next version reads the keys this one wrote, so
no name here may change. Everything lives under ``cloudrec:``::

    jobs, ended, checked, due, state:<state>      the job store's indexes (worker.store)
    ended-count:<hour>                             jobs ended in that hour, by state (and app)
    job:<id>, deliveries:<id>                      one job's record (one string, worker.jobcodec)
                                                   and its delivery counts
    jobdata:<id>                                   the old layout's second key of a record (a
                                                   JSON blob beside a job:<id> hash): read, and
                                                   dropped when the record is rewritten
    claim:<action>:<id>                            a request in flight (worker.leases)
    sent:<action>:<id>                             a step sent, not yet begun (worker.leases)
    vault:<id>                                     an RTC token, encrypted (worker.vault)
    sid_unknown                                    jobs that ended "sid unknown" (worker.recording)
    reconcile:scanned                              the reconciler's round marker
    ratelimit:api[:<app id>]                       an App ID's shared API budget (worker.limiter)
    plan:<budget>[:behind|:free|:from]             stops planned against a budget (worker.planner)
    metrics:<name>                                 counters (worker.metrics)
    ncs:...                                        the NCS ledger (worker.ncs)
    workers, worker:<id>:held, reaping:<id>        message holdings (worker.restorer)
    callback-slots:<node>                          webhook delivery slots (worker.callbacks)
    schedules, schedule:<name>[:slot:<t>]          recurring recordings (worker.schedules)
    redbeat:...                                    celery-redbeat's own keys (its prefix)
    durable                                        the marker a replicated submit waits on
                                                   (worker.redis_conn)

The job store's transition script (worker.store) builds ``state:``, ``due``, ``deliveries:``,
``checked``, ``ended`` and ``ended-count:`` from :data:`PREFIX` inside Redis: those names are
written there too.
"""

from __future__ import annotations

from typing import Literal

PREFIX = "cloudrec:"

# Written before each WAIT (worker.redis_conn): its offset is after every earlier write.
DURABLE_KEY = PREFIX + "durable"

# -- the job store (worker.store) -----------------------------------------------------------
JOBS_KEY = PREFIX + "jobs"
ENDED_KEY = PREFIX + "ended"
DUE_KEY = PREFIX + "due"
CHECKED_KEY = PREFIX + "checked"


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def data_key(job_id: str) -> str:
    """The old layout's big fields of a record (no longer written; worker.store migrates)."""
    return f"{PREFIX}jobdata:{job_id}"


# Jobs ended per hour, by terminal state (hash state -> count; kept ENDED_COUNT_TTL): what the
# exporter counts instead of walking every job of the last day (worker.exporter). The same hash
# counts them by state and app too, in fields "<state>|<app>" (an app name has no "|"; a hash
# written by a version before them has the by-state fields only).
ENDED_COUNT_PREFIX = PREFIX + "ended-count:"
ENDED_COUNT_HOUR = 3600
ENDED_COUNT_TTL = 26 * 3600
ENDED_COUNT_APP_SEP = "|"


def ended_count_key(hour: int) -> str:
    """The counts of jobs that ended in hour ``hour`` (epoch seconds // 3600)."""
    return f"{ENDED_COUNT_PREFIX}{hour}"


def deliveries_key(job_id: str) -> str:
    return f"{PREFIX}deliveries:{job_id}"


def state_key(state: str) -> str:
    """The set of job ids in an active state (a JobState is a StrEnum: its value)."""
    return f"{PREFIX}state:{state}"


def due_member(action: str, job_id: str) -> str:
    """A member of the due zset: what is due (a step name) for which job."""
    return f"{action}:{job_id}"


# -- requests in flight (worker.leases) ------------------------------------------------------
def claim_key(action: str, job_id: str) -> str:
    """The in-flight claim of ``action`` for a job (the start claim is ``claim:start:<id>``)."""
    return f"{PREFIX}claim:{action}:{job_id}"


def sent_key(action: str, job_id: str) -> str:
    """A step the dispatcher sent that has not begun to run yet (worker.leases.PendingSends)."""
    return f"{PREFIX}sent:{action}:{job_id}"


# -- the token vault (worker.vault) ----------------------------------------------------------
VAULT_PREFIX = PREFIX + "vault:"


def vault_key(owner: str) -> str:
    """An encrypted RTC token: a job's (its id) or a schedule template's (``schedule/<name>``)."""
    return VAULT_PREFIX + owner


# -- the recording steps and the reconciler --------------------------------------------------
SID_UNKNOWN_KEY = PREFIX + "sid_unknown"  # zset job id -> when it ended "sid unknown"
SCANNED_KEY = PREFIX + "reconcile:scanned"
LIMITER_KEY = PREFIX + "ratelimit:api"


# -- stops planned against the API budget (worker.planner) --------------------------------------
# One budget's plan is a zset and three marks beside it, "<plan>:<mark>":
# - behind: set while the budget's stops are behind: its other calls wait (worker.limiter);
# - from: when the stops already taken from the plan (until the budget is free) begin;
# - free: when the budget is free again for planned stops (after the sends already made).
PlanMark = Literal["behind", "from", "free"]


def plan_key(budget: str, mark: PlanMark | None = None) -> str:
    """A zset of a budget's released stops waiting to be sent: "<job id> <early>" -> deadline;
    with ``mark``, that mark of the plan."""
    plan = f"{PREFIX}plan:{budget}"
    return f"{plan}:{mark}" if mark else plan


def plan_behind_key(budget: str) -> str:
    return plan_key(budget, "behind")


def plan_from_key(budget: str) -> str:
    return plan_key(budget, "from")


def plan_free_key(budget: str) -> str:
    return plan_key(budget, "free")


def limiter_key(app_id: str, default_app_id: str) -> str:
    """The budget of one App ID. The default app's keeps the name it had before there were
    several apps, so old and new workers of a rolling upgrade share one budget."""
    return LIMITER_KEY if app_id == default_app_id else f"{LIMITER_KEY}:{app_id}"


# -- metrics (worker.metrics) ------------------------------------------------------------------
METRICS_PREFIX = PREFIX + "metrics:"


def metrics_key(name: str) -> str:
    return METRICS_PREFIX + name


# -- the NCS ledger (worker.ncs) -----------------------------------------------------------------
NCS_PREFIX = PREFIX + "ncs:"
NCS_UNCLAIMED_KEY = NCS_PREFIX + "unclaimed"


def ncs_rec_key(sid: str) -> str:
    return f"{NCS_PREFIX}rec:{sid}"


def ncs_log_key(sid: str) -> str:
    return f"{NCS_PREFIX}log:{sid}"


def ncs_dedupe_key(sid: str) -> str:
    return f"{NCS_PREFIX}dedupe:{sid}"


def ncs_uid_key(cname: str, uid: str) -> str:
    return f"{NCS_PREFIX}uid:{uid}:{cname}"


# -- message holdings (worker.restorer) --------------------------------------------------------
WORKERS_KEY = PREFIX + "workers"


def held_key(worker_id: str) -> str:
    return f"{PREFIX}worker:{worker_id}:held"


def reaping_key(worker_id: str) -> str:
    return f"{PREFIX}reaping:{worker_id}"


# -- completion callbacks (worker.callbacks) -----------------------------------------------------
def callback_slots_key(node: str) -> str:
    """A sorted set: holder -> when its hold lapses."""
    return f"{PREFIX}callback-slots:{node}"


# -- schedules (worker.schedules) and celery-redbeat ---------------------------------------------
SCHEDULES_KEY = PREFIX + "schedules"
REDBEAT_PREFIX = PREFIX + "redbeat:"


def schedule_key(name: str) -> str:
    return f"{PREFIX}schedule:{name}"


def schedule_slot_key(name: str, slot: float) -> str:
    """Which firing claimed slot ``slot`` of a schedule (deduplication)."""
    return f"{schedule_key(name)}:slot:{slot:.0f}"

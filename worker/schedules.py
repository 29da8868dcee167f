"""Scheduled (recurring) recordings: a trigger (cron or interval) plus a job template.

Celery beat fires them through celery-redbeat, whose schedule lives in Redis, so schedules are
added, paused and removed while beat runs, and a standby beat takes over when the active one
dies (``redbeat_lock_timeout`` in :mod:`worker.celery_app`). Layout in Redis::

    cloudrec:schedules                 set    schedule names
    cloudrec:schedule:<name>           hash   the schedule (template JSON, trigger, duration...)
    cloudrec:schedule:<name>:slot:<t>  string which firing claimed slot t (deduplication)
    cloudrec:vault:schedule/<name>     string the template's RTC token, encrypted (if any)
    cloudrec:redbeat:schedule:<name>   hash   redbeat's entry: task recording.fire_schedule(name)

The redbeat entry's only argument is the schedule name: beat's entries and task messages are
shown by Flower and stored by the broker, so the template (and any token) never goes there.

Each firing submits one job whose id is ``<name>:<slot>`` (the slot time in UTC, to the
second). The slot is derived from the moment beat sent the firing (a message header), not from
when a worker runs it, so a firing delivered twice, or run late, gets the same job id and the
job store's idempotent submit records it once. Two beats firing the same slot (a lock handover)
land on the same id too.

Size: over 400 lines because the triggers, the Redis records and their redbeat entries change
together (a schedule and its beat entry must never disagree); it is one class, ScheduleBook.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery import Celery
from celery.schedules import crontab, schedule
from pydantic import BaseModel, SecretStr
from redbeat import RedBeatScheduler, RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf

from config import Settings
from worker import keys
from worker.errors import CloudrecError, JobSpecError
from worker.jobs import parse_job_spec
from worker.store import JobRecord, JobStore, iso
from worker.vault import TokenVault

log = logging.getLogger("cloudrec.schedules")

FIRE_TASK = "recording.fire_schedule"
FIRED_AT_HEADER = "cloudrec_fired_at"
SCHEDULES_KEY = keys.SCHEDULES_KEY
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Template fields a schedule decides itself, per firing.
_PER_FIRING_FIELDS = {
    "job_id": "each firing gets the job id <name>:<slot>; remove job_id from the template",
    "start_at": "a firing starts when it fires; remove start_at from the template",
    "stop_at": "a recurring recording needs a duration, not a fixed stop_at; use --duration",
}
# A cron slot is looked up at most this far back (a firing later than this is not matched).
_CRON_LOOKBACK_MINUTES = 7 * 24 * 60
_TOKEN_TTL = 400 * 24 * 3600  # RTC tokens expire long before this; the schedule may not

Submit = Callable[[dict[str, Any]], tuple[JobRecord, bool]]


class ScheduleError(CloudrecError):
    """A schedule command was refused; the message says why and what to do."""


class ScheduleNotFound(ScheduleError, KeyError):
    def __str__(self) -> str:
        return f"no schedule named {self.args[0]!r}"


schedule_key = keys.schedule_key


def redbeat_name(name: str) -> str:
    return f"schedule:{name}"


def _vault_id(name: str) -> str:
    # '/' never occurs in a job id, so a schedule's token can never collide with a job's.
    return f"schedule/{name}"


# -- triggers -------------------------------------------------------------------------------------
class Trigger(BaseModel):
    """When a schedule fires: a 5-field cron expression (UTC) or a fixed interval in seconds."""

    cron: str | None = None
    every: float | None = None

    @classmethod
    def parse(cls, cron: str | None, every: float | None) -> Trigger:
        if (cron is None) == (every is None):
            raise ScheduleError("give exactly one of --cron EXPR or --every SECONDS")
        if every is not None and not (math.isfinite(every) and every >= 1):
            raise ScheduleError(f"--every: must be at least 1 second (got {every})")
        trigger = cls(cron=" ".join(cron.split()) if cron else None, every=every)
        trigger.celery_schedule()  # validates the cron expression
        return trigger

    def celery_schedule(self) -> crontab | schedule:
        if self.every is not None:
            return schedule(run_every=timedelta(seconds=self.every))
        assert self.cron is not None
        fields = self.cron.split()
        if len(fields) != 5:
            raise ScheduleError(
                f"--cron: must have 5 fields 'minute hour day-of-month month day-of-week' "
                f"(got {self.cron!r})"
            )
        minute, hour, dom, month, dow = fields
        try:
            return crontab(
                minute=minute,
                hour=hour,
                day_of_month=dom,
                month_of_year=month,
                day_of_week=dow,
            )
        except ValueError as exc:
            raise ScheduleError(f"--cron: {exc} (in {self.cron!r})") from None

    @property
    def period(self) -> float:
        """The shortest time between two firings (a cron fires at most once a minute)."""
        return self.every if self.every is not None else 60.0

    def slot_at(self, moment: float) -> float:
        """The slot a firing sent at ``moment`` belongs to: the latest slot time <= moment."""
        if self.every is not None:
            return math.floor(moment / self.every) * self.every
        return _latest_cron_minute(self.celery_schedule(), moment)

    def describe(self) -> str:
        return f"cron {self.cron} (UTC)" if self.cron else f"every {self.every:g} s"


def _latest_cron_minute(cron: crontab, moment: float) -> float:
    minute = datetime.fromtimestamp(moment, UTC).replace(second=0, microsecond=0)
    for _ in range(_CRON_LOOKBACK_MINUTES):
        if _cron_matches(cron, minute):
            return minute.timestamp()
        minute -= timedelta(minutes=1)
    return math.floor(moment)  # far off its schedule: keep firings apart by the second


def _cron_matches(cron: crontab, at: datetime) -> bool:
    return (
        at.minute in cron.minute
        and at.hour in cron.hour
        and at.day in cron.day_of_month
        and at.month in cron.month_of_year
        and at.isoweekday() % 7 in cron.day_of_week  # cron and Celery: 0 = Sunday
    )


# -- the stored schedule --------------------------------------------------------------------------
class Schedule(BaseModel):
    """A schedule as stored (the template in wire form, without its token)."""

    name: str
    trigger: Trigger
    template: dict[str, Any]
    duration: int | None = None
    has_token: bool = False
    paused: bool = False
    created_at: float

    @property
    def cname(self) -> str:
        return str(self.template.get("cname", ""))


class ScheduleInfo(BaseModel):
    """A schedule with beat's view of it (``cloudrec schedule list``)."""

    schedule: Schedule
    next_run_at: float | None
    last_run_at: float | None  # when beat last fired it (None: never)
    last_job: str | None = None  # the job id of that firing

    def as_json(self) -> dict[str, Any]:
        sched = self.schedule
        return {
            "name": sched.name,
            "trigger": sched.trigger.model_dump(exclude_none=True),
            "cname": sched.cname,
            "duration": sched.duration,
            "enabled": not sched.paused,
            "next_run_at": iso(self.next_run_at) if not sched.paused else None,
            "last_run_at": iso(self.last_run_at),
            "last_job": self.last_job,
            "created_at": iso(sched.created_at),
        }


def job_id_for(name: str, slot: float) -> str:
    """The deterministic job id of a schedule's firing in ``slot``."""
    return f"{name}:{datetime.fromtimestamp(slot, UTC):%Y%m%dT%H%M%SZ}"


def validate_template(
    name: str, template: Any, duration: int | None, settings: Settings
) -> dict[str, Any]:
    """Check the name and the template as a job spec; returns the template to store.

    Raises :class:`ScheduleError` (bad name) or :class:`JobSpecError` (names the field).
    """
    if not _NAME_RE.fullmatch(name):
        raise ScheduleError(
            f"schedule name: must be 1-64 characters of A-Z a-z 0-9 _ . - starting with a "
            f"letter or digit (got {name!r})"
        )
    if not isinstance(template, dict):
        raise JobSpecError(f"job spec: must be a JSON object (got {type(template).__name__})")
    for field, why in _PER_FIRING_FIELDS.items():
        if field in template:
            raise JobSpecError(f"{field}: {why}")
    merged = dict(template)
    if duration is not None:
        merged["duration"] = duration
    parse_job_spec(merged, settings)  # the same rules a submitted job meets
    return merged


class ScheduleBook:
    """Add, list, pause, resume, remove and fire schedules (Redis + redbeat)."""

    def __init__(
        self, client: redis.Redis, app: Celery, settings: Settings, vault: TokenVault
    ) -> None:
        self._redis = client
        self._app = app
        self._settings = settings
        self._vault = vault
        _refresh_redbeat(app)

    # -- commands ---------------------------------------------------------------------------
    def add(
        self,
        name: str,
        trigger: Trigger,
        template: dict[str, Any],
        duration: int | None = None,
        now: float | None = None,
    ) -> Schedule:
        spec = validate_template(name, template, duration, self._settings)
        token = spec.pop("token", None)
        record = Schedule(
            name=name,
            trigger=trigger,
            template=spec,
            duration=spec.get("duration"),
            has_token=token is not None,
            created_at=time.time() if now is None else now,
        )
        if not self._redis.sadd(SCHEDULES_KEY, name):
            raise ScheduleError(f"a schedule named {name!r} exists; remove it first")
        if token is not None:
            self._vault.put(_vault_id(name), SecretStr(str(token)), _TOKEN_TTL)
        self._write(record)
        self._save_entry(record, last_run_at=self._app.now())
        log.info("schedule %s added: %s", name, trigger.describe(), extra={"schedule": name})
        return record

    def remove(self, name: str) -> None:
        self.get(name)
        self._delete_entry(name)
        self._vault.delete(_vault_id(name))
        with self._redis.pipeline() as pipe:
            pipe.delete(schedule_key(name))
            pipe.srem(SCHEDULES_KEY, name)
            pipe.execute()
        log.info("schedule %s removed", name, extra={"schedule": name})

    def pause(self, name: str) -> Schedule:
        return self._set_paused(name, True)

    def resume(self, name: str) -> Schedule:
        return self._set_paused(name, False)

    def get(self, name: str) -> Schedule:
        raw = self._redis.hget(schedule_key(name), "record")
        if raw is None:
            raise ScheduleNotFound(name)
        return Schedule.model_validate_json(raw)

    def names(self) -> list[str]:
        return sorted(_text(n) for n in self._redis.smembers(SCHEDULES_KEY))

    def list(self) -> list[ScheduleInfo]:
        out = []
        for name in self.names():
            try:
                out.append(self.info(name))
            except ScheduleNotFound:
                continue  # removed while we listed
        return out

    def info(self, name: str) -> ScheduleInfo:
        record = self.get(name)
        entry = self._load_entry(name)
        last_fired, last_job = self._redis.hmget(schedule_key(name), "last_fired_at", "last_job")
        return ScheduleInfo(
            schedule=record,
            next_run_at=_next_run(entry, self._app.now()) if entry is not None else None,
            last_run_at=float(last_fired) if last_fired is not None else None,
            last_job=_text(last_job) if last_job is not None else None,
        )

    # -- firing -----------------------------------------------------------------------------
    def fire(self, name: str, fired_at: float, submit: Submit) -> JobRecord | None:
        """Submit the job of the firing beat sent at ``fired_at``; None if nothing to do.

        Idempotent: the same firing (same ``fired_at``) always yields the same job id.
        """
        try:
            record = self.get(name)
        except ScheduleNotFound:
            log.warning("schedule %s fired but no longer exists", name, extra={"schedule": name})
            return None
        if record.paused:
            log.info("schedule %s is paused; firing skipped", name, extra={"schedule": name})
            return None
        slot = self.claim_slot(record, fired_at)
        existing = self._already_submitted(name, job_id_for(name, slot))
        if existing is not None:
            return existing
        spec = self._firing_spec(record, slot, fired_at)
        self._redis.hset(
            schedule_key(name),
            mapping={"last_fired_at": repr(fired_at), "last_job": spec["job_id"]},
        )
        try:
            job, created = submit(spec)
        except JobSpecError as exc:
            # Typically: delivered so late that the recording window has passed.
            log.warning(
                "schedule %s: firing at %s not submitted: %s",
                name,
                iso(fired_at),
                exc,
                extra={"schedule": name, "job_id": spec["job_id"]},
            )
            return None
        log.info(
            "schedule %s fired: job %s (%s)",
            name,
            job.job_id,
            "submitted" if created else "already submitted",
            extra={"schedule": name, "job_id": job.job_id, "cname": job.cname},
        )
        return job

    def _already_submitted(self, name: str, job_id: str) -> JobRecord | None:
        """The job of a firing delivered again: it is the same job whatever the clock says now,
        even once its recording window has passed (a late redelivery is no new firing)."""
        job = JobStore(self._redis).find(job_id)
        if job is not None:
            log.info(
                "schedule %s fired: job %s (already submitted)",
                name,
                job_id,
                extra={"schedule": name, "job_id": job_id, "cname": job.cname},
            )
        return job

    def claim_slot(self, record: Schedule, fired_at: float) -> float:
        """The slot of this firing. Another firing that claimed the same slot from more than
        half a period away is a different firing (beat drifted), so this one takes the next."""
        slot = record.trigger.slot_at(fired_at)
        ttl = int(max(3600.0, 3 * record.trigger.period))
        for _ in range(3):
            key = keys.schedule_slot_key(record.name, slot)
            if self._redis.set(key, repr(fired_at), nx=True, ex=ttl):
                return slot
            other = self._redis.get(key)
            if other is None or abs(float(other) - fired_at) < record.trigger.period / 2:
                return slot  # the same firing, delivered again or sent by a second beat
            slot += record.trigger.period
        return slot

    def _firing_spec(self, record: Schedule, slot: float, fired_at: float) -> dict[str, Any]:
        spec: dict[str, Any] = json.loads(json.dumps(record.template))
        spec["job_id"] = job_id_for(record.name, slot)
        duration = spec.pop("duration", None) or self._settings.max_duration
        # The window is anchored at the firing, so a redelivery stops at the same moment.
        spec["stop_at"] = datetime.fromtimestamp(fired_at + duration, UTC).isoformat()
        spec["labels"] = {**spec.get("labels", {}), "schedule": record.name}
        if record.has_token:
            token = self._vault.get(_vault_id(record.name))
            if token is not None:
                spec["token"] = token.get_secret_value()
        return spec

    # -- storage and redbeat ----------------------------------------------------------------
    def _write(self, record: Schedule) -> None:
        self._redis.hset(schedule_key(record.name), "record", record.model_dump_json())

    def _set_paused(self, name: str, paused: bool) -> Schedule:
        record = self.get(name).model_copy(update={"paused": paused})
        self._write(record)
        # Resuming starts counting from now: a paused schedule does not catch up.
        self._save_entry(record, last_run_at=self._app.now() if not paused else None)
        log.info(
            "schedule %s %s", name, "paused" if paused else "resumed", extra={"schedule": name}
        )
        return record

    def _save_entry(self, record: Schedule, last_run_at: datetime | None) -> None:
        entry = RedBeatSchedulerEntry(
            redbeat_name(record.name),
            FIRE_TASK,
            record.trigger.celery_schedule(),
            args=[record.name],
            enabled=not record.paused,
            app=self._app,
        )
        existing = self._load_entry(record.name)
        entry.last_run_at = last_run_at or (existing.last_run_at if existing else None)
        entry.save()
        if last_run_at is not None:
            # save() keeps an existing last run; a new start point must be written explicitly,
            # or a cron schedule would fire at once (never run = due now).
            entry.reschedule(last_run_at)

    def _load_entry(self, name: str) -> Any:
        key = RedBeatSchedulerEntry.generate_key(self._app, redbeat_name(name))
        try:
            return RedBeatSchedulerEntry.from_key(key, app=self._app)
        except KeyError:
            return None

    def _delete_entry(self, name: str) -> None:
        entry = self._load_entry(name)
        if entry is not None:
            entry.delete()


def _next_run(entry: Any, now: datetime) -> float:
    """When beat fires ``entry`` next (redbeat's own ``due_at`` is off for intervals)."""
    last: datetime | None = entry.last_run_at
    if last is None:
        return now.timestamp()
    sched = entry.schedule
    if isinstance(sched, crontab):
        start, delta, _ = sched.remaining_delta(last)
        due: datetime = start + delta
    else:
        due = last + sched.run_every
    return max(due, now).timestamp()


def _refresh_redbeat(app: Celery) -> None:
    """redbeat caches its settings and connection on the app; re-read them after a
    ``configure`` (the CLI and tests point the app at another Redis)."""
    conf = getattr(app, "redbeat_conf", None)
    if conf is not None and (
        conf.redis_url != app.conf.get("redbeat_redis_url")
        or conf.redbeat_redis_options != app.conf.get("redbeat_redis_options")
    ):
        app.redbeat_redis = None
        app.redbeat_sentinel = None  # redbeat's cached Sentinel, when it uses one
        del app.redbeat_conf
    ensure_conf(app)


def fired_at_header(headers: dict[str, Any] | None) -> dict[str, Any] | None:
    """Stamp a firing message with the moment beat sends it (kept if already set)."""
    if headers is not None:
        headers.setdefault(FIRED_AT_HEADER, time.time())
    return headers


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- beat's scheduler ---------------------------------------------------------------------------
# A tick that cannot reach Redis is tried again this soon (seconds).
UNREACHABLE_RETRY = 0.5


class SteadyScheduler(RedBeatScheduler):  # type: ignore[misc]  # redbeat is untyped
    """redbeat's scheduler, except that a tick that cannot reach Redis (a Sentinel failover: the
    master is dead and not replaced yet) is tried again shortly instead of ending beat.

    redbeat reads and writes the schedule through a retrying connection, but extends its lock
    through the plain client: one refused connection there raised out of ``tick`` and beat
    exited, leaving every stop deadline undispatched until someone restarted it. The lock's
    key (``redbeat_lock_timeout``, 25 s) outlives a failover, so it is still ours after."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            interval: float = super().tick(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("beat: Redis does not answer (%s); trying again", exc)
            return UNREACHABLE_RETRY
        return interval


# -- beat health ------------------------------------------------------------------------------
# The beat entry that ticks every second (worker.celery_app): if it ran lately, a beat is active.
HEARTBEAT_ENTRY = "cloudrec-dispatch"


def beat_problem(app: Celery, now: float, max_age: float) -> str | None:
    """None if a beat holds redbeat's lock and fired the dispatcher within ``max_age`` s."""
    from redbeat.schedulers import get_redis

    _refresh_redbeat(app)
    if not get_redis(app).exists(app.redbeat_conf.lock_key):
        return "no celery beat holds the schedule lock"
    key = RedBeatSchedulerEntry.generate_key(app, HEARTBEAT_ENTRY)
    try:
        entry = RedBeatSchedulerEntry.from_key(key, app=app)
    except KeyError:
        return "celery beat has not installed its schedule"
    last = entry.last_run_at
    if last is None or now - last.timestamp() > max_age:
        return f"celery beat has not fired {HEARTBEAT_ENTRY} for more than {max_age:.0f} s"
    return None

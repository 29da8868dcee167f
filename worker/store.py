"""The job store: Redis is the source of truth for every job (docs/design.md#the-job).

Layout (all keys under ``cloudrec:``)::

    job:<id>          string the job record (:class:`JobRecord`) in its compact stored form,
                             :mod:`worker.jobcodec`: one-character field codes, times as 8-byte
                             doubles, resourceId and sid as their bytes, the spec without what
                             the record holds anyway, defaults not stored
    jobs              zset   ended jobs' ids, scored by creation time (a listing merges them
                             with the active jobs' state sets, newest first); the transition
                             that ends a job adds its entry, which leaves with its record
                             (``ended``). Before session 8 every job had an entry from its
                             create: an active job's old entry is listed once, as active.
    ended             zset   id -> when the job ended, for ended jobs only: a record expires
                             ``retention`` seconds after that, and :meth:`JobStore.purge_expired`
                             drops its ``jobs`` and ``ended`` entries then (each create purges a
                             few, each listing all that are due), so the index never outgrows
                             the records
    state:<state>     set    ids of jobs in each *active* state (reconciler, metrics, listing)
    due               zset   "<action>:<id>" scored by due time: scheduled starts ("start"),
                             stop deadlines ("stop"), pending completion callbacks ("callback"),
                             pending merges ("merge", worker.merge)
    deliveries:<id>   hash   how many times each step of a job was delivered (redelivery cap)
    checked           zset   job id -> when the reconciler last queried its recording (only the
                             last ``reconcile_check_interval``: bounded by the query budget)
    ended-count:<hour> hash  terminal state -> jobs that ended in that hour (epoch // 3600),
                             and "<state>|<app>" -> those of each app (a count written before
                             the by-app fields has only the former), kept 26 h: the exporter's
                             counts, without walking the ended jobs

Why one string: a hash stays compact (listpack) only while every value is at most 64 bytes, and
a resourceId is 224, so the versions before this one split a record into a small hash of JSON
texts and a JSON blob: 1,168 bytes of Redis for a recording job of ``benchmarks/scale.py``
(MEMORY USAGE of both keys), where the one string (334 bytes) takes 488 (the benchmark prints
bytes per active job and where they go). The stored form is a format: a worker reads records
of the old layout (``job:<id>`` hash + ``jobdata:<id>`` string) as they are, and rewrites one
as a string on its first transition (:meth:`JobStore.migrate`, keeping its expiry); every
reader here reads both (:func:`peek` for a few fields of many jobs).

Transitions are compare-and-set in one Lua script, which parses and rebuilds the stored form:
the state moves only if it is still one of the expected states, the history gets an entry, and
the state index follows, atomically. Entering a
terminal state also, in the same script: drops the job's scheduled start; drops its stop deadline,
*unless* the job holds a sid whose stop was never sent (a cancel or failure that raced a start),
in which case the stop becomes due at once; makes its completion callback due (if it has one),
and its merge (if it asked for one and ended completed or idle_exit);
and forgets its delivery counts and reconciler bookkeeping. A job that reaches a terminal state
keeps its record for ``retention`` seconds (``CLOUDREC_JOB_RETENTION``), and its index entry as
long. An active job's keys live until it ends (its deadline is at most ``CLOUDREC_MAX_START_AHEAD``
plus ``CLOUDREC_MAX_DURATION`` away, and the reconciler ends any job that outlives it); every
other per-job key (delivery counts, claims, the vault's token) carries its own TTL.

Every due entry is *leased* when claimed (:meth:`JobStore.claim_due`): it stays in the zset with a
later score and comes back unless its step removes it, so a process that dies between claiming an
entry and finishing its work loses nothing.

Size: one module over 400 lines because it is one storage schema: the record, its indexes
and the Lua scripts that change them together must agree on every field and key, and are read
side by side (the key names themselves are built in :mod:`worker.keys`).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis
from pydantic import BaseModel, Field, model_validator

from worker import jobcodec, keys
from worker.errors import JobNotFound
from worker.jobs import StoredSpec
from worker.keys import CHECKED_KEY as CHECKED_KEY
from worker.keys import DUE_KEY as DUE_KEY
from worker.keys import ENDED_KEY as ENDED_KEY
from worker.keys import JOBS_KEY as JOBS_KEY
from worker.keys import PREFIX as PREFIX
from worker.keys import data_key as data_key
from worker.keys import deliveries_key as deliveries_key
from worker.keys import due_member
from worker.keys import job_key as job_key
from worker.logs import offer_job_fields
from worker.states import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    JobState,
    check_transition,
)

log = logging.getLogger("cloudrec.store")

TERMINAL_RETENTION = 30 * 24 * 3600


def state_key(state: JobState | str) -> str:
    return keys.state_key(state)


# The Gregorian calendar repeats every 400 years, to the second (146,097 days): a time outside
# datetime's years 1-9999 is shifted by whole cycles into them and the years added back.
_CYCLE_MS = 146_097 * 86_400_000
_CYCLE_YEARS = 400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
_LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds, the format of every time we show.

    Total: any stored number formats (a listing must never crash on one record). Years beyond
    0001-9999 use ISO 8601's expanded form (``+10000-01-01T00:00:00.000Z``); a value that is
    not a time at all (NaN, infinite) gives None, as a missing time does.
    """
    if ts is None or not math.isfinite(ts):
        return None
    whole = math.floor(ts)  # exact integers from here on: no float is too big
    ms = whole * 1000 + round((ts - whole) * 1000)
    cycles = 0 if _FIRST_MS <= ms <= _LAST_MS else (ms - _FIRST_MS) // _CYCLE_MS
    moment = _EPOCH + timedelta(milliseconds=ms - cycles * _CYCLE_MS)
    text = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if cycles == 0:
        return text
    year = moment.year + cycles * _CYCLE_YEARS
    return f"{'-' if year < 0 else '+'}{abs(year):04d}{text[4:]}"


class FileRecord(BaseModel):
    fileName: str
    key: str


class HistoryEntry(BaseModel):
    """One state change, the time to the millisecond (as status shows it). Stored as a state
    code and 6 bytes of milliseconds (worker.jobcodec; a double in records written before
    session 6, which still read); the old layout's ``["recording", 1796005346.943]``
    pairs and the ``{"state": ..., "at": ...}`` objects before them read the same."""

    state: JobState
    at: float

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) == 2:
            return {"state": value[0], "at": value[1]}
        return value


class JobRecord(BaseModel):
    """One job as stored. ``spec`` is the validated spec in wire form, without the RTC token."""

    job_id: str
    state: JobState
    cname: str
    uid: str
    spec: dict[str, Any]
    storage: str = "default"
    app: str = "default"  # the app profile; like every default, not stored
    has_token: bool = False
    created_at: float
    start_at: float | None = None
    stop_at: float
    # How early its stop may go when the API budget is short (worker.planner); 0: never early.
    stop_early_max: float = 0.0
    resource_id: str | None = None
    acquired_at: float | None = None
    sid: str | None = None
    started_at: float | None = None
    uid_attempt: int = 0
    stop_reason: str | None = None
    stop_sent_at: float | None = None
    # A stop request went out and its outcome is unknown (no answer, 5xx, 206/65): if the task
    # is later gone (404), it was our stop that ended it, not the recorder by itself.
    stop_uncertain: bool = False
    # The current run of 404 "failed to find worker" answers: when it began and how many
    # (reset by any other answer). Only a run that lasts beyond the failover window, over
    # several probes, means the task is gone (worker.recording.note_missing).
    missing_since: float | None = None
    missing_count: int = 0
    # When a start request was first sent on the current resource: from then on a recording may
    # exist at the service, whether or not its answer (the sid) ever arrives.
    start_sent_at: float | None = None
    # The sid of a start that may have taken effect is being looked for (NCS events, repeated
    # starts on the same resource) since then; the last repeated start (worker.recording).
    sid_wait_since: float | None = None
    sid_provoked_at: float | None = None
    sid_source: str | None = None  # how the sid was learnt: start, ncs, dev_api
    # The recorder's uid after each HA failover (NCS event 12's newUid,
    # docs/service/behaviour.md#identity).
    failover_uids: list[str] = Field(default_factory=list)
    has_callback: bool = False
    files: list[FileRecord] = Field(default_factory=list)
    uploading_status: str | None = None
    error: dict[str, Any] | None = None
    callback_status: dict[str, Any] | None = None
    # One merged MP4 per job (worker.merge): asked for, and its outcome ({"key", "size",
    # "duration", ...} or {"error"}).
    merge: bool = False
    merged: dict[str, Any] | None = None
    history: list[HistoryEntry] = Field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def job_spec(self) -> StoredSpec:
        """``spec`` typed: what the steps read of it (the stored JSON stays ``spec``)."""
        return StoredSpec.model_validate(self.spec)

    def entered_at(self, state: JobState) -> float | None:
        """When the job last entered ``state``."""
        for entry in reversed(self.history):
            if entry.state == state:
                return entry.at
        return None

    def status_json(self) -> dict[str, Any]:
        """The fixed ``cloudrec status JOB --json`` shape (docs/design.md#fixed-interfaces)."""
        return {
            "job_id": self.job_id,
            "state": str(self.state),
            "cname": self.cname,
            "uid": self.uid,
            "app": self.app,
            "resource_id": self.resource_id,
            "sid": self.sid,
            "start_at": iso(self.start_at),
            "stop_at": iso(self.stop_at),
            "files": [f.model_dump() for f in self.files],
            "uploading_status": self.uploading_status,
            "error": self.error,
            "stop_reason": self.stop_reason,
            "sid_source": self.sid_source,
            "failover_uids": self.failover_uids,
            "labels": self.spec.get("labels") or {},
            "callback": self.callback_status,
            "merged": self.merged,
            "history": [{"state": str(h.state), "at": iso(h.at)} for h in self.history],
        }


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot store {type(value).__name__}")


def _stored(record: JobRecord) -> bytes:
    """A record as stored (worker.jobcodec): one string, defaults left out."""
    # The id is the key, never stored; the spec leaves its copy out too (worker.jobcodec).
    return jobcodec.encode(record.model_dump(mode="json"))


def _record(job_id: str, raw: bytes) -> JobRecord:
    return JobRecord.model_validate({"job_id": job_id, **jobcodec.decode(raw, job_id)})


def _old_record(job_id: str, raw: Mapping[Any, Any], blob: Any) -> JobRecord:
    """A record in the layout of the versions before one string per job: the ``job:<id>``
    hash of JSON texts and the ``jobdata:<id>`` JSON object of JSON texts."""
    data = {"job_id": job_id, **{_text(k): json.loads(v) for k, v in raw.items()}}
    if blob:
        data.update({k: json.loads(v) for k, v in json.loads(blob).items()})
    return JobRecord.model_validate(data)


def _field_default(name: str) -> Any:
    return JobRecord.model_fields[name].get_default(call_default_factory=True)


def peek(
    client: redis.Redis, job_ids: Sequence[str], names: Sequence[str]
) -> list[dict[str, Any] | None]:
    """A few fields of each job (None: no such job), without building whole records: what a
    dispatcher or a scrape needs of many jobs. Reads both layouts (see :func:`_old_record`)."""
    raws = _read_raw(client, job_ids)
    out: list[dict[str, Any] | None] = []
    old = [i for i, raw in zip(job_ids, raws, strict=True) if isinstance(raw, Exception)]
    olds = dict(zip(old, _old_fields(client, old, names), strict=True))
    for job_id, raw in zip(job_ids, raws, strict=True):
        if isinstance(raw, Exception):
            out.append(olds[job_id])
        elif raw is None:
            out.append(None)
        else:
            fields = jobcodec.parse(raw)
            values = {n: jobcodec.value_of(fields, n, _MISSING) for n in names}
            out.append({n: _field_default(n) if v is _MISSING else v for n, v in values.items()})
    return out


def _read_raw(client: redis.Redis, job_ids: Sequence[str]) -> list[Any]:
    """Each job's stored string; None if there is none, an error if the job is in the old
    layout (a hash: GET answers WRONGTYPE)."""
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.get(job_key(job_id))
        return list(pipe.execute(raise_on_error=False))


def _old_fields(
    client: redis.Redis, job_ids: Sequence[str], names: Sequence[str]
) -> list[dict[str, Any] | None]:
    """:func:`peek` of old-layout records (the fields it is asked for are the hash's)."""
    if not job_ids:
        return []
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(job_key(job_id), *names)
        rows = pipe.execute()
    out: list[dict[str, Any] | None] = []
    for row in rows:
        if all(v is None for v in row):
            out.append(None)  # gone meanwhile (the hash always holds state, cname, uid...)
            continue
        out.append(
            {
                n: _field_default(n) if v is None or v == b"null" else json.loads(v)
                for n, v in zip(names, row, strict=True)
            }
        )
    return out


_MISSING = object()


def _window(ids: list[str], offset: int, limit: int | None) -> list[str]:
    return ids[offset:] if limit is None else ids[offset : offset + limit]


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), LIST_CHUNK):
        yield ids[start : start + LIST_CHUNK]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _payload(name: str, raw: Any) -> Any:
    """A field the transition script returns (its stored payload; empty: not stored)."""
    if not raw:
        return None
    return jobcodec.decode_value(name, raw if isinstance(raw, bytes) else str(raw).encode())


def _field_args(fields: Mapping[str, Any]) -> list[Any]:
    """A transition's fields for the script: ("+<code>", payload) to set, ("-<code>", "") to
    drop (a default, which is not stored)."""
    out: list[Any] = []
    for name, value in fields.items():
        plain = _plain(value)
        codes = jobcodec.codes_of(name)
        if jobcodec.is_default(name, plain):
            for code in codes:
                out += ["-" + code, ""]
        else:
            code, payload = jobcodec.encode_field(name, plain)
            out += ["+" + code, payload]
            out += [x for other in codes if other != code for x in ("-" + other, "")]
    return out


def _plain(value: Any) -> Any:
    """A field's value in JSON form (models and lists of them dumped)."""
    return json.loads(json.dumps(value, default=_json_default))


DUE_ACTIONS = ("start", "stop", "callback", "merge")
RECORDS_PER_ROUND_TRIP = 200


# Parse and rebuild a record in its stored form (worker.jobcodec): fields of one-character
# codes, each with a one- or four-byte length, or none for the fixed-size codes (jobcodec.FIXED).
_CODEC_LUA = """
local fixed = {@FIXED@}
local function parse(s)
  local f, i = {}, 1
  while i <= #s do
    local c = string.sub(s, i, i)
    local n, h = string.byte(s, i + 1), 2
    if fixed[c] then
      n, h = fixed[c], 1
    elseif n >= 128 then
      n = (n - 128) * 65536 + string.byte(s, i + 2) * 256 + string.byte(s, i + 3)
      h = 4
    end
    f[string.sub(s, i, i)] = string.sub(s, i + h, i + h + n - 1)
    i = i + h + n
  end
  return f
end
local function build(f)
  local codes, out = {}, {}
  for c in pairs(f) do codes[#codes + 1] = c end
  table.sort(codes)
  for _, c in ipairs(codes) do
    local v, n = f[c], #f[c]
    if fixed[c] then
      out[#out + 1] = c .. v
    elseif n < 128 then
      out[#out + 1] = c .. string.char(n) .. v
    else
      out[#out + 1] = c .. string.char(128 + math.floor(n / 65536), math.floor(n / 256) % 256,
                                       n % 256) .. v
    end
  end
  return table.concat(out)
end
local names = {@STATES@}
""".replace("@STATES@", ", ".join(f"{c}='{n}'" for n, c in jobcodec.STATE_CODES.items())).replace(
    "@FIXED@", ", ".join(f"['{c}']={n}" for c, n in jobcodec.FIXED.items())
)

# KEYS: job record, key prefix. ARGV: expected state codes (a string of them), new state code
# ("" = keep), history entry (stored form), terminal (1/0), retention seconds, now, then pairs
# (op and field code, payload): op "+" sets the field, "-" drops it (a default).
# Returns {1, new state, cname, sid} on success, {0, current, ...} when the state did not match,
# {-1, ...} if there is no such job, {-2, ...} if the record is in the old layout (a hash: the
# caller migrates it and calls again). cname and sid are payloads (or '').
_TRANSITION_LUA = (
    _CODEC_LUA
    + """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return {-1, '', '', ''} end
if kind ~= 'string' then return {-2, '', '', ''} end
local f = parse(redis.call('GET', KEYS[1]))
local cur = f['s']
if not string.find(ARGV[1], cur, 1, true) then
  return {0, names[cur], f['c'] or '', f['i'] or ''}
end
local id = string.sub(KEYS[1], string.len(KEYS[2]) + 5)
for i = 7, #ARGV, 2 do
  local code = string.sub(ARGV[i], 2, 2)
  if string.sub(ARGV[i], 1, 1) == '+' then f[code] = ARGV[i + 1] else f[code] = nil end
end
local new = cur
if ARGV[2] ~= '' and ARGV[2] ~= cur then
  new = ARGV[2]
  f['s'] = new
  f['h'] = (f['h'] or '') .. ARGV[3]
  redis.call('SREM', KEYS[2] .. 'state:' .. names[cur], id)
  if ARGV[4] == '1' then
    local due = KEYS[2] .. 'due'
    local now = tonumber(ARGV[6])
    local name = names[new]
    redis.call('ZREM', due, 'start:' .. id)
    if f['i'] and not f['T'] and (name == 'failed' or name == 'cancelled') then
      redis.call('ZADD', due, now, 'stop:' .. id)
    else
      redis.call('ZREM', due, 'stop:' .. id)
    end
    if f['k'] then redis.call('ZADD', due, now, 'callback:' .. id) end
    if f['G'] and (name == 'completed' or name == 'idle_exit') then
      redis.call('ZADD', due, now, 'merge:' .. id)
    end
    redis.call('DEL', KEYS[2] .. 'deliveries:' .. id)
    redis.call('ZREM', KEYS[2] .. 'checked', id)
    redis.call('ZADD', KEYS[2] .. 'ended', now, id)
    -- The job index (ended jobs, by creation time): a double, stored big-endian ('1' or 'C').
    local created = f['1'] or f['C']
    local score = created and struct.unpack('>d', created) or now
    redis.call('ZADD', KEYS[2] .. 'jobs', string.format('%.17g', score), id)
    local counted = KEYS[2] .. 'ended-count:' .. math.floor(now / @HOUR@)
    redis.call('HINCRBY', counted, name, 1)
    redis.call('HINCRBY', counted, name .. '@SEP@' .. (f['a'] or '@APP@'), 1)
    redis.call('EXPIRE', counted, @TTL@)
  else
    redis.call('SADD', KEYS[2] .. 'state:' .. names[new], id)
  end
end
redis.call('SET', KEYS[1], build(f), 'KEEPTTL')
if ARGV[4] == '1' and new ~= cur then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
end
return {1, names[new], f['c'] or '', f['i'] or ''}
""".replace("@HOUR@", str(keys.ENDED_COUNT_HOUR))
    .replace("@TTL@", str(keys.ENDED_COUNT_TTL))
    .replace("@SEP@", keys.ENDED_COUNT_APP_SEP)
    .replace("@APP@", jobcodec.DEFAULTS["app"])
)

# KEYS: due zset. ARGV: now, default lease seconds, max count, lookahead seconds, then pairs of
# (action, lease seconds) overriding the default. Claims the members due by now + lookahead by
# pushing their score to max(due, now) + their action's lease: a dispatcher that dies after
# claiming loses nothing, the entry comes back. Returns member, due score, member, due score...
_CLAIM_DUE_LUA = """
local now = tonumber(ARGV[1])
local leases = {}
for i = 5, #ARGV, 2 do leases[ARGV[i]] = tonumber(ARGV[i + 1]) end
local horizon = now + tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon, 'WITHSCORES',
                       'LIMIT', 0, tonumber(ARGV[3]))
for i = 1, #due, 2 do
  local action = string.match(due[i], '^([^:]*)')
  local lease = leases[action] or tonumber(ARGV[2])
  redis.call('ZADD', KEYS[1], math.max(tonumber(due[i + 1]), now) + lease, due[i])
end
return due
"""


# KEYS: job record, due zset. ARGV: member, due time. Adds the deadline only if the job exists,
# is not terminal, and has no deadline yet. Reads both layouts (the old one's state: a hash's
# JSON text).
_RESTORE_LUA = (
    _CODEC_LUA
    + """
local kind = redis.call('TYPE', KEYS[1])['ok']
local state
if kind == 'string' then
  state = names[parse(redis.call('GET', KEYS[1]))['s']]
elseif kind == 'hash' then
  state = cjson.decode(redis.call('HGET', KEYS[1], 'state'))
else
  return 0
end
local terminal = {completed=true, empty=true, idle_exit=true, failed=true, cancelled=true}
if terminal[state] then return 0 end
return redis.call('ZADD', KEYS[2], 'NX', tonumber(ARGV[2]), ARGV[1])
"""
)


# KEYS: jobs zset, ended zset. ARGV: cutoff (ended at or before it: the record has expired),
# max count. Drops those jobs' index entries; returns how many.
_PURGE_LUA = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('ZREM', KEYS[2], unpack(gone))
end
return #gone
"""

# KEYS: jobs zset, then one job hash per id. ARGV: the ids. Drops index entries whose record is
# gone without an ``ended`` entry (kept by a version before it); atomic, so a job created again
# meanwhile keeps its entry. Returns how many.
_FORGET_MISSING_LUA = """
local n = 0
for i, id in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    n = n + redis.call('ZREM', KEYS[1], id)
  end
end
return n
"""

# Index entries purged by each create: more than one, so a backlog of expired entries (a Redis
# restored from an old snapshot) drains while jobs keep coming.
PURGE_ON_CREATE = 8
PURGE_BATCH = 1000
# Ids read per round trip when a listing walks the index.
LIST_CHUNK = 1000


@dataclass(frozen=True)
class DueEntry:
    """One claimed entry of the due-queue: what to do for which job, and when it was due."""

    action: str
    job_id: str
    due: float


class JobStore:
    """Typed access to job records, transitions and the due-queue in Redis."""

    def __init__(self, client: redis.Redis, *, retention: float = TERMINAL_RETENTION) -> None:
        self.redis = client
        self.retention = int(retention)
        self._transition = client.register_script(_TRANSITION_LUA)
        self._claim_due = client.register_script(_CLAIM_DUE_LUA)
        self._restore = client.register_script(_RESTORE_LUA)
        self._purge = client.register_script(_PURGE_LUA)
        self._forget_missing = client.register_script(_FORGET_MISSING_LUA)

    # -- records ---------------------------------------------------------------------------
    def create(
        self, record: JobRecord, due: Mapping[str, float] | None = None
    ) -> tuple[JobRecord, bool]:
        """Store a new job unless ``job_id`` exists: returns (the stored job, created?).
        ``due``: its first due entries (action -> when), written in the same transaction."""
        stored = _stored(record)
        key = job_key(record.job_id)
        # WATCH on the record is the idempotency gate; the rest follows in one MULTI.
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    if pipe.exists(key):
                        pipe.unwatch()
                        return self.get(record.job_id), False
                    pipe.multi()
                    pipe.set(key, stored)
                    # The job index holds ended jobs only: an active job is in its state's set
                    # (which lists it), and a second entry would cost ~100 bytes per job while
                    # it records. The transition that ends a job adds it (_TRANSITION_LUA).
                    if record.state in TERMINAL_STATES:
                        pipe.zadd(JOBS_KEY, {record.job_id: record.created_at})
                    else:
                        # An id used again after its old record expired: the old entries go.
                        pipe.zrem(JOBS_KEY, record.job_id)
                    pipe.zrem(ENDED_KEY, record.job_id)
                    pipe.sadd(state_key(record.state), record.job_id)
                    if due:
                        pipe.zadd(
                            DUE_KEY, {due_member(a, record.job_id): at for a, at in due.items()}
                        )
                    # EVAL, not a registered script: in a pipeline that would cost a round trip
                    # (SCRIPT EXISTS) per create. Redis caches the compiled script by its hash.
                    pipe.eval(
                        _PURGE_LUA,
                        2,
                        JOBS_KEY,
                        ENDED_KEY,
                        time.time() - self.retention,
                        PURGE_ON_CREATE,
                    )
                    pipe.execute()
                    log.info(
                        "job created",
                        extra={
                            "job_id": record.job_id,
                            "cname": record.cname,
                            "to_state": str(record.state),
                        },
                    )
                    return record, True
                except redis.WatchError:
                    continue

    def get(self, job_id: str) -> JobRecord:
        records = self.records([job_id])
        if not records:
            raise JobNotFound(job_id)
        offer_job_fields(job_id, records[0].cname, records[0].sid)
        return records[0]

    def log_fields(self, job_id: str) -> dict[str, str | None]:
        """The job's cname and sid for a task's log lines: two small fields, one round trip
        (every task reads them; the whole record would cost a parse per task)."""
        (found,) = peek(self.redis, [job_id], ["cname", "sid"])
        return {} if found is None else found

    def find(self, job_id: str) -> JobRecord | None:
        try:
            return self.get(job_id)
        except JobNotFound:
            return None

    def delete(self, job_id: str) -> None:
        """Remove every trace of a job (used only when a submit could not be completed)."""
        with self.redis.pipeline() as pipe:
            pipe.delete(job_key(job_id), data_key(job_id), deliveries_key(job_id))
            pipe.zrem(JOBS_KEY, job_id)
            pipe.zrem(ENDED_KEY, job_id)
            for state in ACTIVE_STATES:
                pipe.srem(state_key(state), job_id)
            pipe.zrem(DUE_KEY, *(due_member(action, job_id) for action in DUE_ACTIONS))
            pipe.zrem(CHECKED_KEY, job_id)
            pipe.execute()

    def transition(
        self,
        job_id: str,
        sources: Iterable[JobState],
        target: JobState | None,
        **fields: Any,
    ) -> tuple[bool, JobState]:
        """Compare-and-set: move to ``target`` (None: stay) and write ``fields`` if the job is
        in one of ``sources``. Returns (done, state now). Losing the race is not an error."""
        source_set = frozenset(sources)
        if target is not None:
            check_transition(source_set - {target}, target)
        now = time.time()
        terminal = target is not None and target in TERMINAL_STATES
        args = [
            "".join(jobcodec.STATE_CODES[s] for s in source_set),
            jobcodec.STATE_CODES[target] if target else "",
            jobcodec.history_entry(target, now) if target else b"",
            "1" if terminal else "0",
            self.retention,
            repr(now),
            *_field_args(fields),
        ]
        while True:
            done, state, cname, sid = self._transition(keys=[job_key(job_id), PREFIX], args=args)
            if int(done) != -2:
                break
            self.migrate(job_id)  # a record of the old layout: first touch
        if int(done) == -1:
            raise JobNotFound(job_id)
        current = JobState(_text(state))
        if int(done) == 1 and target is not None:
            ids = {"cname": _payload("cname", cname), "sid": _payload("sid", sid)}
            self._log_transition(job_id, source_set, current, fields, ids)
        return int(done) == 1, current

    def migrate(self, job_id: str) -> bool:
        """Rewrite a record of the old layout (``job:<id>`` hash and ``jobdata:<id>`` string) as
        one string, keeping its expiry; atomic against any other writer (WATCH). Returns whether
        there was one to rewrite."""
        key, blob_key = job_key(job_id), data_key(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key, blob_key)  # type: ignore[no-untyped-call]
                    if _text(pipe.type(key)) != "hash":
                        pipe.unwatch()
                        return False
                    record = _old_record(job_id, pipe.hgetall(key), pipe.get(blob_key))
                    ttl = int(pipe.pttl(key))
                    pipe.multi()
                    pipe.delete(key, blob_key)
                    pipe.set(key, _stored(record), px=ttl if ttl > 0 else None)
                    pipe.execute()
                    log.info("job record migrated to one string", extra={"job_id": job_id})
                    return True
                except redis.WatchError:
                    continue

    def _log_transition(
        self,
        job_id: str,
        sources: frozenset[JobState],
        target: JobState,
        fields: Mapping[str, Any],
        ids: Mapping[str, Any],
    ) -> None:
        """One line per state change, with the structured fields of :mod:`worker.logs`."""
        from_state = "|".join(sorted(sources)) if len(sources) > 1 else next(iter(sources), "")
        extra: dict[str, Any] = {
            "job_id": job_id,
            "cname": ids.get("cname"),
            "sid": ids.get("sid"),
            "from_state": from_state,
            "to_state": str(target),
        }
        error = fields.get("error")
        if isinstance(error, Mapping):
            extra["api_code"] = error.get("code")
        log.info("job %s: %s -> %s", job_id, from_state, target, extra=extra)

    # -- listing ------------------------------------------------------------------------------
    def ids(
        self, state: JobState | None = None, limit: int | None = 100, offset: int = 0
    ) -> list[str]:
        """Job ids, newest first (``limit`` None: all of them), from ``offset`` on."""
        out: list[str] = []
        for chunk in self.iter_ids(state, offset=offset, limit=limit):
            out += chunk
        return out

    def iter_ids(
        self,
        state: JobState | None = None,
        *,
        offset: int = 0,
        limit: int | None = None,
        active: bool = False,
    ) -> Iterator[list[str]]:
        """Job ids newest first, a chunk per round trip or so: every job, the jobs in ``state``,
        or (``active``) every active job. Active states come from their index (cost: the active
        jobs); an ended state walks the job index reading only each job's state, pipelined."""
        self.purge_expired()
        if active or (state is not None and state in ACTIVE_STATES):
            chosen = ACTIVE_STATES if state is None else (state,)
            yield from _chunks(_window(self._active_newest_first(chosen), offset, limit))
        elif state is None:
            yield from _chunks(list(self._every_id_newest_first(offset, limit)))
        else:
            yield from self._state_pages(state, offset, limit)

    def listed_records(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """:meth:`records` for a listing: an id whose record is gone leaves the index."""
        found = self.records(job_ids)
        if len(found) < len(job_ids):
            present = {r.job_id for r in found}
            missing = [i for i in job_ids if i not in present]
            self._forget_missing(keys=[JOBS_KEY, *map(job_key, missing)], args=missing)
        return found

    def purge_expired(self, now: float | None = None) -> int:
        """Drop the index entries of jobs whose records have expired; returns how many."""
        cutoff = (time.time() if now is None else now) - self.retention
        total = 0
        while True:
            gone = int(self._purge(keys=[JOBS_KEY, ENDED_KEY], args=[cutoff, PURGE_BATCH]))
            total += gone
            if gone < PURGE_BATCH:
                return total

    def _active_newest_first(self, states: Iterable[JobState]) -> list[str]:
        return [job_id for _, job_id in self._active_by_creation(states)]

    def _active_by_creation(self, states: Iterable[JobState]) -> list[tuple[float, str]]:
        """(created_at, id) of the active jobs in ``states``, newest first (ties: id, last
        first, as the job index orders them)."""
        ids = self.active_ids(states)
        created = [0.0] * len(ids)
        for start in range(0, len(ids), RECORDS_PER_ROUND_TRIP):
            chunk = ids[start : start + RECORDS_PER_ROUND_TRIP]
            found = peek(self.redis, chunk, ["created_at"])
            for i, fields in enumerate(found, start):
                created[i] = float((fields or {}).get("created_at") or 0.0)
        return sorted(zip(created, ids, strict=True), reverse=True)

    def _every_id_newest_first(self, offset: int, limit: int | None) -> Iterator[str]:
        """Every job id, newest first: the active jobs (their state sets) merged with the
        ended ones (the job index). An active job indexed by a version before this one is
        listed once, as active."""
        active = self._active_by_creation(ACTIVE_STATES)
        listed = {job_id for _, job_id in active}
        ended = (entry for entry in self._index_entries() if entry[1] not in listed)
        merged = heapq.merge(active, ended, reverse=True)
        stop = None if limit is None else offset + limit
        for _, job_id in itertools.islice(merged, offset, stop):
            yield job_id

    def _index_entries(self) -> Iterator[tuple[float, str]]:
        """(created_at, id) of the job index (the ended jobs), newest first, a page per
        round trip."""
        position = 0
        while True:
            page = self.redis.zrevrange(
                JOBS_KEY, position, position + LIST_CHUNK - 1, withscores=True
            )
            if not page:
                return
            position += len(page)
            for member, score in cast(list[tuple[bytes, float]], page):
                yield float(score), _text(member)

    def _index_pages(self, offset: int, limit: int | None) -> Iterator[list[str]]:
        position, left = offset, limit
        while left is None or left > 0:
            size = LIST_CHUNK if left is None else min(LIST_CHUNK, left)
            page = [_text(m) for m in self.redis.zrevrange(JOBS_KEY, position, position + size - 1)]
            if not page:
                return
            position += len(page)
            if left is not None:
                left -= len(page)
            yield page

    def _state_pages(self, state: JobState, offset: int, limit: int | None) -> Iterator[list[str]]:
        skip, left = offset, limit
        for page in self._index_pages(0, None):
            found = peek(self.redis, page, ["state"])
            matching = [i for i, f in zip(page, found, strict=True) if f and f["state"] == state]
            taken = matching[skip:]
            skip = max(skip - len(matching), 0)
            if left is not None:
                taken = taken[:left]
                left -= len(taken)
            if taken:
                yield taken
            if left == 0:
                return

    def count_in(self, state: JobState) -> int:
        return int(self.redis.scard(state_key(state)))

    # -- the due-queue (scheduled starts and stops) -----------------------------------------
    def schedule(self, action: str, job_id: str, at: float) -> None:
        self.redis.zadd(DUE_KEY, {due_member(action, job_id): at})

    def unschedule(self, action: str, job_id: str) -> None:
        self.redis.zrem(DUE_KEY, due_member(action, job_id))

    def unschedule_all(self, job_id: str) -> None:
        self.redis.zrem(DUE_KEY, *(due_member(action, job_id) for action in DUE_ACTIONS))

    def extend_due(self, action: str, job_id: str, until: float) -> bool:
        """Push an existing due entry's lease out to ``until`` (a step that is still working on
        it, or that will retry at ``until``). Returns whether the entry existed."""
        return bool(self.redis.zadd(DUE_KEY, {due_member(action, job_id): until}, xx=True, ch=True))

    def due_at(self, action: str, job_id: str) -> float | None:
        score = self.redis.zscore(DUE_KEY, due_member(action, job_id))
        return float(score) if score is not None else None

    def restore_deadline(self, job_id: str, at: float) -> bool:
        """Put a job's stop deadline back if it is missing *and* the job is still active (a job
        that ended a moment ago has dropped its deadline on purpose). Returns whether it did."""
        return bool(self._restore(keys=[job_key(job_id), DUE_KEY], args=[f"stop:{job_id}", at]))

    def due_scores(self, action: str, job_ids: Sequence[str]) -> list[float | None]:
        """The due time of ``action`` for each job (None: not scheduled)."""
        if not job_ids:
            return []
        scores = self.redis.zmscore(DUE_KEY, [due_member(action, job_id) for job_id in job_ids])
        return [float(s) if s is not None else None for s in scores]

    def due_count(self) -> int:
        return int(self.redis.zcard(DUE_KEY))

    def claim_due(self, now: float, *, lease: float, limit: int = 500) -> list[tuple[str, str]]:
        """Atomically claim entries due by ``now``; each comes back after ``lease`` seconds
        unless its step removes it first."""
        return [(e.action, e.job_id) for e in self.claim_due_entries(now, lease=lease, limit=limit)]

    def claim_due_entries(
        self,
        now: float,
        *,
        lease: float,
        limit: int = 500,
        lookahead: float = 0.0,
        leases: Mapping[str, float] | None = None,
    ) -> list[DueEntry]:
        """Atomically claim entries due by ``now + lookahead`` (the caller fires each at its
        ``due`` time); each comes back ``lease`` seconds (``leases[action]`` if given) after it
        was due unless its step removes it first."""
        extra = [x for action, seconds in (leases or {}).items() for x in (action, seconds)]
        raw = self._claim_due(keys=[DUE_KEY], args=[now, lease, limit, lookahead, *extra])
        out = []
        for member, score in zip(raw[::2], raw[1::2], strict=True):
            action, _, job_id = _text(member).partition(":")
            out.append(DueEntry(action, job_id, float(score)))
        return out

    # -- redelivery accounting ----------------------------------------------------------------
    def count_delivery(self, job_id: str, step: str) -> int:
        """Count one more delivery of ``step`` for this job; returns the total so far."""
        key = deliveries_key(job_id)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, step, 1)
            pipe.expire(key, self.retention)
            count, _ = pipe.execute()
        return int(count)

    def forget_delivery(self, job_id: str, step: str) -> None:
        """Drop one delivery counter (a task that finished no longer needs its count)."""
        self.redis.hdel(deliveries_key(job_id), step)

    # -- reconciler bookkeeping -----------------------------------------------------------------
    def last_checked(self, job_ids: Sequence[str]) -> list[float | None]:
        """When the reconciler last queried each job's recording (None: never)."""
        if not job_ids:
            return []
        scores = self.redis.zmscore(CHECKED_KEY, list(job_ids))
        return [float(s) if s is not None else None for s in scores]

    def mark_checked(self, job_id: str, at: float) -> None:
        self.redis.zadd(CHECKED_KEY, {job_id: at})

    def forget_checks_before(self, when: float) -> None:
        """Drop check times older than ``when``: a job not in the set counts as due, so the
        set only ever holds the jobs checked within the last check interval."""
        self.redis.zremrangebyscore(CHECKED_KEY, "-inf", f"({when}")

    def stop_times(self, job_ids: Sequence[str]) -> list[float | None]:
        """Each job's ``stop_at`` (None: no such job), in one round trip."""
        found = peek(self.redis, job_ids, ["stop_at"])
        return [float(f["stop_at"]) if f else None for f in found]

    def records(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """The records of these jobs (missing ones are left out), read in pipelined chunks: a
        connection's read buffer keeps the size of the largest answer it ever read."""
        out: list[JobRecord] = []
        for start in range(0, len(job_ids), RECORDS_PER_ROUND_TRIP):
            chunk = job_ids[start : start + RECORDS_PER_ROUND_TRIP]
            raws = _read_raw(self.redis, chunk)
            old = [i for i, raw in zip(chunk, raws, strict=True) if isinstance(raw, Exception)]
            olds = {r.job_id: r for r in self._old_records(old)}
            for job_id, raw in zip(chunk, raws, strict=True):
                if isinstance(raw, Exception):
                    if job_id in olds:
                        out.append(olds[job_id])
                elif raw is not None:
                    out.append(_record(job_id, raw))
        return out

    def _old_records(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """Records still in the old layout, read as they are (a read does not migrate)."""
        if not job_ids:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(job_key(job_id))
                pipe.get(data_key(job_id))
            raws = pipe.execute()
        return [
            _old_record(job_id, raw, blob)
            for job_id, raw, blob in zip(job_ids, raws[::2], raws[1::2], strict=True)
            if raw
        ]

    def active_ids(self, states: Iterable[JobState]) -> list[str]:
        """Every job id in these active states (from the state index)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for state in states:
                pipe.smembers(state_key(state))
            sets = pipe.execute()
        return sorted({_text(m) for members in sets for m in members})

"""What Agora's notifications (NCS, docs/service/ncs.md) tell cloudrec about its recordings.

The real service has no list of recordings: a job whose start answer was lost knows its
resourceId but not its sid, and a recorder that leaves by itself (maxIdleTime) is otherwise seen
only by spending query budget. NCS posts each recording's events (30/40 when it starts, 41 when
the recorder leaves, 31/32 with its files, 11 when the session is over, 12 after a failover);
``cloudrec ncs`` receives them and :class:`NcsLedger` keeps, per recording, what they said.

Redis layout (keys under ``cloudrec:ncs:``, each with the ledger's TTL, ``Settings.ncs_ttl``)::

    rec:<sid>           hash  cname, uid, first_ms/last_ms (sendts), types (event types seen,
                              ",3,40,"), started (event 40's status), left (event 41's
                              leaveCode), exit (event 11's exitStatus), upload ("uploaded" from
                              31, "backuped" from 32), files (31/32's fileList, JSON), new_uids
                              (event 12, JSON list), playlist (event 4), error (event 1 at level
                              5, JSON), job (the job that holds this sid)
    log:<sid>           list  the events, compact (type, sequence, sendts), the last LOG_LIMIT
    dedupe:<sid>        set   "n:<noticeId>" (NCS resends with the same noticeId,
    docs/service/ncs.md#transport) and
                              "s:<sequence>" (a redundant copy with a new noticeId) seen
    uid:<uid>:<cname>   zset  sid -> first_ms: who recorded this channel with this recorder uid
    unclaimed           zset  sid -> first_ms of every recording no job holds (yet)

Events arrive in any order, any number of times, or not at all (docs/service/ncs.md#transport: NCS
is not 100% reliable): every field is set on its own, so the order does not matter; duplicates are
counted once; and the job machine treats a missing event as "not known", never as "did not happen".

The write is one Lua script (deduplication, fields, indexes and the unclaimed set together),
so a receiver answers within milliseconds and two receivers behind a load balancer agree.

Size: over 400 lines because the envelope parsing, the write script and the reads of the ledger
share one Redis layout (keys built in :mod:`worker.keys`) that must agree field by field.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from contract.ncs import EventType, LeaveCode, signatures
from worker import keys

log = logging.getLogger("cloudrec.ncs")

PREFIX = keys.NCS_PREFIX
UNCLAIMED_KEY = keys.NCS_UNCLAIMED_KEY
LOG_LIMIT = 200
# The service's clock (sendts) against ours: a recording whose first event is this much older
# than a job's acquire can still be that job's.
CLOCK_SKEW_MS = 10_000
# A recording whose events arrive before its start's answer is unclaimed for a moment; it counts
# as unclaimed (metrics, ``cloudrec ncs unclaimed``) only once it is this old.
UNCLAIMED_GRACE = 60.0


rec_key = keys.ncs_rec_key
_log_key = keys.ncs_log_key
_dedupe_key = keys.ncs_dedupe_key
_uid_key = keys.ncs_uid_key


class EnvelopeError(ValueError):
    """A notification body that is not an NCS envelope; the message names the field."""


@dataclass(frozen=True)
class Envelope:
    """The fields of one notification (docs/service/ncs.md#envelope) that the ledger keeps."""

    notice_id: str
    product_id: int
    event_type: int
    sid: str
    cname: str
    uid: str
    sequence: int | None
    sendts: int
    details: dict[str, Any]

    @classmethod
    def parse(cls, data: Any) -> Envelope:
        """Raises :class:`EnvelopeError` naming the first field that is missing or wrong."""
        if not isinstance(data, dict):
            raise EnvelopeError("body: must be a JSON object")
        payload = data.get("payload")
        if not isinstance(payload, dict):
            raise EnvelopeError("payload: must be an object")
        details = payload.get("details")
        return cls(
            notice_id=_text_field(data, "noticeId"),
            product_id=_int_field(data, "productId"),
            event_type=_int_field(data, "eventType"),
            sid=_text_field(payload, "sid", "payload.sid"),
            cname=str(payload.get("cname") or ""),
            uid=str(payload.get("uid") or ""),
            sequence=_optional_int(payload, "sequence"),
            sendts=_optional_int(payload, "sendts") or _optional_int(data, "notifyMs") or 0,
            details=details if isinstance(details, dict) else {},
        )


def _text_field(data: Mapping[str, Any], name: str, label: str | None = None) -> str:
    value = data.get(name)
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
        raise EnvelopeError(f"{label or name}: required, a non-empty string")
    return str(value)


def _int_field(data: Mapping[str, Any], name: str) -> int:
    value = _optional_int(data, name)
    if value is None:
        raise EnvelopeError(f"{name}: required, an integer")
    return value


def _optional_int(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if isinstance(value, bool):
        raise EnvelopeError(f"{name}: must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if value is None:
        return None
    raise EnvelopeError(f"{name}: must be an integer")


# -- signatures --------------------------------------------------------------------------------
def signature_problem(body: bytes, headers: Mapping[str, str], secret: str) -> str | None:
    """None if the post is signed by ``secret``; else why not ("unsigned", "bad signature").

    Each signature header that is present must match (compared in constant time); at least one
    must be present. ``headers`` must look names up case-insensitively (HTTP headers do).
    """
    expected = signatures(body, secret)
    given = {name: headers.get(name) for name in expected}
    if not any(given.values()):
        return "unsigned"
    for name, value in given.items():
        if value is not None and not hmac.compare_digest(value.strip().lower(), expected[name]):
            return "bad signature"
    return None


# -- what one event changes --------------------------------------------------------------------
def event_fields(env: Envelope) -> dict[str, str]:
    """The ``rec:<sid>`` fields an event sets (values as stored)."""
    d = env.details
    kind = env.event_type
    if kind == EventType.RECORDER_STARTED:
        return {"started": str(d.get("status", 0))}
    if kind == EventType.RECORDER_LEAVE:
        return {"left": str(d.get("leaveCode", 0))}
    if kind == EventType.SESSION_EXIT:
        return {"exit": str(d.get("exitStatus", 0))}
    if kind in (EventType.UPLOADED, EventType.BACKUPED):
        files = d.get("fileList")
        return {
            "upload": "uploaded" if kind == EventType.UPLOADED else "backuped",
            "files": json.dumps(files if isinstance(files, list) else [], separators=(",", ":")),
        }
    if kind == EventType.FILE_INFOS and isinstance(d.get("fileList"), str):
        return {"playlist": d["fileList"]}
    if kind == EventType.STATUS_UPDATE and "status" in d:
        return {"status": str(d["status"])}
    if kind == EventType.ERROR and int(d.get("errorLevel", 0) or 0) >= 5:
        error = {"code": d.get("errorCode"), "module": d.get("module"), "msg": d.get("errorMsg")}
        return {"error": json.dumps(error, separators=(",", ":"))}
    return {}


# KEYS: dedupe, rec, log, uid index, unclaimed.
# ARGV: ttl seconds, sid, sequence ('' = none), event type, sendts, cname, uid, new uid ('' =
# none), log entry JSON, now ms, noticeId, then field/value pairs.
# Returns 0 (duplicate), 1 (stored), 2 (stored, the first event of this recording).
_RECORD_LUA = """
local ttl = tonumber(ARGV[1])
if redis.call('SISMEMBER', KEYS[1], 'n:' .. ARGV[11]) == 1 then return 0 end
if ARGV[3] ~= '' and redis.call('SISMEMBER', KEYS[1], 's:' .. ARGV[3]) == 1 then return 0 end
redis.call('SADD', KEYS[1], 'n:' .. ARGV[11])
if ARGV[3] ~= '' then redis.call('SADD', KEYS[1], 's:' .. ARGV[3]) end
redis.call('EXPIRE', KEYS[1], ttl)
local ts = tonumber(ARGV[5])
local first = redis.call('HGET', KEYS[2], 'first_ms')
local new = first == false
if new or ts < tonumber(first) then redis.call('HSET', KEYS[2], 'first_ms', ARGV[5]) end
local last = redis.call('HGET', KEYS[2], 'last_ms')
if last == false or ts > tonumber(last) then redis.call('HSET', KEYS[2], 'last_ms', ARGV[5]) end
if redis.call('HEXISTS', KEYS[2], 'cname') == 0 and ARGV[6] ~= '' then
  redis.call('HSET', KEYS[2], 'cname', ARGV[6], 'uid', ARGV[7])
end
local types = redis.call('HGET', KEYS[2], 'types') or ','
if not string.find(types, ',' .. ARGV[4] .. ',', 1, true) then
  redis.call('HSET', KEYS[2], 'types', types .. ARGV[4] .. ',')
end
if ARGV[8] ~= '' then
  local uids = cjson.decode(redis.call('HGET', KEYS[2], 'new_uids') or '[]')
  local seen = false
  for _, u in ipairs(uids) do if u == ARGV[8] then seen = true end end
  if not seen then
    uids[#uids + 1] = ARGV[8]
    redis.call('HSET', KEYS[2], 'new_uids', cjson.encode(uids))
  end
end
for i = 12, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('RPUSH', KEYS[3], ARGV[9])
redis.call('LTRIM', KEYS[3], -200, -1)
redis.call('EXPIRE', KEYS[3], ttl)
if ARGV[6] ~= '' then
  local score = redis.call('ZSCORE', KEYS[4], ARGV[2])
  if score == false or ts < tonumber(score) then redis.call('ZADD', KEYS[4], ts, ARGV[2]) end
  redis.call('EXPIRE', KEYS[4], ttl)
end
if redis.call('HEXISTS', KEYS[2], 'job') == 0 then
  local score = redis.call('ZSCORE', KEYS[5], ARGV[2])
  if score == false or ts < tonumber(score) then redis.call('ZADD', KEYS[5], ts, ARGV[2]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', tonumber(ARGV[10]) - ttl * 1000)
end
if new then return 2 end
return 1
"""


@dataclass(frozen=True)
class NcsRecording:
    """What the notifications said about one recording (fields absent: not heard)."""

    sid: str
    cname: str = ""
    uid: str = ""
    first_ms: int | None = None
    last_ms: int | None = None
    types: frozenset[int] = frozenset()
    started_status: int | None = None
    leave_code: int | None = None
    exit_status: int | None = None
    upload_status: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    new_uids: list[str] = field(default_factory=list)
    playlist: str | None = None
    error: dict[str, Any] | None = None
    job_id: str | None = None

    @property
    def started(self) -> bool:
        """Event 40 with status 0: the recorder joined the channel."""
        return self.started_status == 0

    @property
    def left(self) -> bool:
        """Event 41: the recorder left the channel (the recording is over)."""
        return self.leave_code is not None

    @property
    def finished(self) -> bool:
        """The session is over and its files are known: 31 uploaded or 32 backuped."""
        return self.upload_status is not None

    @property
    def over(self) -> bool:
        """The recorder left (41) or the session exited (11); 31/32 may still be on the way
        (delivery is not ordered), or never come (a recording with no data has none)."""
        return self.leave_code is not None or self.exit_status is not None

    def settled(self, now: float, seconds: float) -> bool:
        """Over, and nothing heard for ``seconds``: the files will not be told any more."""
        quiet = self.last_ms is None or now - self.last_ms / 1000 >= seconds
        return self.finished or (self.over and quiet)

    @property
    def idle_exit(self) -> bool:
        """The recorder left because nobody was in the channel (leaveCode bit 4)."""
        return self.leave_code is not None and bool(self.leave_code & LeaveCode.NO_USERS)

    @property
    def file_names(self) -> list[str]:
        names = [str(f.get("fileName") or f.get("filename") or "") for f in self.files]
        return [n for n in names if n]

    def summary(self) -> dict[str, Any]:
        """JSON for ``cloudrec ncs`` output."""
        return {
            "sid": self.sid,
            "cname": self.cname,
            "uid": self.uid,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "events": sorted(self.types),
            "leave_code": self.leave_code,
            "exit_status": self.exit_status,
            "uploading_status": self.upload_status,
            "files": self.file_names,
            "new_uids": self.new_uids,
            "job_id": self.job_id,
        }


# KEYS: rec:<sid>, unclaimed. ARGV: sid, job id, ttl. The claim of a ledger that is not receiving:
# only a recording something was heard of gets its job.
_CLAIM_HEARD_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'job', ARGV[2])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


class NcsLedger:
    """Per-recording memory of the notifications, in Redis (see the module docstring)."""

    def __init__(
        self, client: redis.Redis, ttl: float = 3 * 24 * 3600.0, *, receiving: bool = True
    ) -> None:
        self.redis = client
        self.ttl = int(ttl)
        # False: no receiver can be running (no NCS secret), so a claim is written only on a
        # recording already heard of, and a job costs no ledger key of its own.
        self.receiving = receiving
        self._record = client.register_script(_RECORD_LUA)
        self._claim_heard = client.register_script(_CLAIM_HEARD_LUA)

    # -- write ---------------------------------------------------------------------------------
    def record(self, env: Envelope, now: float | None = None) -> int:
        """Keep one notification. Returns 0 if it was a duplicate (already kept), 1 if it was
        new, 2 if it was the first one heard of its recording."""
        now = time.time() if now is None else now
        new_uid = (
            str(env.details.get("newUid", ""))
            if env.event_type == EventType.SESSION_FAILOVER
            else ""
        )
        entry = json.dumps(
            {"t": env.event_type, "seq": env.sequence, "ms": env.sendts}, separators=(",", ":")
        )
        flat = [x for pair in event_fields(env).items() for x in pair]
        uid_index = _uid_key(env.cname, env.uid) if env.cname and env.uid else _uid_key("", "")
        result = self._record(
            keys=[
                _dedupe_key(env.sid),
                rec_key(env.sid),
                _log_key(env.sid),
                uid_index,
                UNCLAIMED_KEY,
            ],
            args=[
                self.ttl,
                env.sid,
                "" if env.sequence is None else str(env.sequence),
                str(env.event_type),
                str(env.sendts),
                env.cname if env.uid else "",
                env.uid,
                new_uid,
                entry,
                str(int(now * 1000)),
                env.notice_id,
                *flat,
            ],
        )
        return int(result)

    def claim(self, sid: str, job_id: str) -> None:
        """This job holds ``sid``: its events are no longer unclaimed."""
        if not self.receiving:
            self._claim_heard(keys=[rec_key(sid), UNCLAIMED_KEY], args=[sid, job_id, self.ttl])
            return
        with self.redis.pipeline() as pipe:
            pipe.hset(rec_key(sid), "job", job_id)
            pipe.expire(rec_key(sid), self.ttl)
            pipe.zrem(UNCLAIMED_KEY, sid)
            pipe.execute()

    # -- read ----------------------------------------------------------------------------------
    def get(self, sid: str) -> NcsRecording | None:
        """What was heard of ``sid`` (None: nothing)."""
        raw = self.redis.hgetall(rec_key(sid))
        if not raw:
            return None
        return _recording(sid, {_text(k): _text(v) for k, v in raw.items()})

    def get_many(self, sids: list[str]) -> list[NcsRecording | None]:
        with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(rec_key(sid))
            raws = pipe.execute()
        return [
            _recording(sid, {_text(k): _text(v) for k, v in raw.items()}) if raw else None
            for sid, raw in zip(sids, raws, strict=True)
        ]

    def find_sid(self, cname: str, uid: str, since: float, job_id: str | None = None) -> str | None:
        """The sid of the recording of ``cname`` by recorder ``uid`` that began at or after
        ``since`` (epoch seconds, less the clock skew) and that no other job holds: the
        recording a start whose answer was lost began (the service runs one recording per
        channel and uid at a time, docs/service/behaviour.md#identity). The earliest such one."""
        low = int(since * 1000) - CLOCK_SKEW_MS
        sids = [_text(s) for s in self.redis.zrangebyscore(_uid_key(cname, uid), low, "+inf")]
        for sid, rec in zip(sids, self.get_many(sids), strict=True):
            if rec is not None and rec.job_id in (None, job_id):
                return sid
        return None

    def events(self, sid: str) -> list[dict[str, Any]]:
        """The events heard of ``sid`` in arrival order: ``{"t", "seq", "ms"}`` each."""
        return [json.loads(e) for e in self.redis.lrange(_log_key(sid), 0, -1)]

    def unclaimed(
        self, now: float | None = None, grace: float = UNCLAIMED_GRACE
    ) -> list[NcsRecording]:
        """Recordings no job holds whose first event is at least ``grace`` seconds old (newer
        ones may be a start whose answer is on its way), oldest first."""
        sids = self._unclaimed_sids(now, grace)
        return [rec for rec in self.get_many(sids) if rec is not None and rec.job_id is None]

    def count_unclaimed(self, now: float | None = None, grace: float = UNCLAIMED_GRACE) -> int:
        return len(self._unclaimed_sids(now, grace))

    def _unclaimed_sids(self, now: float | None, grace: float) -> list[str]:
        now = time.time() if now is None else now
        low = int((now - self.ttl) * 1000)
        high = int((now - grace) * 1000)
        return [_text(s) for s in self.redis.zrangebyscore(UNCLAIMED_KEY, low, high)]


def _recording(sid: str, raw: dict[str, str]) -> NcsRecording:
    return NcsRecording(
        sid=sid,
        cname=raw.get("cname", ""),
        uid=raw.get("uid", ""),
        first_ms=_int_or_none(raw.get("first_ms")),
        last_ms=_int_or_none(raw.get("last_ms")),
        types=frozenset(int(t) for t in raw.get("types", "").split(",") if t),
        started_status=_int_or_none(raw.get("started")),
        leave_code=_int_or_none(raw.get("left")),
        exit_status=_int_or_none(raw.get("exit")),
        upload_status=raw.get("upload"),
        files=json.loads(raw["files"]) if "files" in raw else [],
        new_uids=[str(u) for u in json.loads(raw.get("new_uids", "[]"))],
        playlist=raw.get("playlist"),
        error=json.loads(raw["error"]) if "error" in raw else None,
        job_id=raw.get("job"),
    )


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = [
    "Envelope",
    "EnvelopeError",
    "NcsLedger",
    "NcsRecording",
    "signature_problem",
    "signatures",
]

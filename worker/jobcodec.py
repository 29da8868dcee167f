"""The job record's stored form: one compact Redis string per job (worker.store).

A record is a run of fields, each ``<code><length><payload>``: the code is one ASCII character
(:data:`FIELDS`), the length one byte (under 128) or four (``0x80 | n >> 16``, then two bytes),
the payload depends on the field's kind:

    state     one character (:data:`STATE_CODES`)
    str       UTF-8 text                   int   decimal digits
    time      an IEEE 754 double, 8 bytes big-endian (exact: a float reads back the same)
    bool      empty (present means true; false is the default and not stored)
    json      compact JSON
    spec      a flag character (``"0"`` plus the flags), then compact JSON: bit 8,
              ``job_id`` (the spec's first key) left out, it is the record's key; bit 1,
              ``cname`` (the first key after it) left out, it is the record's; bit 2,
              ``stop_at`` left out, it is the record's ``stop_at`` in the spec's own ISO form
              (checked when written), and a digit says where it was; a read puts them back;
              bit 4, the JSON raw-deflated against :data:`SPEC_DICTIONARY` (when that is
              shorter)
    token     a resourceId or sid: "\\0" and the bytes of a lowercase hex text, "\\1" and those
              of a URL-safe base64 text (each only if it reads back identically), else the
              text (after a "\\2" if it begins with one of these three bytes)
    history   per entry, a state code and a time (9 bytes); since session 6 an entry whose
              time is a whole number of milliseconds is the state code in upper case and
              the milliseconds as a 6-byte integer (7 bytes); both kinds read, mixed

Compact forms (session 6, issue 12: a recording job's record in jemalloc's 320-byte class, not
its 384-byte one). Some fields have a second code (:data:`COMPACT`) whose payload has a fixed
size and so no length byte: the times as their 8-byte double (``time8``), a decimal uid under
2**32 as 4 bytes (``uid32``), a known ``sid_source`` as one byte (``enum``, :data:`SID_SOURCES`).
A record holds a field under one of its codes; records written before, with the first codes,
read as they were, and a write under one code drops the other.

Defaults are not stored (``None``, ``False``, ``0``, empty lists, ``"default"``); the job id is
the key. The codes and the kinds are a stored format: never reuse a code for another field.
The transition script in worker.store parses and rebuilds this form in Lua; it reads ``s``
(state), ``c`` (cname), ``i`` (sid), ``T`` (stop_sent_at), ``k`` (has_callback), ``G``
(merge), and appends to ``h`` (history): renaming those codes means changing the script.

Why not a hash: Redis keeps a hash compact (listpack) only while every value is at most 64
bytes, and a resourceId is 224; and a hash of JSON texts spends ~90 bytes per time on text.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# name -> (code, kind). A stored format: add fields with new codes, never change one.
FIELDS: dict[str, tuple[str, str]] = {
    "state": ("s", "state"),
    "cname": ("c", "str"),
    "uid": ("u", "str"),
    "spec": ("p", "spec"),
    "storage": ("g", "str"),
    "app": ("a", "str"),
    "has_token": ("t", "bool"),
    "created_at": ("C", "time"),
    "start_at": ("S", "time"),
    "stop_at": ("E", "time"),
    "stop_early_max": ("e", "time"),
    "resource_id": ("r", "token"),
    "acquired_at": ("A", "time"),
    "sid": ("i", "token"),
    "started_at": ("B", "time"),
    "uid_attempt": ("n", "int"),
    "stop_reason": ("o", "str"),
    "stop_sent_at": ("T", "time"),
    "stop_uncertain": ("U", "bool"),
    "missing_since": ("M", "time"),
    "missing_count": ("m", "int"),
    "start_sent_at": ("Q", "time"),
    "sid_wait_since": ("W", "time"),
    "sid_provoked_at": ("P", "time"),
    "sid_source": ("x", "str"),
    "failover_uids": ("f", "json"),
    "has_callback": ("k", "bool"),
    "files": ("F", "json"),
    "uploading_status": ("y", "str"),
    "error": ("z", "json"),
    "callback_status": ("K", "json"),
    "merge": ("G", "bool"),
    "merged": ("H", "json"),
    "history": ("h", "history"),
}
# name -> (code, kind): a second, fixed-size form (no length byte). A stored format too.
# stop_sent_at keeps its one form: the transition script tests it by its code ``T``.
COMPACT: dict[str, tuple[str, str]] = {
    "created_at": ("1", "time8"),
    "start_at": ("2", "time8"),
    "stop_at": ("3", "time8"),
    "acquired_at": ("4", "time8"),
    "started_at": ("5", "time8"),
    "start_sent_at": ("6", "time8"),
    "sid_wait_since": ("7", "time8"),
    "sid_provoked_at": ("8", "time8"),
    "missing_since": ("9", "time8"),
    "uid": ("v", "uid32"),
    "sid_source": ("X", "enum"),
}
FIXED_SIZES = {"time8": 8, "uid32": 4, "enum": 1}
# code -> payload size, for the codes without a length byte.
FIXED = {code: FIXED_SIZES[kind] for code, kind in COMPACT.values()}
# A stored format: a sid_source's byte is its index here (append only).
SID_SOURCES = ("start", "ncs", "dev_api", "query")
# Every code -> (name, kind), and -> name.
CODES = {code: (name, kind) for name, (code, kind) in [*FIELDS.items(), *COMPACT.items()]}
NAMES = {code: name for code, (name, _) in CODES.items()}

# A stored format too: one character per state.
STATE_CODES = {
    "queued": "q",
    "acquiring": "a",
    "starting": "s",
    "recording": "r",
    "stopping": "p",
    "completed": "c",
    "empty": "e",
    "idle_exit": "i",
    "failed": "f",
    "cancelled": "x",
}
STATE_NAMES = {code: name for name, code in STATE_CODES.items()}

_DOUBLE = struct.Struct(">d")
_UINT32 = struct.Struct(">I")
_MS_LIMIT = 1 << 48
# JobRecord's defaults (a test holds them equal): a field at its default is not stored.
DEFAULTS: dict[str, Any] = {
    "storage": "default",
    "app": "default",
    "has_token": False,
    "stop_early_max": 0.0,
    "uid_attempt": 0,
    "stop_uncertain": False,
    "missing_count": 0,
    "has_callback": False,
    "failover_uids": [],
    "files": [],
    "merge": False,
    "history": [],
    **dict.fromkeys(
        [
            "start_at",
            "resource_id",
            "acquired_at",
            "sid",
            "started_at",
            "stop_reason",
            "stop_sent_at",
            "missing_since",
            "start_sent_at",
            "sid_wait_since",
            "sid_provoked_at",
            "sid_source",
            "uploading_status",
            "error",
            "callback_status",
            "merged",
        ]
    ),
}
_SPEC_CNAME, _SPEC_STOP, _SPEC_DEFLATED, _SPEC_JOB_ID = 1, 2, 4, 8
# A spec's JSON is deflated against this dictionary (the names and texts specs repeat) when that
# is shorter: ~100 bytes of a typical spec become ~40. A stored format: a record written with it
# is read with it, so it may never change (a new one would need a new flag).
SPEC_DICTIONARY = (
    b'"fileNamePrefix":["'
    b'"callback":{"task":"'
    b'"webhook":"https://'
    b'"labels":{"'
    b'"start_at":"'
    b'"duration":'
    b'"uid":"'
    b'"job_id":"'
    b'"merge":true'
    b'"stop_early_max":'
    b'"recordingFileConfig":{"avFileType":["hls","mp4"]}'
    b'"subscribeAudioUids":["'
    b'"subscribeVideoUids":["'
    b'"layoutConfig":[{"x_axis":0.0,"y_axis":0.0,"width":1.0,"height":1.0,"uid":"'
    b'"backgroundColor":"#000000",'
    b'"mixedVideoLayout":1,'
    b'"channelType":1,"streamTypes":2,'
    b'"recordingConfig":{"maxIdleTime":'
    b'"transcodingConfig":{"width":640,"height":360,"fps":15,"bitrate":500'
)


def field(code: str, payload: bytes) -> bytes:
    """One stored field."""
    n = len(payload)
    if code in FIXED:
        return code.encode() + payload
    head = bytes([n]) if n < 128 else bytes([0x80 | n >> 16, (n >> 8) & 0xFF, n & 0xFF])
    return code.encode() + head + payload


def parse(raw: bytes) -> dict[str, bytes]:
    """A stored record's fields, code -> payload."""
    out: dict[str, bytes] = {}
    i = 0
    while i < len(raw):
        code = chr(raw[i])
        if code in FIXED:
            out[code] = raw[i + 1 : i + 1 + FIXED[code]]
            i += 1 + FIXED[code]
            continue
        n, head = raw[i + 1], 2
        if n >= 128:
            n = ((n & 0x7F) << 16) | (raw[i + 2] << 8) | raw[i + 3]
            head = 4
        out[code] = raw[i + head : i + head + n]
        i += head + n
    return out


def history_entry(state: str, at: float) -> bytes:
    """A history entry as stored: the state's code and the time (to the millisecond)."""
    return _entry(state, round(at, 3))


def _entry(state: str, at: float) -> bytes:
    """7 bytes when ``at`` is whole milliseconds (the upper-case code says so), else 9."""
    ms = round(at * 1000)
    if 0 <= ms < _MS_LIMIT and ms / 1000 == at:
        return STATE_CODES[state].upper().encode() + ms.to_bytes(6, "big")
    return STATE_CODES[state].encode() + _DOUBLE.pack(at)


def _history(payload: bytes) -> list[list[Any]]:
    out: list[list[Any]] = []
    i = 0
    while i < len(payload):
        code = chr(payload[i])
        if code.isupper():
            out.append([STATE_NAMES[code.lower()], int.from_bytes(payload[i + 1 : i + 7]) / 1000])
            i += 7
        else:
            out.append([STATE_NAMES[code], _DOUBLE.unpack(payload[i + 1 : i + 9])[0]])
            i += 9
    return out


def is_default(name: str, value: Any) -> bool:
    """Whether ``value`` is what a record has when the field is not stored (JobRecord's
    defaults; the fields without one are always stored)."""
    if name not in DEFAULTS:
        return False
    default = DEFAULTS[name]
    if default is None or isinstance(default, bool):
        return value is default
    if isinstance(default, int | float):  # 0 or 0.0, but never False
        return isinstance(value, int | float) and not isinstance(value, bool) and value == 0
    return type(value) is type(default) and bool(value == default)


def encode_value(
    name: str, value: Any, record: Mapping[str, Any] | None = None, kind: str | None = None
) -> bytes:
    """One field's payload (``value`` in its JSON form; ``record``: the whole record's, for
    what the spec may leave out; ``kind``: a form other than the field's first)."""
    kind = kind or FIELDS[name][1]
    if kind == "state":
        return STATE_CODES[str(value)].encode()
    if kind == "str":
        return str(value).encode()
    if kind == "int":
        return str(int(value)).encode()
    if kind == "time":
        return _DOUBLE.pack(float(value))
    if kind == "bool":
        return b""
    if kind == "token":
        return _token(str(value))
    if kind == "history":  # as they are: an entry of an older record may be finer than 1 ms
        return b"".join(_entry(h["state"], h["at"]) for h in value)
    if kind == "time8":
        return _DOUBLE.pack(float(value))
    if kind == "uid32":
        return _UINT32.pack(int(value))
    if kind == "enum":
        return bytes([SID_SOURCES.index(value)])
    if kind == "spec":
        return _spec(value, record or {})
    return _json(value)


def encode_field(
    name: str, value: Any, record: Mapping[str, Any] | None = None
) -> tuple[str, bytes]:
    """A field's code and payload: its compact form when it has one that holds ``value``."""
    if name in COMPACT:
        code, kind = COMPACT[name]
        if _fits(kind, value):
            return code, encode_value(name, value, record, kind)
    return FIELDS[name][0], encode_value(name, value, record)


def _fits(kind: str, value: Any) -> bool:
    if kind == "time8":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "uid32":
        return (
            isinstance(value, str)
            and value.isascii()
            and value.isdigit()
            and str(int(value)) == value
            and int(value) < 1 << 32
        )
    return value in SID_SOURCES


def codes_of(name: str) -> tuple[str, ...]:
    """Every code a field may be stored under."""
    return (FIELDS[name][0], COMPACT[name][0]) if name in COMPACT else (FIELDS[name][0],)


def value_of(fields: Mapping[str, bytes], name: str, default: Any = None) -> Any:
    """A field's value from a parsed record, whichever code holds it (``default``: none)."""
    for code in codes_of(name):
        if code in fields:
            return decode_code(code, fields[code])
    return default


def decode_code(code: str, payload: bytes) -> Any:
    """The value of a field stored under ``code``."""
    name, kind = CODES[code]
    return decode_value(name, payload, kind)


def decode_value(name: str, payload: bytes, kind: str | None = None) -> Any:
    """One field's value from its payload, in the JSON form a JobRecord validates (``kind``:
    the payload's, when it is not the field's first form)."""
    kind = kind or FIELDS[name][1]
    if kind == "time8":
        return _DOUBLE.unpack(payload)[0]
    if kind == "uid32":
        return str(_UINT32.unpack(payload)[0])
    if kind == "enum":
        return SID_SOURCES[payload[0]]
    if kind == "state":
        return STATE_NAMES[payload.decode()]
    if kind in ("str", "int"):
        text = payload.decode()
        return int(text) if kind == "int" else text
    if kind == "time":
        return _DOUBLE.unpack(payload)[0]
    if kind == "bool":
        return True
    if kind == "token":
        return _untoken(payload)
    if kind == "history":
        return _history(payload)
    if kind == "spec":
        return payload  # decode() restores it: it needs the record's cname and stop_at
    return json.loads(payload)


def encode(data: Mapping[str, Any]) -> bytes:
    """A record (its JSON form) as stored; defaults are left out, and so is the job id (the
    key): ``data["job_id"]``, when there, only tells the spec what it may leave out."""
    parts = [
        encode_field(name, value, data)
        for name, value in data.items()
        if name in FIELDS and not is_default(name, value)
    ]
    return b"".join(field(code, payload) for code, payload in sorted(parts))


def decode(raw: bytes, job_id: str | None = None) -> dict[str, Any]:
    """A stored record's fields by name, in JSON form (what is absent is a default).
    ``job_id``: the record's key's, which its spec may have left out."""
    fields = parse(raw)
    data = {CODES[code][0]: decode_code(code, p) for code, p in fields.items() if code in CODES}
    if "spec" in data:
        data["spec"] = _restore_spec(data, data["spec"], job_id)
    return data


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _token(text: str) -> bytes:
    """A resourceId or sid: its bytes when the text is their exact hex or URL-safe base64 form
    (a first byte says which), else the text (a text that begins with such a byte gets one
    more before it)."""
    for mark, pack, unpack in ((b"\0", _hex, bytes.hex), (b"\1", _b64, _b64text)):
        try:
            packed = pack(text)
        except (ValueError, binascii.Error):
            continue
        if unpack(packed) == text:
            return mark + packed
    raw = text.encode()
    return b"\2" + raw if raw[:1] in (b"\0", b"\1", b"\2") else raw


def _untoken(payload: bytes) -> str:
    mark, rest = payload[:1], payload[1:]
    if mark == b"\0":
        return rest.hex()
    if mark == b"\1":
        return _b64text(rest)
    return (rest if mark == b"\2" else payload).decode()


def _hex(text: str) -> bytes:
    if text != text.lower():
        raise ValueError("not lowercase hex")
    return bytes.fromhex(text)


def _b64(text: str) -> bytes:
    if len(text) % 4 or not text.isascii():
        raise ValueError("not whole base64 quanta")
    return base64.urlsafe_b64decode(text.encode("ascii"))


def _b64text(packed: bytes) -> str:
    return base64.urlsafe_b64encode(packed).decode()


def _spec(spec: Mapping[str, Any], record: Mapping[str, Any]) -> bytes:
    """The spec without what the record holds anyway: its job_id when it is the spec's first
    key (wire order) and the record's key, then its cname when it is the first key left, and
    its stop_at when it is the record's in the same text (where it was: a digit)."""
    flags, stored, where = 0, dict(spec), ""
    job_id = record.get("job_id")
    if job_id is not None and next(iter(stored), None) == "job_id" and stored["job_id"] == job_id:
        del stored["job_id"]
        flags |= _SPEC_JOB_ID
    if next(iter(stored), None) == "cname" and stored["cname"] == record.get("cname"):
        del stored["cname"]
        flags |= _SPEC_CNAME
    stop, keys = record.get("stop_at"), list(stored)
    at = keys.index("stop_at") if "stop_at" in keys else 10
    if isinstance(stop, int | float) and at < 10 and stored["stop_at"] == _iso(stop):
        where = str(at)
        del stored["stop_at"]
        flags |= _SPEC_STOP
    text = _json(stored)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, SPEC_DICTIONARY)
    packed = packer.compress(text) + packer.flush()
    if len(packed) < len(text):
        text, flags = packed, flags | _SPEC_DEFLATED
    # One character for every flag combination: "0" to "?" (records before bit 8: "0" to "7").
    return f"{chr(ord('0') + flags)}{where}".encode() + text


def _restore_spec(data: dict[str, Any], head: bytes, job_id: str | None) -> dict[str, Any]:
    flags = head[0] - ord("0")
    text = head[2:] if flags & _SPEC_STOP else head[1:]
    if flags & _SPEC_DEFLATED:
        text = zlib.decompressobj(-15, SPEC_DICTIONARY).decompress(text)
    body = json.loads(text)
    items = list(body.items())
    if flags & _SPEC_STOP:
        items.insert(head[1] - ord("0"), ("stop_at", _iso(data["stop_at"])))
    if flags & _SPEC_CNAME:
        items.insert(0, ("cname", data.get("cname")))
    if flags & _SPEC_JOB_ID:
        if job_id is None:
            raise ValueError("this record's spec left its job_id out: decode it with its key's")
        items.insert(0, ("job_id", job_id))
    return dict(items)


def _iso(ts: float) -> str:
    """A spec's ``stop_at`` as JobSpec.wire writes it (pydantic's JSON form of a UTC time)."""
    text = datetime.fromtimestamp(ts, UTC).isoformat()
    return text.replace("+00:00", "Z")

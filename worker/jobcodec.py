"""The job record's stored form: one compact Redis string per job (worker.store).

A record is a run of fields, each ``<code><length><payload>``: the code is one ASCII character
(:data:`FIELDS`), the length one byte (under 128) or four (``0x80 | n >> 16``, then two bytes),
the payload depends on the field's kind:

    state     one character (:data:`STATE_CODES`)
    str       UTF-8 text                   int   decimal digits
    time      an IEEE 754 double, 8 bytes big-endian (exact: a float reads back the same)
    bool      empty (present means true; false is the default and not stored)
    json      compact JSON
    spec      a flag digit, then compact JSON: bit 1, ``cname`` (the spec's first key) left
              out, it is the record's; bit 2, ``stop_at`` left out, it is the record's
              ``stop_at`` in the spec's own ISO form (checked when written), and a digit
              says where it was; a read puts them back; bit 4, the JSON raw-deflated against
              :data:`SPEC_DICTIONARY` (when that is shorter)
    token     a resourceId or sid: "\\0" and the bytes of a lowercase hex text, "\\1" and those
              of a URL-safe base64 text (each only if it reads back identically), else the
              text (after a "\\2" if it begins with one of these three bytes)
    history   per entry, a state code and a time (9 bytes)

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
NAMES = {code: name for name, (code, _) in FIELDS.items()}

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
_SPEC_CNAME, _SPEC_STOP, _SPEC_DEFLATED = 1, 2, 4
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
    head = bytes([n]) if n < 128 else bytes([0x80 | n >> 16, (n >> 8) & 0xFF, n & 0xFF])
    return code.encode() + head + payload


def parse(raw: bytes) -> dict[str, bytes]:
    """A stored record's fields, code -> payload."""
    out: dict[str, bytes] = {}
    i = 0
    while i < len(raw):
        code, n = chr(raw[i]), raw[i + 1]
        head = 2
        if n >= 128:
            n = ((n & 0x7F) << 16) | (raw[i + 2] << 8) | raw[i + 3]
            head = 4
        out[code] = raw[i + head : i + head + n]
        i += head + n
    return out


def history_entry(state: str, at: float) -> bytes:
    """A history entry as stored: the state's code and the time (to the millisecond)."""
    return STATE_CODES[state].encode() + _DOUBLE.pack(round(at, 3))


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


def encode_value(name: str, value: Any, record: Mapping[str, Any] | None = None) -> bytes:
    """One field's payload (``value`` in its JSON form; ``record``: the whole record's, for
    what the spec may leave out)."""
    kind = FIELDS[name][1]
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
        return b"".join(STATE_CODES[h["state"]].encode() + _DOUBLE.pack(h["at"]) for h in value)
    if kind == "spec":
        return _spec(value, record or {})
    return _json(value)


def decode_value(name: str, payload: bytes) -> Any:
    """One field's value from its payload, in the JSON form a JobRecord validates."""
    kind = FIELDS[name][1]
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
        return [
            [STATE_NAMES[chr(payload[i])], _DOUBLE.unpack(payload[i + 1 : i + 9])[0]]
            for i in range(0, len(payload), 9)
        ]
    if kind == "spec":
        return payload  # decode() restores it: it needs the record's cname and stop_at
    return json.loads(payload)


def encode(data: Mapping[str, Any]) -> bytes:
    """A record (its JSON form, job id left out) as stored; defaults are left out."""
    parts = [
        (FIELDS[name][0], encode_value(name, value, data))
        for name, value in data.items()
        if name in FIELDS and not is_default(name, value)
    ]
    return b"".join(field(code, payload) for code, payload in sorted(parts))


def decode(raw: bytes) -> dict[str, Any]:
    """A stored record's fields by name, in JSON form (what is absent is a default)."""
    fields = parse(raw)
    data = {
        NAMES[code]: decode_value(NAMES[code], p) for code, p in fields.items() if code in NAMES
    }
    if "spec" in data:
        data["spec"] = _restore_spec(data, data["spec"])
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
    """The spec without what the record holds anyway: its cname when it is the spec's first
    key, and its stop_at when it is the record's in the same text (where it was: a digit)."""
    flags, stored, where = 0, dict(spec), ""
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
    return f"{flags}{where}".encode() + text


def _restore_spec(data: dict[str, Any], head: bytes) -> dict[str, Any]:
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
    return dict(items)


def _iso(ts: float) -> str:
    """A spec's ``stop_at`` as JobSpec.wire writes it (pydantic's JSON form of a UTC time)."""
    text = datetime.fromtimestamp(ts, UTC).isoformat()
    return text.replace("+00:00", "Z")

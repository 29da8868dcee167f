"""RTC tokens in Agora's AccessToken2 format ("007"): building one and checking one.

The worker mints the recorder's token with :func:`build_rtc_token`; the emulator checks the token
of a start with :func:`check_rtc_token`, as the real service does. Both follow Agora's reference
implementation (AgoraIO/Tools, ``DynamicKey/AgoraDynamicKey/python3/src/AccessToken2.py``), and
``tests/contract/test_tokens.py`` checks the builder byte for byte against its published vectors.

The format::

    token        = "007" + base64(zlib(content))
    content      = string(signature) + signing_info
    signing_info = string(app_id) + uint32(issue_ts) + uint32(expire) + uint32(salt)
                   + uint16(service count) + services (sorted by type)
    rtc service  = uint16(1) + map(privilege -> uint32 seconds) + string(channel) + string(uid)
    signing key  = HMAC-SHA256(key=uint32(issue_ts), app_certificate), then
                   HMAC-SHA256(key=uint32(salt), that)
    signature    = HMAC-SHA256(key=signing key, signing_info)

Integers are little-endian; a ``string`` is a uint16 length then the bytes; a map is a uint16
count then (uint16 key, uint32 value) pairs. ``expire`` and every privilege's value are seconds
after ``issue_ts``. The uid is a string: ``""`` (uid 0) lets any uid join.

A token is a secret: nothing here logs one, and :class:`RtcToken` (a parsed token) holds
nothing that lets anyone rebuild it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time
import zlib
from dataclasses import dataclass
from enum import IntEnum

VERSION = "007"
SERVICE_RTC = 1
# The service honours at most this (Agora: "each privilege is valid for a maximum of 24 hours").
MAX_LIFETIME_SECONDS = 24 * 3600
# A token is a few hundred bytes; its inflated content is read up to this (a larger one is
# refused, so that a hostile one cannot inflate without bound).
MAX_CONTENT_BYTES = 64 * 1024


class Privilege(IntEnum):
    """RTC privileges of an AccessToken2 (``ServiceRtc.kPrivilege*``)."""

    JOIN_CHANNEL = 1
    PUBLISH_AUDIO = 2
    PUBLISH_VIDEO = 3
    PUBLISH_DATA = 4


ALL_PRIVILEGES = tuple(Privilege)


class TokenError(ValueError):
    """A token that cannot be read, or a bad input to the builder (the message never holds a
    token or a certificate)."""


# -- packing ---------------------------------------------------------------------------------
def _u16(value: int) -> bytes:
    return struct.pack("<H", value)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _string(value: bytes) -> bytes:
    return _u16(len(value)) + value


def _privilege_map(privileges: dict[int, int]) -> bytes:
    items = sorted(privileges.items())
    return _u16(len(items)) + b"".join(_u16(k) + _u32(v) for k, v in items)


def _is_hex32(value: str) -> bool:
    if len(value) != 32:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def _signing_key(app_certificate: bytes, issue_ts: int, salt: int) -> bytes:
    key = hmac.new(_u32(issue_ts), app_certificate, hashlib.sha256).digest()
    return hmac.new(_u32(salt), key, hashlib.sha256).digest()


def uid_text(uid: int | str) -> str:
    """The uid as a token holds it: uid 0 (or "0", "") is "" (any uid may join)."""
    text = str(uid)
    return "" if text in ("0", "") else text


# -- building --------------------------------------------------------------------------------
def build_rtc_token(
    app_id: str,
    app_certificate: str,
    channel: str,
    uid: int | str,
    *,
    lifetime: int,
    privileges: tuple[Privilege, ...] = ALL_PRIVILEGES,
    issue_ts: int | None = None,
    salt: int | None = None,
) -> str:
    """An AccessToken2 for ``uid`` in ``channel``: the token and each privilege valid for
    ``lifetime`` seconds from ``issue_ts`` (now).

    As the reference builder, refuses an App ID or certificate that is not 32 hex characters
    (the service's form). ``issue_ts`` and ``salt`` are fixed only by tests (the reference's
    vectors); a salt is otherwise random in 1..99999999 as the reference draws it.
    """
    if not _is_hex32(app_id):
        raise TokenError("app id: must be 32 hexadecimal characters (an Agora App ID)")
    if not _is_hex32(app_certificate):
        raise TokenError("app certificate: must be 32 hexadecimal characters")
    if not 0 < lifetime < 2**32:
        raise TokenError(f"lifetime: must be between 1 and {2**32 - 1} seconds (got {lifetime})")
    issue_ts = int(time.time()) if issue_ts is None else issue_ts
    salt = secrets.randbelow(99_999_999) + 1 if salt is None else salt
    service = (
        _u16(SERVICE_RTC)
        + _privilege_map({int(p): lifetime for p in privileges})
        + _string(channel.encode())
        + _string(uid_text(uid).encode())
    )
    signing_info = (
        _string(app_id.encode()) + _u32(issue_ts) + _u32(lifetime) + _u32(salt) + _u16(1) + service
    )
    key = _signing_key(app_certificate.encode(), issue_ts, salt)
    signature = hmac.new(key, signing_info, hashlib.sha256).digest()
    content = zlib.compress(_string(signature) + signing_info)
    return VERSION + base64.b64encode(content).decode()


# -- reading ---------------------------------------------------------------------------------
class _Reader:
    """Reads the packed fields in order; a short buffer is a :class:`TokenError`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise TokenError("token: truncated")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def string(self) -> bytes:
        return self.take(self.u16())

    def privileges(self) -> dict[int, int]:
        return {self.u16(): self.u32() for _ in range(self.u16())}


@dataclass(frozen=True)
class RtcToken:
    """What an AccessToken2 says about RTC (its first RTC service), and what verifies it."""

    app_id: str
    issue_ts: int
    expire: int  # seconds after issue_ts
    salt: int
    channel: str | None  # None: the token has no RTC service
    uid: str  # "" lets any uid join
    privileges: dict[int, int]  # privilege -> seconds after issue_ts
    signature: bytes
    signing_info: bytes

    @property
    def expires_at(self) -> int:
        """Unix time the token itself expires (joining needs it valid)."""
        return self.issue_ts + self.expire

    def privilege_expires_at(self, privilege: Privilege) -> int | None:
        """Unix time ``privilege`` ends; None if the token does not grant it. A value of 0 sets
        no limit of its own (the token's expiry applies), as the reference builders' default
        ``privilege_expire=0`` means."""
        seconds = self.privileges.get(int(privilege))
        if seconds is None:
            return None
        return self.expires_at if seconds == 0 else self.issue_ts + seconds

    @property
    def valid_until(self) -> int:
        """Unix time the holder is dropped from the channel: the token's expiry or its join
        privilege's, whichever comes first (0 without a join privilege)."""
        join = self.privilege_expires_at(Privilege.JOIN_CHANNEL)
        return 0 if join is None else min(self.expires_at, join)

    def signed_by(self, app_certificate: str) -> bool:
        key = _signing_key(app_certificate.encode(), self.issue_ts, self.salt)
        expected = hmac.new(key, self.signing_info, hashlib.sha256).digest()
        return hmac.compare_digest(expected, self.signature)


def parse_token(token: str) -> RtcToken:
    """Read an AccessToken2 (no signature check). Raises :class:`TokenError`."""
    if not token.startswith(VERSION):
        raise TokenError("token: not an AccessToken2 (it must start with 007)")
    try:
        inflater = zlib.decompressobj()
        # Bounded: a hostile "token" of a few KB must not inflate to gigabytes.
        content = inflater.decompress(
            base64.b64decode(token[len(VERSION) :], validate=True), MAX_CONTENT_BYTES
        )
    except (binascii.Error, ValueError, zlib.error):
        raise TokenError("token: not base64 of zlib data") from None
    if inflater.unconsumed_tail:
        raise TokenError(f"token: over {MAX_CONTENT_BYTES} bytes once inflated")
    reader = _Reader(content)
    signature = reader.string()
    signing_info = content[reader.pos :]
    app_id = reader.string()
    issue_ts, expire, salt = reader.u32(), reader.u32(), reader.u32()
    channel: str | None = None
    uid = ""
    privileges: dict[int, int] = {}
    for _ in range(reader.u16()):
        service_type = reader.u16()
        if service_type != SERVICE_RTC:
            break  # another service's layout is unknown here: stop, as the reference does
        privileges = reader.privileges()
        channel = reader.string().decode(errors="replace")
        uid = reader.string().decode(errors="replace")
        break
    return RtcToken(
        app_id=app_id.decode(errors="replace"),
        issue_ts=issue_ts,
        expire=expire,
        salt=salt,
        channel=channel,
        uid=uid,
        privileges=privileges,
        signature=signature,
        signing_info=signing_info,
    )


class TokenProblem(IntEnum):
    """Why a token does not let a user join: the RTC error codes the service reports (the REST
    code table, docs/service/errors.md#codes)."""

    EXPIRED = 109
    INVALID = 110


@dataclass(frozen=True)
class TokenCheck:
    """The verdict on a token: ``problem`` None when it lets the user join until
    ``valid_until`` (Unix time)."""

    problem: TokenProblem | None
    reason: str
    valid_until: int = 0
    token: RtcToken | None = None


def check_rtc_token(
    token: str | None,
    *,
    app_id: str,
    app_certificate: str,
    channel: str,
    uid: str,
    now: float | None = None,
) -> TokenCheck:
    """Whether ``token`` lets ``uid`` join ``channel`` of ``app_id`` now, as the service checks
    it with the project's App Certificate: signed with it, for this App ID, channel and uid (a
    token for uid 0 fits any uid), with a join privilege, neither it nor the privilege expired.
    A missing token is invalid (110); an expired one is 109."""
    now = time.time() if now is None else now
    if not token:
        return TokenCheck(TokenProblem.INVALID, "no token, and the project has an App Certificate")
    try:
        parsed = parse_token(token)
    except TokenError as exc:
        return TokenCheck(TokenProblem.INVALID, str(exc))
    problem = _identity_problem(parsed, app_id, app_certificate, channel, uid)
    if problem is not None:
        return TokenCheck(TokenProblem.INVALID, problem, token=parsed)
    if parsed.valid_until <= now:
        return TokenCheck(TokenProblem.EXPIRED, "token expired", parsed.valid_until, parsed)
    return TokenCheck(None, "ok", parsed.valid_until, parsed)


def _identity_problem(
    token: RtcToken, app_id: str, app_certificate: str, channel: str, uid: str
) -> str | None:
    if not token.signed_by(app_certificate):
        return "signature does not match the App Certificate"
    if token.app_id != app_id:
        return "token is for another App ID"
    if token.channel is None:
        return "token has no RTC service"
    if token.channel != channel:
        return "token is for another channel"
    if token.uid not in ("", uid_text(uid)):
        return "token is for another uid"
    if int(Privilege.JOIN_CHANNEL) not in token.privileges:
        return "token has no join-channel privilege"
    return None

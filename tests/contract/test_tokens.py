"""The AccessToken2 builder against Agora's published test vectors, and the checker the emulator
uses: it accepts what the builder makes and refuses a token for another App ID, channel or uid,
an expired one, a tampered one, one signed with another certificate, and no token at all.

The vectors are copied from Agora's reference implementation, AgoraIO/Tools,
``DynamicKey/AgoraDynamicKey/python3/test/AccessToken2Test.py`` (``setUp``: app id, certificate,
channel, uid 2882341273, expire 600, salt 1, issue ts 1111111; ``test_service_rtc``,
``test_service_rtc_uid_0``, ``test_service_rtc_account``, ``test_multi_service``) and, for a token
another implementation compressed, ``DynamicKey/AgoraDynamicKey/go/src/accesstoken2/
accesstoken_test.go`` (``Test_AccessToken_Parse_TokenRtc``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import zlib

import pytest

from contract.tokens import (
    Privilege,
    TokenError,
    TokenProblem,
    build_rtc_token,
    check_rtc_token,
    parse_token,
)

# -- Agora's vectors (AgoraIO/Tools, python3/test/AccessToken2Test.py, setUp) -------------------
APP_ID = "970CA35de60c44645bbae8a215061b33"
APP_CERT = "5CFd2fd1755d40ecb72977518be15d3b"
CHANNEL = "7d72365eb983485397e3e3f9d460bdda"
UID = 2882341273
EXPIRE = 600
SALT = 1
TS = 1111111

# test_service_rtc (and test_service_rtc_account: the same token for the uid as a string)
RTC_UID = (
    "007eJxTYBBbsMMnKq7p9Hf/HcIX5kce9b518kCiQgSr5Zrp4X1Tu6UUGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4"
    "yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiVwMRhYWRsYmhkbmxgDCaiTj"
)
# test_service_rtc_uid_0
RTC_UID_0 = (
    "007eJxTYLhzZP08Lxa1Pg57+TcXb/3cZ3wi4V6kbpbOog0G2dOYk20UGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4"
    "yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiQwMADacImo="
)
# test_multi_service: RTC with all four privileges, then RTM, FPA, Chat and APaaS services
MULTI_SERVICE = (
    "007eJxTYHh8IPKzTvBdf9ce8bk7G61vs06oca1e815/ot4+x7rfjDIKDJbmBs6OxqYpqWYGySYmZiamSUmJqRaJRoamBmaGSc"
    "bG7l8EGCKYGBgYGRgYWIEkCxCD+ExgkhlMsoBJBQbzFHMjYzPT1CRLC2MTC1NjS/NU41TjNMsUEzODpJSURC4GIwsLI2MTQy"
    "NzYyagORCTkEVZ4KKsWOXZgWIQm1HF//8HAL01L5I="
)
# go/src/accesstoken2/accesstoken_test.go: the RTC token as Go's zlib writer compresses it
GO_RTC_UID = (
    "007eJxSYBBbsMMnKq7p9Hf/HcIX5kce9b518kCiQgSr5Zrp4X1Tu6UUGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4"
    "yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiVwMRhYWRsYmhkbmxoAAAAD//8JqJOM="
)


def _vector_build(uid: int | str, privileges: tuple[Privilege, ...]) -> str:
    return build_rtc_token(
        APP_ID,
        APP_CERT,
        CHANNEL,
        uid,
        lifetime=EXPIRE,
        privileges=privileges,
        issue_ts=TS,
        salt=SALT,
    )


@pytest.mark.parametrize(
    ("uid", "expected"),
    [(UID, RTC_UID), (str(UID), RTC_UID), (0, RTC_UID_0), ("0", RTC_UID_0)],
    ids=["uid", "account", "uid-0", "uid-0-string"],
)
def test_the_builder_makes_the_reference_tokens_byte_for_byte(
    uid: int | str, expected: str
) -> None:
    assert _vector_build(uid, (Privilege.JOIN_CHANNEL,)) == expected


def _signing_info(token: str) -> bytes:
    content = zlib.decompress(base64.b64decode(token[3:]))
    return content[2 + 32 :]  # after the signature (a uint16 length, 32 bytes of HMAC-SHA256)


def test_the_four_privileges_pack_as_in_the_reference_multi_service_vector() -> None:
    # No published vector has an RTC service alone with all four privileges; the multi-service
    # one holds exactly that service first (services go in type order), so the bytes of ours
    # must be in it as they are, followed by the other services.
    ours = _signing_info(_vector_build(UID, tuple(Privilege)))
    reference = _signing_info(MULTI_SERVICE)
    head = len(APP_ID) + 2 + 12  # app id string, issue ts, expire, salt
    rtc_service = ours[head + 2 :]  # after the service count
    assert reference[:head] == ours[:head]
    assert reference[head + 2 :].startswith(rtc_service)
    parsed = parse_token(MULTI_SERVICE)
    assert parsed.signed_by(APP_CERT)
    assert parsed.privileges == {1: EXPIRE, 2: EXPIRE, 3: EXPIRE, 4: EXPIRE}


@pytest.mark.parametrize("token", [RTC_UID, GO_RTC_UID], ids=["python", "go"])
def test_the_reader_reads_and_verifies_the_reference_tokens(token: str) -> None:
    parsed = parse_token(token)
    assert parsed.app_id == APP_ID
    assert (parsed.issue_ts, parsed.expire, parsed.salt) == (TS, EXPIRE, SALT)
    assert (parsed.channel, parsed.uid) == (CHANNEL, str(UID))
    assert parsed.privileges == {int(Privilege.JOIN_CHANNEL): EXPIRE}
    assert parsed.signed_by(APP_CERT)
    assert not parsed.signed_by("a" * 32)
    assert parsed.valid_until == TS + EXPIRE


def test_the_builder_refuses_what_the_reference_refuses() -> None:
    with pytest.raises(TokenError, match="app id"):
        build_rtc_token("demo-app", APP_CERT, CHANNEL, UID, lifetime=60)
    with pytest.raises(TokenError, match="app certificate"):
        build_rtc_token(APP_ID, "z" * 32, CHANNEL, UID, lifetime=60)
    with pytest.raises(TokenError, match="lifetime"):
        build_rtc_token(APP_ID, APP_CERT, CHANNEL, UID, lifetime=0)


def test_each_token_has_its_own_salt() -> None:
    tokens = {build_rtc_token(APP_ID, APP_CERT, CHANNEL, UID, lifetime=60) for _ in range(5)}
    assert len(tokens) == 5
    assert len({parse_token(t).salt for t in tokens}) == 5


# -- the checker ------------------------------------------------------------------------------
NOW = 1_800_000_000


def _token(**overrides: object) -> str:
    values: dict[str, object] = dict(
        app_id=APP_ID, app_certificate=APP_CERT, channel="class42", uid="527841", lifetime=3600
    )
    values |= overrides
    lifetime = values.pop("lifetime")
    return build_rtc_token(
        values.pop("app_id"),  # type: ignore[arg-type]
        values.pop("app_certificate"),  # type: ignore[arg-type]
        values.pop("channel"),  # type: ignore[arg-type]
        values.pop("uid"),  # type: ignore[arg-type]
        lifetime=lifetime,  # type: ignore[arg-type]
        issue_ts=NOW - 10,
        **values,  # type: ignore[arg-type]
    )


def _check(token: str | None, **overrides: object) -> tuple[TokenProblem | None, str]:
    where: dict[str, object] = dict(
        app_id=APP_ID, app_certificate=APP_CERT, channel="class42", uid="527841", now=NOW
    )
    result = check_rtc_token(token, **(where | overrides))  # type: ignore[arg-type]
    return result.problem, result.reason


def test_a_good_token_lets_its_uid_join_until_it_expires() -> None:
    result = check_rtc_token(
        _token(), app_id=APP_ID, app_certificate=APP_CERT, channel="class42", uid="527841", now=NOW
    )
    assert result.problem is None
    assert result.valid_until == NOW - 10 + 3600


def test_a_uid_0_token_lets_any_uid_join() -> None:
    assert _check(_token(uid=0), uid="4242")[0] is None
    assert _check(_token(uid=""), uid="99")[0] is None


@pytest.mark.parametrize(
    ("token_overrides", "where", "problem", "reason"),
    [
        ({}, {"app_id": "0" * 32}, TokenProblem.INVALID, "another App ID"),
        ({}, {"channel": "class43"}, TokenProblem.INVALID, "another channel"),
        ({}, {"uid": "527842"}, TokenProblem.INVALID, "another uid"),
        ({}, {"app_certificate": "f" * 32}, TokenProblem.INVALID, "signature"),
        ({"lifetime": 5}, {}, TokenProblem.EXPIRED, "expired"),
        ({"privileges": (Privilege.PUBLISH_AUDIO,)}, {}, TokenProblem.INVALID, "join-channel"),
    ],
    ids=["wrong-app", "wrong-channel", "wrong-uid", "wrong-certificate", "expired", "no-join"],
)
def test_the_checker_refuses(
    token_overrides: dict[str, object],
    where: dict[str, object],
    problem: TokenProblem,
    reason: str,
) -> None:
    got, why = _check(_token(**token_overrides), **where)
    assert got is problem
    assert reason in why


def test_a_token_for_another_app_signed_with_its_certificate_is_refused() -> None:
    other = "1" * 32
    assert _check(_token(app_id=other))[0] is TokenProblem.INVALID


def test_a_join_privilege_shorter_than_the_token_ends_the_stay() -> None:
    token = build_rtc_token(
        APP_ID, APP_CERT, "class42", "527841", lifetime=3600, issue_ts=NOW - 100, salt=7
    )
    parsed = parse_token(token)
    assert parsed.valid_until == NOW - 100 + 3600
    # The same token with its join privilege at 50 s, signed properly (what a builder given
    # a separate join expiry makes): the token is still valid, the stay is over.
    marker = (1).to_bytes(2, "little") + _u32(3600)
    info = parsed.signing_info.replace(marker, (1).to_bytes(2, "little") + _u32(50), 1)
    assert info != parsed.signing_info
    short = _signed(info, issue_ts=NOW - 100, salt=7)
    assert parse_token(short).valid_until == NOW - 50
    problem, why = _check(short)
    assert problem is TokenProblem.EXPIRED, why


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def _signed(signing_info: bytes, *, issue_ts: int, salt: int) -> str:
    """A token of ``signing_info`` signed with APP_CERT, as the format says (module docstring
    of contract.tokens)."""
    key = hmac.new(_u32(issue_ts), APP_CERT.encode(), hashlib.sha256).digest()
    key = hmac.new(_u32(salt), key, hashlib.sha256).digest()
    signature = hmac.new(key, signing_info, hashlib.sha256).digest()
    content = len(signature).to_bytes(2, "little") + signature + signing_info
    return "007" + base64.b64encode(zlib.compress(content)).decode()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-6] + ("AAAAAA" if not t.endswith("AAAAAA") else "BBBBBB"),
        lambda t: "006" + t[3:],
        lambda t: "007not-base64!",
        lambda t: "007" + base64.b64encode(b"not zlib").decode(),
        lambda t: "007" + base64.b64encode(zlib.compress(b"\x05\x00ab")).decode(),
    ],
    ids=["tampered-tail", "old-version", "not-base64", "not-zlib", "truncated"],
)
def test_a_damaged_token_is_invalid(mutate: object) -> None:
    token = mutate(_token())  # type: ignore[operator]
    assert _check(token)[0] is TokenProblem.INVALID


def test_a_tampered_field_breaks_the_signature() -> None:
    parsed = parse_token(_token())
    content = zlib.decompress(base64.b64decode(_token()[3:]))
    # the expiry pushed a day further, without the certificate to sign it again
    forged_info = parsed.signing_info.replace(_u32(3600), _u32(3600 + 86400))
    forged = content[: len(content) - len(parsed.signing_info)] + forged_info
    problem, why = _check("007" + base64.b64encode(zlib.compress(forged)).decode())
    assert problem is TokenProblem.INVALID and "signature" in why


def test_no_token_is_invalid() -> None:
    assert _check(None)[0] is TokenProblem.INVALID
    assert _check("")[0] is TokenProblem.INVALID


def test_a_token_that_inflates_without_bound_is_refused_early() -> None:
    bomb = "007" + base64.b64encode(zlib.compress(b"\0" * (50 * 1024 * 1024), 9)).decode()
    assert len(bomb) < 100_000
    with pytest.raises(TokenError, match="inflated"):
        parse_token(bomb)
    assert _check(bomb)[0] is TokenProblem.INVALID

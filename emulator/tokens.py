"""The recorder's RTC token, checked as the service checks it when the project has an App
Certificate (``EmulatorConfig.certificate_for``: ``cloudrec emulator --app-certificate CERT`` for
every App ID, ``--app-certificate APPID=CERT`` for one; each App ID's tokens are checked with its
own project's certificate).

What the real service does with a bad token (docs/service/api-contract.md#start,
docs/service/errors.md#not-found): start still answers 200 with a sid (it only means "accepted"),
then the recorder fails to join the channel. So here: the start is accepted, and the recorder
fails at once, as :meth:`emulator.lifecycle.Lifecycle.fail` makes any recorder failure show:
event 1 (module 0 recorder, fatal, ``errorCode`` 110 "token invalid" or 109 "token expired",
the RTC codes of docs/service/errors.md#codes), event 41 (leaveCode 0: init failure), event 11
(exitStatus 1); query answers status 20 for the exit linger, then 404 "failed to find worker".

Invalid (110): no token, a token not signed with the certificate, or for another App ID, channel
or uid (a token for uid 0 fits any uid), or without the join privilege. Expired (109): the token
or its join privilege has ended. A recorder that joined is dropped when its token ends its stay
(the token cannot be renewed: docs/service/behaviour.md#lifetime), the same way, with code 109.

Acquire carries no token, so nothing is checked there (a ``startParameter`` hint holding one
does not fail acquire either, docs/service/api-contract.md#acquire).
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from contract.tokens import TokenCheck, check_rtc_token
from emulator.channels import iso_utc
from emulator.config import EmulatorConfig


def join_check(
    config: EmulatorConfig, appid: str, cname: str, uid: str, token: SecretStr | None
) -> TokenCheck | None:
    """The verdict on the token a start gives its recorder; None without an App Certificate
    (then any token, or none, joins)."""
    certificate = config.certificate_for(appid)
    if certificate is None:
        return None
    return check_rtc_token(
        token.get_secret_value() if token is not None else None,
        app_id=appid,
        app_certificate=certificate,
        channel=cname,
        uid=uid,
    )


def token_view(check: TokenCheck) -> dict[str, Any]:
    """What ``/dev/recordings`` shows of a checked token: the verdict and its times, its uid and
    salt (public parts that tell two tokens apart), never the token."""
    parsed = check.token
    return {
        "accepted": check.problem is None,
        "errorCode": int(check.problem) if check.problem is not None else None,
        "reason": check.reason,
        "uid": parsed.uid if parsed else None,
        "salt": parsed.salt if parsed else None,
        "issuedAt": iso_utc(parsed.issue_ts) if parsed else None,
        "validUntil": iso_utc(parsed.valid_until) if parsed and parsed.valid_until else None,
    }

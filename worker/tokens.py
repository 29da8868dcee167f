"""The recorder's RTC token for each start (and each restart) of a job.

The token the recorder joins with cannot be renewed (docs/service/api-contract.md#start): it must
outlive the recording, or the service drops the recorder when it expires. A caller cannot know
when a queued job will start, nor that a restart (a new acquire + start after 433/502/53) will
come, so with the project's App Certificate in the settings the worker mints the token itself,
at every start, valid from then to the job's deadline plus ``Settings.token_margin``.

Which token a start carries:

- the job's own token, when the caller gave one (it is the caller's explicit choice, e.g. a
  token with other privileges); if it is an AccessToken2 that ends before the job's deadline, a
  warning says so (without the token) once per start;
- else, with the job's app's App Certificate set (``CLOUDREC_APP_CERTIFICATE`` for the app
  "default", ``CLOUDREC_APPS__<NAME>__APP_CERTIFICATE`` for the others), a token minted with
  that app's App ID and certificate for the job's channel and its current recorder uid (a
  restart with another uid gets a token for that uid);
- else none: a project without an App Certificate needs none.

A minted token lives only in the start request: never stored, queued or logged.
"""

from __future__ import annotations

import logging
import math
import time

from pydantic import SecretStr

from config import DEFAULT_APP, Settings
from contract.tokens import (
    MAX_LIFETIME_SECONDS,
    TokenError,
    build_rtc_token,
    parse_token,
)

log = logging.getLogger("cloudrec.tokens")


def mint_recorder_token(
    app_id: str,
    app_certificate: str,
    cname: str,
    uid: str,
    *,
    valid_until: float,
    now: float | None = None,
) -> SecretStr:
    """An AccessToken2 letting ``uid`` join ``cname`` and publish (join and publish privileges)
    from now until ``valid_until`` (Unix time), at most 24 h (the service honours no more).

    The App ID and certificate are explicit arguments so that one worker can mint for several
    projects. Raises :class:`contract.tokens.TokenError` for an App ID or certificate that is
    not 32 hexadecimal characters.
    """
    now = time.time() if now is None else now
    issue_ts = int(now)
    wanted = max(1, math.ceil(valid_until - issue_ts))
    lifetime = min(wanted, MAX_LIFETIME_SECONDS)
    if lifetime < wanted:
        log.warning(
            "an RTC token is valid for at most %d s: the recorder of channel %r will be dropped "
            "%d s before it should stop",
            MAX_LIFETIME_SECONDS,
            cname,
            wanted - lifetime,
            extra={"cname": cname},
        )
    token = build_rtc_token(
        app_id, app_certificate, cname, uid, lifetime=lifetime, issue_ts=issue_ts
    )
    return SecretStr(token)


def recorder_token(
    settings: Settings,
    *,
    job_id: str,
    cname: str,
    uid: str,
    stop_at: float,
    given: SecretStr | None,
    app: str = DEFAULT_APP,
    now: float | None = None,
) -> SecretStr | None:
    """The token a start of this job carries (module docstring): the caller's, a minted one
    (with the job's ``app``'s App ID and certificate), or none. KeyError naming the app if it
    is not configured."""
    now = time.time() if now is None else now
    if given is not None:
        _warn_if_short(given, job_id=job_id, stop_at=stop_at)
        return given
    profile = settings.app_profile(app)
    if profile.app_certificate is None:
        return None
    return mint_recorder_token(
        profile.app_id,
        profile.app_certificate.get_secret_value(),
        cname,
        uid,
        valid_until=stop_at + settings.token_margin,
        now=now,
    )


def _warn_if_short(token: SecretStr, *, job_id: str, stop_at: float) -> None:
    """A caller's AccessToken2 that ends before the deadline drops the recorder early."""
    try:
        valid_until = parse_token(token.get_secret_value()).valid_until
    except TokenError:
        return  # another format (or not a token): nothing to tell from it
    if valid_until < stop_at:
        log.warning(
            "job %s: its RTC token lets the recorder stay until %s, %.0f s before the job's "
            "deadline: the service will drop the recorder then (leave the token out and set "
            "the app's App Certificate, CLOUDREC_APP_CERTIFICATE or "
            "CLOUDREC_APPS__<NAME>__APP_CERTIFICATE, to have the worker mint one that lasts)",
            job_id,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(valid_until)),
            stop_at - valid_until,
            extra={"job_id": job_id},
        )

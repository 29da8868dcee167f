"""RTC tokens at rest.

A job's RTC token is a secret (docs/design.md#results-and-callbacks, "secrets never appear in task
arguments, logs, Flower, status output"), yet the start step needs it later, in another process. The
token is kept encrypted (Fernet: AES-128-CBC + HMAC-SHA256) under its own key, apart from the job
record, and expires with the job. The key is ``CLOUDREC_VAULT_KEY`` or, when unset, derived from the
customer secret, which every worker already holds.

A token must never travel in a task message either (the broker stores messages, Flower shows
their arguments). A caller that submits over the broker seals the token first with
:func:`seal_token` (same key) and sends the sealed string as the spec's ``token``; the worker
unseals it straight into the vault. Submitting through the Python API
(``tasks.recording.submit_and_start``) needs no sealing: nothing is queued before the token is
in the vault.
"""

from __future__ import annotations

import base64
import hashlib

import redis
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from config import Settings
from worker.errors import JobSpecError
from worker.keys import vault_key

SEALED_PREFIX = "cloudrec-sealed:"


def seal_token(settings: Settings, token: str) -> str:
    """Encrypt an RTC token for a task message: the result can sit in a broker safely."""
    return SEALED_PREFIX + _fernet(settings).encrypt(token.encode()).decode()


def is_sealed(token: str) -> bool:
    return token.startswith(SEALED_PREFIX)


def _fernet(settings: Settings) -> Fernet:
    if settings.vault_key is not None:
        return Fernet(settings.vault_key.get_secret_value().encode())
    digest = hashlib.sha256(
        b"cloudrec-vault:" + settings.customer_secret.get_secret_value().encode()
    ).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class TokenVault:
    """Encrypted per-job storage of RTC tokens."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self._fernet = _fernet(settings)

    def put(self, job_id: str, token: SecretStr, ttl_seconds: int) -> None:
        """Keep a job's token (plain, or sealed by :func:`seal_token`) until ``ttl_seconds``."""
        sealed = self._fernet.encrypt(self.unseal(token).get_secret_value().encode())
        self._redis.set(vault_key(job_id), sealed, ex=max(ttl_seconds, 60))

    def unseal(self, token: SecretStr) -> SecretStr:
        """The plain token of a sealed one (a plain one is returned as it is).

        Raises :class:`JobSpecError` (naming ``token``) when it does not open with this key.
        """
        value = token.get_secret_value()
        if not is_sealed(value):
            return token
        try:
            return SecretStr(self._fernet.decrypt(value[len(SEALED_PREFIX) :].encode()).decode())
        except InvalidToken:
            raise JobSpecError(
                "token: the sealed token does not open with this worker's vault key "
                "(seal it with the same CLOUDREC_VAULT_KEY or customer secret)"
            ) from None

    def get(self, job_id: str) -> SecretStr | None:
        sealed = self._redis.get(vault_key(job_id))
        if sealed is None:
            return None
        try:
            return SecretStr(self._fernet.decrypt(sealed).decode())
        except InvalidToken:
            return None  # the key changed: the job fails to start with "token unavailable"

    def delete(self, job_id: str) -> None:
        self._redis.delete(vault_key(job_id))

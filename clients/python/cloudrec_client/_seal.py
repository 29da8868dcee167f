"""Sealing an RTC token for a task message, in the worker's format (its ``worker/vault.py``):
``cloudrec-sealed:`` followed by a Fernet token (AES-128-CBC + HMAC-SHA256) of the RTC token under
the vault key (the workers' ``CLOUDREC_VAULT_KEY``). Only a holder of that key opens it."""

from __future__ import annotations

from typing import Any

SEALED_PREFIX = "cloudrec-sealed:"


def is_sealed(token: str) -> bool:
    return token.startswith(SEALED_PREFIX)


def seal_token(token: str, vault_key: str | bytes) -> str:
    """The sealed form of ``token``, safe to send through a broker."""
    sealed: bytes = _fernet(vault_key).encrypt(token.encode())
    return SEALED_PREFIX + sealed.decode()


def generate_vault_key() -> str:
    """A new vault key (a Fernet key): set it as CLOUDREC_VAULT_KEY on the workers too."""
    fernet_class = _fernet_class()
    key: bytes = fernet_class.generate_key()
    return key.decode()


def _fernet(vault_key: str | bytes) -> Any:
    key = vault_key.encode() if isinstance(vault_key, str) else vault_key
    return _fernet_class()(key)


def _fernet_class() -> Any:
    try:
        from cryptography.fernet import Fernet
    except ImportError:  # the optional extra
        raise ImportError(
            "sealing RTC tokens needs the 'cryptography' package: "
            "pip install 'cloudrec-client[seal]'"
        ) from None
    return Fernet

"""Secrets at rest: values the app must read back (webhook signing secrets) are stored
encrypted with `ENCRYPTION_KEYS` (Fernet from the `cryptography` package: AES-128-CBC
with an HMAC-SHA256, a fresh IV each time). The first key encrypts; every key decrypts,
so a new key is put first, `flask secrets rotate` re-encrypts every stored secret with
it, and then the old one can go.

A stored value reads `fernet:<token>`; a value without the prefix is a plaintext one from
before encryption (the migration encrypts those; they are still read).
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

PREFIX = "fernet:"


class SecretUnreadable(RuntimeError):
    """A stored secret none of ENCRYPTION_KEYS decrypts (a key was removed too soon)."""


@cache
def _keyring(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def keyring() -> MultiFernet:
    return _keyring(tuple(current_app.config["ENCRYPTION_KEYS"]))


def encrypt(value: str) -> str:
    return PREFIX + keyring().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        return stored  # written before secrets were encrypted
    try:
        return keyring().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with ENCRYPTION_KEYS: put back the key it "
            "was encrypted with (after the new one), then run flask secrets rotate."
        ) from None


def rotated(stored: str) -> str:
    """The stored value encrypted with the first key (a plaintext one, encrypted)."""
    if not stored.startswith(PREFIX):
        return encrypt(stored)
    return PREFIX + keyring().rotate(stored[len(PREFIX) :].encode()).decode()


class Encrypted(TypeDecorator):
    """A text column stored encrypted (the model reads and writes plain text)."""

    impl = String(512)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else encrypt(value)

    def process_result_value(self, value, dialect):
        return None if value is None else decrypt(value)

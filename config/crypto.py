"""Provider credentials are encrypted at rest with TOLLHOUSE_ENCRYPTION_KEY (Fernet).

Several comma-separated keys may be configured: the first encrypts, all decrypt, so a key is
rotated by prepending a new one and re-saving credentials (`manage.py rotate_credentials` later).
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialError(Exception):
    """A stored credential cannot be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def encrypt(plaintext: str) -> str:
    return _fernet(tuple(settings.ENCRYPTION_KEYS)).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(tuple(settings.ENCRYPTION_KEYS)).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialError("credential cannot be decrypted with the configured encryption keys") from exc

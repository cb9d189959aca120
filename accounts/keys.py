"""API key format and digests.

A key reads `th-` + 12-character public prefix + 40-character secret. The prefix finds the row;
the secret is checked against HMAC-SHA256(pepper, secret) in constant time. The raw key exists
only in the response that issued it.
"""

from __future__ import annotations

import hmac
import secrets
import string
from dataclasses import dataclass
from functools import lru_cache

from config.hot import hot

KEY_TAG = "th-"
PREFIX_LENGTH = 12
SECRET_LENGTH = 40
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class ParsedKey:
    prefix: str
    secret: str


def generate() -> tuple[str, str, str]:
    """A new key: (raw key, prefix, secret)."""
    prefix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{KEY_TAG}{prefix}{secret}", prefix, secret


def parse(raw: str) -> ParsedKey | None:
    if not raw.startswith(KEY_TAG) or len(raw) != len(KEY_TAG) + PREFIX_LENGTH + SECRET_LENGTH:
        return None
    body = raw[len(KEY_TAG) :]
    prefix, secret = body[:PREFIX_LENGTH], body[PREFIX_LENGTH:]
    if not prefix.isalnum() or not secret.isalnum() or not prefix.isascii() or not secret.isascii():
        return None
    return ParsedKey(prefix=prefix, secret=secret)


def digest(secret: str) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, without an HMAC object per call (every /v1 call checks one).
    return hmac.digest(_pepper(hot.API_KEY_PEPPER), secret.encode(), "sha256").hex()


@lru_cache(maxsize=4)
def _pepper(value: str) -> bytes:
    return value.encode()


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)

"""Personal access tokens of the management API: format and digests.

A token reads `thp_` + 12-character public prefix + 40-character secret. As with API keys
(accounts/keys.py, whose pepper and digest it shares), the prefix finds the row and the secret is
checked against its HMAC-SHA256 digest in constant time; the raw token exists only in the response
that created it.
"""

from __future__ import annotations

from accounts import keys
from accounts.keys import PREFIX_LENGTH, SECRET_LENGTH, ParsedKey

TOKEN_TAG = "thp_"


def generate() -> tuple[str, str, str]:
    """A new token: (raw token, prefix, secret)."""
    _, prefix, secret = keys.generate()
    return f"{TOKEN_TAG}{prefix}{secret}", prefix, secret


def parse(raw: str) -> ParsedKey | None:
    if not raw.startswith(TOKEN_TAG) or len(raw) != len(TOKEN_TAG) + PREFIX_LENGTH + SECRET_LENGTH:
        return None
    body = raw[len(TOKEN_TAG) :]
    prefix, secret = body[:PREFIX_LENGTH], body[PREFIX_LENGTH:]
    if not (prefix.isascii() and secret.isascii() and prefix.isalnum() and secret.isalnum()):
        return None
    return ParsedKey(prefix=prefix, secret=secret)


digest = keys.digest
matches = keys.matches

"""accounts/keys.py: a key's digest is HMAC-SHA256(pepper, secret) in hex, as stored digests were
made (a faster way to compute it must not change one), and follows the configured pepper."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from hypothesis import given
from hypothesis import strategies as st

from accounts import keys


@given(st.text(max_size=80))
def test_the_digest_is_hmac_sha256_of_the_secret_under_the_pepper(secret):
    expected = hmac.new(settings.API_KEY_PEPPER.encode(), secret.encode(), hashlib.sha256).hexdigest()
    assert keys.digest(secret) == expected
    assert keys.matches(secret, expected)


def test_a_new_pepper_gives_new_digests(settings):
    before = keys.digest("s" * 40)
    settings.API_KEY_PEPPER = "another-pepper-for-this-test"
    after = keys.digest("s" * 40)
    assert after != before
    assert after == hmac.new(b"another-pepper-for-this-test", b"s" * 40, hashlib.sha256).hexdigest()

"""gateway.providers.base.ProviderError: what an upstream's failure tells the client. Its
`Retry-After` is passed on in whole seconds, capped by TOLLHOUSE_UPSTREAM_RETRY_AFTER_MAX_SECONDS."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.providers.base import ProviderError, retry_after_capped


def error(retry_after: str | None) -> ProviderError:
    return ProviderError(
        "rate limited", status=429, retryable=True, kind="upstream_rate_limited", retry_after=retry_after
    )


@pytest.mark.parametrize(
    ("given_value", "passed_on"),
    [
        ("7", "7"),
        (" 12 ", "12"),
        ("0", "0"),
        ("60", "60"),
        ("61", "60"),
        ("999999999", "60"),
        ("9" * 400, "60"),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("\u0663", None),  # a digit to str.isdigit, not to HTTP
        ("Wed, 21 Oct 2015 07:28:00", None),  # a date without GMT is no HTTP-date
    ],
)
def test_it_passes_on_whole_seconds_up_to_the_cap(given_value, passed_on):
    assert error(given_value).retry_after == passed_on


def test_it_turns_an_http_date_into_the_seconds_until_it(settings):
    assert error(formatdate(time.time() + 3600, usegmt=True)).retry_after == "60"
    assert error(formatdate(time.time() - 3600, usegmt=True)).retry_after == "0"
    assert 18 <= int(error(formatdate(time.time() + 20, usegmt=True)).retry_after or -1) <= 21


def test_the_cap_is_a_setting(settings):
    settings.TOLLHOUSE_UPSTREAM_RETRY_AFTER_MAX_SECONDS = 5
    assert error("30").retry_after == "5"
    assert error("3").retry_after == "3"


@given(st.text())
def test_any_text_is_dropped_or_becomes_seconds_within_the_cap(value):
    from django.conf import settings

    result = retry_after_capped(value)
    assert result is None or 0 <= int(result) <= settings.TOLLHOUSE_UPSTREAM_RETRY_AFTER_MAX_SECONDS

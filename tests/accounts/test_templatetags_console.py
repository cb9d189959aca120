"""accounts/templatetags/console.py: money and period labels on console pages."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.templatetags.console import this_period, usd


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0"), "$0.00"),
        (Decimal("0.000000000"), "$0.00"),
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("0.0035"), "$0.0035"),
        (Decimal("0.25"), "$0.25"),
        (Decimal("0.00001"), "<$0.0001"),
        (Decimal("-2.5"), "-$2.50"),
        ("12.000000001", "$12.00"),
        ("NaN", ""),
        ("not money", ""),
        (None, ""),
    ],
)
def test_usd(value, text):
    assert usd(value) == text


def test_this_period():
    assert [this_period(p) for p in ("day", "week", "month")] == ["today", "this week", "this month"]

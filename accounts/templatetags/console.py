"""Formatting filters shared by console templates: `{% load console %}`."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()

_THIS = {"day": "today", "week": "this week", "month": "this month"}


@register.filter
def usd(value: object) -> str:
    """$1,234.50 for a dollar or more (and for 0), $0.0035 below: small spends stay visible."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return ""
    if not amount.is_finite():
        return ""
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount == 0 or amount >= 1:
        return f"{sign}${amount.quantize(Decimal('0.01')):,}"
    return (
        f"{sign}${amount.quantize(Decimal('0.0001')).normalize():f}"
        if amount >= Decimal("0.0001")
        else f"{sign}<$0.0001"
    )


@register.filter
def this_period(period: object) -> str:
    """'today', 'this week', 'this month'."""
    return _THIS.get(str(period), f"this {period}")

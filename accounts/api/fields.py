"""Serializer fields shared by the API's endpoints: limits, money, names."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

MAX_INT = 2_147_483_647  # the limit columns are PostgreSQL integers


def limit_field(help_text: str) -> serializers.IntegerField:
    """A rate or concurrency limit: null for none (or the parent's), else 1 or more."""
    return serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_INT, default=None, help_text=help_text
    )


def usd_field(help_text: str, **kwargs: Any) -> serializers.DecimalField:
    """USD as an exact decimal string in and out (never a float)."""
    return serializers.DecimalField(
        max_digits=20, decimal_places=9, coerce_to_string=True, help_text=help_text, **kwargs
    )


def text_field(max_length: int, **kwargs: Any) -> serializers.CharField:
    """Text without NUL characters (PostgreSQL cannot store them)."""
    return serializers.CharField(max_length=max_length, validators=[_no_nul], **kwargs)


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise serializers.ValidationError("Remove the NUL character.")


def name_list(help_text: str, *, item_length: int = 200, max_items: int = 200) -> serializers.ListField:
    return serializers.ListField(
        child=text_field(item_length),
        required=False,
        default=list,
        max_length=max_items,
        help_text=help_text,
    )

"""Argument helpers shared by the operator commands (tenant_create, key_issue, provider_add).

An operator's mistake must end in one sentence on stderr and a non-zero exit, never a traceback, and
must change nothing. So the commands take their values as strings, check them here before any write,
and turn the services' ValidationError into a CommandError the same way. (This module's name starts
with an underscore, so Django does not offer it as a command.)
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError


def validation_sentence(exc: ValidationError) -> str:
    """One line out of a ValidationError, whether it holds a message, a list or a field dict."""
    if hasattr(exc, "error_dict"):
        parts = [
            message if field == "__all__" else f"{field}: {message}"
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
    else:
        parts = list(exc.messages)
    return " ".join(part if part.endswith(".") else part + "." for part in parts)


def command_error(exc: ValidationError) -> CommandError:
    return CommandError(validation_sentence(exc))


def csv_list(option: str, value: str | None) -> list[str] | None:
    """`a,b,c` -> ["a", "b", "c"]; None when the option was not given. Empty items are refused."""
    if value is None:
        return None
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise CommandError(f"{option} must be a comma-separated list without empty items, not {value!r}.")
    return items


def positive_int(option: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        parsed = int(value)
    except ValueError:
        raise CommandError(f"{option} must be a whole number greater than 0, not {value!r}.") from None
    if parsed < 1:
        raise CommandError(f"{option} must be a whole number greater than 0, not {value!r}.")
    return parsed


def positive_decimal(option: str, value: str | None, *, places: int, maximum: Decimal) -> Decimal | None:
    if value is None:
        return None
    try:
        parsed = Decimal(value.strip())
    except InvalidOperation:
        parsed = Decimal("NaN")
    if not parsed.is_finite() or parsed <= 0 or parsed > maximum:
        raise CommandError(f"{option} must be a number greater than 0 and at most {maximum}, not {value!r}.")
    exponent = parsed.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise CommandError(f"{option} takes at most {places} decimal places, not {value!r}.")
    return parsed

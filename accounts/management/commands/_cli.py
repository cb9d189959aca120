"""Argument helpers shared by the operator commands (tenant_create, key_issue, provider_add).

An operator's mistake must end in one sentence on stderr and a non-zero exit, never a traceback, and
must change nothing. So the commands take their values as strings, check them here before any write,
and turn the services' ValidationError into a CommandError the same way. (This module's name starts
with an underscore, so Django does not offer it as a command.)
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from accounts import keys
from accounts.models import ApiKey, Tenant


def validation_sentence(exc: ValidationError, options: Mapping[str, str] | None = None) -> str:
    """One line out of a ValidationError, whether it holds a message, a list or a field dict.
    `options` names a field by the command's option that set it (`{"rpm_limit": "--rpm"}`)."""
    if hasattr(exc, "error_dict"):
        names = options or {}
        parts = [
            message if field == "__all__" else f"{names.get(field, field)}: {message}"
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
    else:
        parts = list(exc.messages)
    return " ".join(part if part.endswith(".") else part + "." for part in parts)


def command_error(exc: ValidationError, options: Mapping[str, str] | None = None) -> CommandError:
    return CommandError(validation_sentence(exc, options))


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


# The most any one amount may be (a budget, a top-up): far above any real one, far below what
# NUMERIC(20, 9) holds, so a typo of a few extra digits is caught rather than stored.
MAX_USD = Decimal(1_000_000_000)


def usd(option: str, value: str | None) -> Decimal | None:
    """A positive amount of USD with at most 9 decimal places (the ledger's nano-dollars)."""
    return positive_decimal(option, value, places=9, maximum=MAX_USD)


def choice(option: str, value: str | None, choices: tuple[str, ...] | list[str]) -> str | None:
    if value is None:
        return None
    if value not in choices:
        raise CommandError(f"{option} must be one of {', '.join(choices)}, not {value[:60]!r}.")
    return value


def whole_numbers(option: str, value: str | None) -> list[int] | None:
    """`50,80,100` -> [50, 80, 100]; None when the option was not given."""
    items = csv_list(option, value)
    if items is None or value is None:
        return None
    numbers = []
    for item in items:
        # isdecimal() rather than int() alone: int() also takes "1_0" and "+5".
        if not (item.isascii() and item.isdecimal()) or len(item) > 9:
            raise CommandError(f"{option} takes whole numbers separated by commas, not {value[:60]!r}.")
        numbers.append(int(item))
    return numbers


def refuse_nul(options: Mapping[str, object]) -> None:
    """PostgreSQL text cannot hold NUL: refuse it up front rather than fail in the middle of a query."""
    for name, value in options.items():
        if isinstance(value, str) and "\x00" in value:
            raise CommandError(f"--{name.replace('_', '-')} cannot contain a NUL character.")


def tenant_named(slug: str) -> Any:
    """The tenant with this slug, or one sentence saying there is none."""
    from accounts.models import Tenant

    refuse_nul({"tenant": slug})
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"There is no tenant with the slug {slug!r}.")
    return tenant


def find_key(tenant: Tenant, value: str) -> ApiKey:
    """The tenant's key named by its prefix (`th-abc…`, `abc…` or, pasted whole, the key itself)."""
    parsed = keys.parse(value.strip())
    prefix = parsed.prefix if parsed else value.strip().removeprefix(keys.KEY_TAG).removesuffix("…")
    if not (len(prefix) == keys.PREFIX_LENGTH and prefix.isascii() and prefix.isalnum()):
        # Never echo a long value: it may be a whole key, secret included.
        shown = f" not {value!r}" if len(value) <= keys.PREFIX_LENGTH + 4 else " not that"
        raise CommandError(
            f"--key takes a key's prefix, {keys.PREFIX_LENGTH} letters and digits after th- "
            f"(as key_issue prints it),{shown}."
        )
    api_key: ApiKey | None = ApiKey.objects.filter(prefix=prefix.lower()).select_related("tenant").first()
    if api_key is None:
        raise CommandError(f"There is no key with the prefix th-{prefix}.")
    if api_key.tenant_id != tenant.pk:
        raise CommandError(
            f"The key with the prefix th-{prefix} belongs to another tenant, not {tenant.slug}."
        )
    return api_key

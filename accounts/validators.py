"""Model-field validators: what the hot path reads must be readable, whoever wrote it.

They run in `full_clean()`, which every service calls and every admin form runs, so a bad value
is refused with a clear sentence instead of being stored and failing a call later. Apps that
depend on accounts (billing, gateway) use them too.
"""

from __future__ import annotations

import zoneinfo
from decimal import Decimal
from functools import lru_cache
from ipaddress import ip_network
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator

MAX_NAME_LENGTH = 200

# Money and limits: zero or more. (Nine decimal places at most is DecimalField's own check.)
non_negative = MinValueValidator(Decimal(0), message="Must be zero or more.")


def _list_of_strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError(f'Enter a list of {what}, as in ["a", "b"].', code="not_a_list")
    return value


def ip_networks(value: Any) -> list[str]:
    """The allow-list in normal form (`10.1.2.3/8` -> `10.0.0.0/8`, `::1` -> `::1/128`), or an error
    that names every entry the gateway could not read."""
    normalized: list[str] = []
    bad: list[str] = []
    for item in _list_of_strings(value, "IP addresses or CIDR ranges"):
        try:
            network = str(ip_network(item.strip(), strict=False))
        except ValueError:
            bad.append(repr(item[:60]))
            continue
        if network not in normalized:
            normalized.append(network)
    if bad:
        raise ValidationError(
            f"Not an IP address or CIDR range: {', '.join(bad)}.", code="invalid_ip_network"
        )
    return normalized


def validate_names(value: Any) -> None:
    """A list of model names (or aliases): non-empty, printable, at most 200 characters each."""
    for item in _list_of_strings(value, "model names"):
        if not item.strip():
            raise ValidationError("Model names cannot be empty.", code="empty_name")
        if len(item) > MAX_NAME_LENGTH:
            raise ValidationError(
                f"Model names are at most {MAX_NAME_LENGTH} characters long.", code="name_too_long"
            )
        if not item.isprintable():
            raise ValidationError(
                f"Model name {item[:60]!r} contains control characters.", code="name_not_printable"
            )


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: Any) -> None:
    if value not in _time_zones():
        raise ValidationError(
            f"{str(value)[:60]!r} is not an IANA time zone name (such as UTC or Europe/Paris).",
            code="invalid_time_zone",
        )

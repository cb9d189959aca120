"""Model-field validators: what the hot path reads must be readable, whoever wrote it.

They run in `full_clean()`, which every service calls and every admin form runs, so a bad value
is refused with a clear sentence instead of being stored and failing a call later. Apps that
depend on accounts (billing, gateway) use them too.
"""

from __future__ import annotations

import re
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
    """The allow-list in normal form (`10.0.0.0/8`, `::1` -> `::1/128`), or an error that names every
    entry the gateway could not read. A range with host bits set (`10.0.0.1/8`) is refused, naming
    the network it stands for: the operator may have meant the one host, or a narrower range."""
    normalized: list[str] = []
    bad: list[str] = []
    host_bits: list[str] = []
    for item in _list_of_strings(value, "IP addresses or CIDR ranges"):
        try:
            network = str(ip_network(item.strip()))
        except ValueError:
            try:
                meant = ip_network(item.strip(), strict=False)
            except ValueError:
                bad.append(repr(item[:60]))
            else:
                host_bits.append(f"{item.strip()} has host bits set (the range is {meant})")
            continue
        if network not in normalized:
            normalized.append(network)
    if bad or host_bits:
        sentences = [f"Not an IP address or CIDR range: {', '.join(bad)}."] if bad else []
        if host_bits:
            sentences.append(f"{'; '.join(host_bits)}: give the range as its network address.")
        raise ValidationError(" ".join(sentences), code="invalid_ip_network")
    return normalized


# What a model id may hold: the characters OpenAI, Anthropic, Gemini, Bedrock, Vertex and the
# open-weight hubs use (`gpt-4.1`, `models/gemini-2.5-flash`, `ft:gpt-4o-mini:org::id`,
# `claude-sonnet-4-5@20250929`, `meta-llama/Llama-3.1-8B`), starting with a letter or a digit. No
# space, control character or other punctuation, so a name prints, logs and compares as it was meant.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]*")
MODEL_NAME_RULE = "letters, digits and . - _ : / @ only, starting with a letter or digit"


def validate_model_name(value: Any) -> None:
    """The characters of one route name or alias (and of each name in an allow-list), for every path.
    The length is the field's (`max_length`) or, in a list, `validate_names`'s to check."""
    if not isinstance(value, str) or not value:
        raise ValidationError("Model names cannot be empty.", code="empty_name")
    if MODEL_NAME.fullmatch(value) is None:
        shown = value[:60] + ("…" if len(value) > 60 else "")
        raise ValidationError(
            f"{shown!r} is not a model name: use {MODEL_NAME_RULE}.", code="invalid_model_name"
        )


def validate_names(value: Any) -> None:
    """A list of model names (or aliases): each by `validate_model_name`, at most 200 characters."""
    for item in _list_of_strings(value, "model names"):
        validate_model_name(item)
        if len(item) > MAX_NAME_LENGTH:
            raise ValidationError(
                f"Model names are at most {MAX_NAME_LENGTH} characters long.", code="name_too_long"
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

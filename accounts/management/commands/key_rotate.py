"""`manage.py key_rotate --tenant SLUG --key PREFIX [--grace 24h]`: give a key a new secret.

The previous secret keeps working for the grace period (`0`, `90m`, `24h`, `7d`; default 24h, at
most 30 days), then stops; the key keeps its id, budgets, spend and rate windows. The new raw key
is printed once, alone on the last line of stdout (`| tail -n 1`), as key_issue does.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.audit import Actor
from accounts.management.commands._cli import command_error, find_key, refuse_nul, tenant_named
from accounts.services import api_key_rotate

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_grace(value: str) -> timedelta:
    match = re.fullmatch(r"(\d{1,7})([smhd]?)", value.strip())
    if match is None:
        raise CommandError(f"--grace takes a duration such as 0, 90m, 24h or 7d, not {value[:20]!r}.")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2) or "s"])


class Command(BaseCommand):
    help = "Rotate an API key: a new secret, the old one working for a grace period; prints the new key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="The tenant's slug.")
        parser.add_argument("--key", required=True, metavar="PREFIX", help="The key's prefix (th-abc…).")
        parser.add_argument(
            "--grace", default="24h", help="How long the old secret keeps working (default 24h)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        refuse_nul(options)
        grace = parse_grace(options["grace"])
        tenant = tenant_named(options["tenant"])
        api_key = find_key(tenant, options["key"])
        try:
            issued = api_key_rotate(api_key=api_key, grace=grace, actor=Actor.command("key_rotate"))
        except ValidationError as exc:
            raise command_error(exc, {"grace": "--grace"}) from None
        until = issued.api_key.previous_valid_until
        self.stdout.write(
            f"Rotated key {api_key.name!r} of {tenant.slug}: the old secret (th-{issued.api_key.previous_prefix}…) "
            f"works until {until:%Y-%m-%d %H:%M:%S} UTC. New key, shown once (prefix th-{issued.api_key.prefix}):"
        )
        self.stdout.write(issued.raw)

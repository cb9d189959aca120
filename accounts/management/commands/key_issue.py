"""`manage.py key_issue --tenant SLUG [--name] [--models a,b] [--rpm N] [--tpm N] [--concurrency N]
[--budget USD --period day|week|month [--soft]] [--expires ISO] [--ips cidr,...]`: issue an API key.

The raw key is printed once, alone on the last line of stdout, so a script can take it with
`| tail -n 1`; only its prefix and digest are stored. `--budget` gives the key a budget of its own
(hard unless `--soft`), in the same transaction as the key (billing.budgets.api_key_issue_with_budget,
which the console's keys page calls too). Bad input, or a key looser than its
tenant, exits 1 with one sentence and issues nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from accounts.audit import Actor
from accounts.management.commands._cli import (
    choice,
    command_error,
    csv_list,
    positive_int,
    tenant_named,
    usd,
)
from accounts.models import ApiKey
from accounts.services import validate_allowed_ips

# An operator's entry point may use every app (see tenant_create); billing still depends on accounts.
from billing.budgets import api_key_issue_with_budget
from billing.credits import usd_text
from billing.models import Budget
from config.command import OperatorCommand


def parse_expiry(value: str | None) -> datetime | None:
    """An ISO 8601 date or date-time in the future; without a UTC offset it is read as UTC."""
    if value is None:
        return None
    try:
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            moment = datetime.combine(day, time.min) if day is not None else None
    except ValueError:  # well-formed but impossible, e.g. 2030-02-30
        moment = None
    if moment is None:
        raise CommandError(
            f"--expires must be an ISO 8601 date or date-time, such as 2030-01-31, not {value!r}."
        )
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    if moment <= timezone.now():
        raise CommandError(f"--expires {value} is in the past.")
    return moment


# How a refusal names a field: by the option that set it.
OPTIONS = {
    "rpm_limit": "--rpm",
    "tpm_limit": "--tpm",
    "concurrency_limit": "--concurrency",
    "allowed_models": "--models",
    "amount": "--budget",
    "period": "--period",
    "expires_at": "--expires",
    "allowed_ips": "--ips",
    "cache_ttl": "--cache-ttl",
}


class Command(OperatorCommand):
    help = "Issue an API key for a tenant; prints the raw key (shown once) on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="The tenant's slug.")
        parser.add_argument("--name", default="default", help="A name to recognise the key by.")
        parser.add_argument("--models", metavar="A,B", help="Allowed models (default: every model).")
        parser.add_argument("--rpm", metavar="N", help="Requests per minute.")
        parser.add_argument("--tpm", metavar="N", help="Tokens per minute.")
        parser.add_argument("--concurrency", metavar="N", help="Calls in flight at once.")
        parser.add_argument("--budget", metavar="USD", help="A budget of the key's own, e.g. 20.00.")
        parser.add_argument(
            "--period", metavar="day|week|month", help="The budget's period (required with --budget)."
        )
        parser.add_argument(
            "--soft", action="store_true", help="The budget only alerts (default: it refuses calls)."
        )
        parser.add_argument(
            "--expires", metavar="ISO", help="Expiry, e.g. 2030-01-31 or 2030-01-31T12:00+02:00."
        )
        parser.add_argument(
            "--ips", metavar="CIDR,...", help="Client IPs or CIDR ranges allowed (default: any)."
        )
        parser.add_argument(
            "--cache",
            action="store_true",
            help="Answer repeated identical requests from the response cache (a hit costs nothing).",
        )
        parser.add_argument(
            "--cache-ttl", metavar="SECONDS", help="How long a cached answer is kept (with --cache)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"]
        if not name.strip():
            raise CommandError("--name must not be empty.")
        if len(name) > ApiKey._meta.get_field("name").max_length:  # type: ignore[operator]
            raise CommandError(
                f"--name is longer than {ApiKey._meta.get_field('name').max_length} characters."
            )
        models = csv_list("--models", options["models"])
        rpm = positive_int("--rpm", options["rpm"])
        tpm = positive_int("--tpm", options["tpm"])
        concurrency = positive_int("--concurrency", options["concurrency"])
        budget = usd("--budget", options["budget"])
        period = choice("--period", options["period"], Budget.Period.values)
        if budget is not None and period is None:
            raise CommandError("--budget needs --period day, week or month.")
        if budget is None and (period is not None or options["soft"]):
            raise CommandError("--period and --soft go with --budget USD.")
        expires_at = parse_expiry(options["expires"])
        ips = csv_list("--ips", options["ips"])
        try:
            allowed_ips = validate_allowed_ips(ips or [])
        except ValidationError as exc:
            raise CommandError(f"--ips: {' '.join(exc.messages)}") from None
        cache_ttl = positive_int("--cache-ttl", options["cache_ttl"])
        if cache_ttl is not None and not options["cache"]:
            raise CommandError("--cache-ttl goes with --cache.")
        tenant = tenant_named(options["tenant"])

        try:
            issued = api_key_issue_with_budget(
                tenant=tenant,
                name=name,
                actor=Actor.command("key_issue"),
                expires_at=expires_at,
                allowed_models=models,
                allowed_ips=allowed_ips,
                rpm_limit=rpm,
                tpm_limit=tpm,
                concurrency_limit=concurrency,
                cache=options["cache"],
                cache_ttl=cache_ttl,
                budget_usd=budget,
                budget_period=period,
                budget_hard=not options["soft"],
            )
        except ValidationError as exc:
            raise command_error(exc, OPTIONS) from None
        if budget is not None:
            kind = "soft" if options["soft"] else "hard"
            self.stdout.write(f"With a {kind} budget of {usd_text(budget)} USD a {period}.")
        self.stdout.write(
            f"Issued key {issued.api_key.name!r} for tenant {tenant.slug} (prefix th-{issued.api_key.prefix}). "
            "Shown once; only its digest is stored:"
        )
        self.stdout.write(issued.raw)

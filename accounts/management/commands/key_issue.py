"""`manage.py key_issue --tenant SLUG [--name] [--models a,b] [--rpm N] [--tpm N] [--concurrency N]
[--expires ISO] [--ips cidr,...]`: issue an API key.

The raw key is printed once, alone on the last line of stdout, so a script can take it with
`| tail -n 1`; only its prefix and digest are stored. Bad input exits 1 with one sentence and
issues nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from accounts.management.commands._cli import command_error, csv_list, positive_int
from accounts.models import ApiKey, Tenant
from accounts.services import api_key_issue, validate_allowed_ips


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


class Command(BaseCommand):
    help = "Issue an API key for a tenant; prints the raw key (shown once) on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="The tenant's slug.")
        parser.add_argument("--name", default="default", help="A name to recognise the key by.")
        parser.add_argument("--models", metavar="A,B", help="Allowed models (default: every model).")
        parser.add_argument("--rpm", metavar="N", help="Requests per minute.")
        parser.add_argument("--tpm", metavar="N", help="Tokens per minute.")
        parser.add_argument("--concurrency", metavar="N", help="Calls in flight at once.")
        # Issue 6 adds `--budget USD --period day|week|month [--soft]` here, passed to the
        # budget service in the same transaction as the key.
        parser.add_argument(
            "--expires", metavar="ISO", help="Expiry, e.g. 2030-01-31 or 2030-01-31T12:00+02:00."
        )
        parser.add_argument(
            "--ips", metavar="CIDR,...", help="Client IPs or CIDR ranges allowed (default: any)."
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
        expires_at = parse_expiry(options["expires"])
        ips = csv_list("--ips", options["ips"])
        try:
            allowed_ips = validate_allowed_ips(ips or [])
        except ValidationError as exc:
            raise CommandError(f"--ips: {' '.join(exc.messages)}") from None
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"There is no tenant with the slug {options['tenant']!r}.")

        try:
            with transaction.atomic():
                issued = api_key_issue(
                    tenant=tenant,
                    name=name,
                    expires_at=expires_at,
                    allowed_models=models,
                    allowed_ips=allowed_ips,
                    rpm_limit=rpm,
                    tpm_limit=tpm,
                    concurrency_limit=concurrency,
                )
        except ValidationError as exc:
            raise command_error(exc) from None
        self.stdout.write(
            f"Issued key {issued.api_key.name!r} for tenant {tenant.slug} (prefix th-{issued.api_key.prefix}). "
            "Shown once; only its digest is stored:"
        )
        self.stdout.write(issued.raw)

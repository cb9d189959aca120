"""`manage.py tenant_create SLUG [--name NAME] [--plan PLAN] [--timezone TZ] [--credits USD]`:
create a tenant.

Prints the new tenant's slug and id. `--credits` puts the tenant on prepaid credits with an opening
top-up, in the same transaction as the tenant. A bad slug, a slug already taken, an unknown plan or
time zone, or a bad amount exit 1 with one sentence and create nothing.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction

from accounts.audit import Actor
from accounts.management.commands._cli import command_error, refuse_nul, usd
from accounts.models import Plan, Tenant
from accounts.services import tenant_create

# The one place accounts calls into billing: an operator's entry point, like a console page, may
# use every app; the services below it still depend one way (billing -> accounts).
from billing.credits import credit_add, usd_text


class Command(BaseCommand):
    help = "Create a tenant (organization); prints its slug and id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Short unique name: letters, digits, '-' and '_'.")
        parser.add_argument("--name", help="Display name (default: the slug).")
        parser.add_argument("--plan", help="Name of an existing plan (see the admin: Accounts > Plans).")
        parser.add_argument(
            "--timezone", default="UTC", help="IANA time zone, e.g. Europe/Paris (default UTC)."
        )
        parser.add_argument(
            "--credits",
            metavar="USD",
            help="Run the tenant on prepaid credits, starting with this top-up (e.g. 25.00).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        refuse_nul(options)
        slug: str = options["slug"]
        name: str = options["name"] if options["name"] is not None else slug
        timezone_name: str = options["timezone"]
        credits = usd("--credits", options["credits"])

        try:
            validate_slug(slug)
        except ValidationError:
            raise CommandError(
                f"{slug!r} is not a valid slug: use letters, digits, '-' and '_' only."
            ) from None
        if len(slug) > Tenant._meta.get_field("slug").max_length:  # type: ignore[operator]
            raise CommandError(
                f"The slug is longer than {Tenant._meta.get_field('slug').max_length} characters."
            )
        if not name.strip():
            raise CommandError("--name must not be empty.")
        if timezone_name not in zoneinfo.available_timezones():
            raise CommandError(
                f"{timezone_name!r} is not a known time zone; use an IANA name such as Europe/Paris."
            )
        plan = None
        if options["plan"] is not None:
            plan = Plan.objects.filter(name=options["plan"]).first()
            if plan is None:
                known = ", ".join(Plan.objects.order_by("name").values_list("name", flat=True)) or "none yet"
                raise CommandError(f"There is no plan named {options['plan']!r} (plans: {known}).")
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"A tenant with the slug {slug!r} already exists.")

        try:
            with transaction.atomic():
                tenant = tenant_create(
                    name=name,
                    slug=slug,
                    plan=plan,
                    timezone_name=timezone_name,
                    prepaid=credits is not None,
                    actor=Actor.command("tenant_create"),
                )
                if credits is not None:
                    credit_add(
                        tenant=tenant,
                        kind="topup",
                        usd=credits,
                        note="initial credits",
                        actor=Actor.command("tenant_create"),
                    )
        except ValidationError as exc:
            raise command_error(exc) from None
        except IntegrityError:  # created by someone else since the check above
            raise CommandError(f"A tenant with the slug {slug!r} already exists.") from None
        self.stdout.write(f"Created tenant {tenant.slug} (id {tenant.pk}).")
        if credits is not None:
            self.stdout.write(f"On prepaid credits, balance {usd_text(credits)} USD.")

"""`manage.py budget_set --tenant SLUG [--key PREFIX | --end-user ID] --usd AMOUNT
--period day|week|month [--soft] [--thresholds 50,80,100] [--email a@b,...] [--webhook URL]`:
set (create or change) a budget.

Without `--key` or `--end-user` the budget is the whole tenant's; `--key` takes a key's prefix, with
or without `th-`; `--end-user ""` sets one budget for each end user separately. Setting a budget a
subject already has for that period changes it (its spend so far carries over); `--thresholds`,
`--email` and `--webhook` left out keep what it had (`--email ""` and `--webhook ""` clear them).
The budget is hard (refuses calls it cannot pay for) unless `--soft` (alerts only). Bad input exits
1 with one sentence and changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.audit import Actor
from accounts.management.commands._cli import (
    choice,
    command_error,
    csv_list,
    find_key,
    refuse_nul,
    tenant_named,
    usd,
    whole_numbers,
)
from billing.budgets import budget_set
from billing.credits import usd_text
from billing.models import Budget

# How a refusal names a field: by the option that set it.
OPTIONS = {
    "amount": "--usd",
    "period": "--period",
    "thresholds": "--thresholds",
    "emails": "--email",
    "webhook_url": "--webhook",
    "end_user": "--end-user",
    "api_key": "--key",
}


class Command(BaseCommand):
    help = "Set a budget of a tenant, one of its keys or its end users (created or changed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="The tenant's slug.")
        parser.add_argument("--key", metavar="PREFIX", help="A key's prefix: the budget is that key's.")
        parser.add_argument(
            "--end-user",
            metavar="ID",
            help='An end user: the budget is theirs ("" for one budget for each end user).',
        )
        parser.add_argument("--usd", required=True, metavar="AMOUNT", help="US dollars, e.g. 100 or 12.50.")
        parser.add_argument("--period", required=True, metavar="day|week|month", help="Calendar period.")
        parser.add_argument(
            "--soft", action="store_true", help="Only alert (default: refuse calls it cannot pay for)."
        )
        parser.add_argument(
            "--thresholds", metavar="50,80,100", help="Alert at these percentages (default 50,80,100)."
        )
        parser.add_argument("--email", metavar="A@B,...", help="Who gets the alert emails.")
        parser.add_argument("--webhook", metavar="URL", help="Where alerts are POSTed (signed JSON).")

    def handle(self, *args: Any, **options: Any) -> None:
        refuse_nul(options)
        amount = usd("--usd", options["usd"])
        period = choice("--period", options["period"], Budget.Period.values)
        assert amount is not None and period is not None  # required options
        thresholds = whole_numbers("--thresholds", options["thresholds"])
        emails = None
        if options["email"] is not None:
            emails = [] if options["email"] == "" else csv_list("--email", options["email"])
        end_user: str | None = options["end_user"]
        if options["key"] is not None and end_user is not None:
            raise CommandError("Give --key or --end-user, not both: a budget is one key's or end users'.")
        tenant = tenant_named(options["tenant"])
        api_key = find_key(tenant, options["key"]) if options["key"] is not None else None

        try:
            with transaction.atomic():
                budget = budget_set(
                    tenant=tenant,
                    api_key=api_key,
                    end_user=end_user,
                    usd=amount,
                    period=period,
                    hard=not options["soft"],
                    thresholds=thresholds,
                    emails=emails,
                    webhook_url=options["webhook"],
                    actor=Actor.command("budget_set"),
                )
        except ValidationError as exc:
            raise command_error(exc, OPTIONS) from None
        if api_key is not None:
            whose = f"key {api_key.name!r} (th-{api_key.prefix}…) of {tenant.slug}"
        elif end_user is not None:
            whose = (
                f"end user {end_user!r} of {tenant.slug}" if end_user else f"each end user of {tenant.slug}"
            )
        else:
            whose = f"tenant {tenant.slug}"
        kind = "hard" if budget.hard else "soft"
        thresholds_text = ", ".join(f"{t} %" for t in budget.thresholds)
        self.stdout.write(
            f"Budget {budget.pk}: {usd_text(budget.amount)} USD a {budget.period} for {whose}, {kind}; "
            f"alerts at {thresholds_text}."
        )

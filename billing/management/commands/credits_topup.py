"""`manage.py credits_topup --tenant SLUG --usd AMOUNT [--note TEXT]`: add prepaid credits.

Appends a top-up line to the tenant's credit ledger (billing.credits.credit_add, as the console
does) and prints the new balance. Bad input exits 1 with one sentence and adds nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from accounts.audit import Actor
from accounts.management.commands._cli import command_error, positive_decimal, tenant_named
from billing.credits import MAX_CREDIT_USD, USD_PLACES, credit_add, credit_balance, usd_text
from billing.models import CreditEntry


class Command(BaseCommand):
    help = "Top up a tenant's prepaid credits; prints the new balance."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="The tenant's slug.")
        parser.add_argument("--usd", required=True, metavar="AMOUNT", help="US dollars, e.g. 25 or 12.50.")
        parser.add_argument("--note", default="", help="Why (kept on the ledger line).")

    def handle(self, *args: Any, **options: Any) -> None:
        usd = positive_decimal("--usd", options["usd"], places=USD_PLACES, maximum=MAX_CREDIT_USD)
        assert usd is not None  # a required option
        tenant = tenant_named(options["tenant"])
        try:
            with transaction.atomic():
                credit_add(
                    tenant=tenant,
                    kind=CreditEntry.Kind.TOPUP,
                    usd=usd,
                    note=options["note"],
                    actor=Actor.command("credits_topup"),
                )
                balance = credit_balance(tenant)
        except ValidationError as exc:
            raise command_error(exc) from None
        self.stdout.write(
            f"Added {usd_text(usd)} USD to the credits of {tenant.slug}; balance {usd_text(balance)} USD."
        )

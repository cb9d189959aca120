"""`manage.py credits_topup --tenant SLUG --usd AMOUNT [--note TEXT] [--start-prepaid]`: add prepaid
credits.

Appends a top-up line to the tenant's credit ledger (billing.credits.credit_topup, as the console
does) and prints the new balance. A tenant not on prepaid credits is refused (nothing reads its
balance) unless `--start-prepaid` puts it on them, in the same transaction: from then on its calls
are refused when the balance cannot cover them. Bad input exits 1 with one sentence and adds nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandParser
from django.db import transaction

from accounts.audit import Actor
from accounts.management.commands._cli import command_error, positive_decimal, tenant_named
from billing.credits import MAX_CREDIT_USD, USD_PLACES, credit_balance, credit_topup, usd_text
from config.command import OperatorCommand


class Command(OperatorCommand):
    help = "Top up a tenant's prepaid credits; prints the new balance."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="The tenant's slug.")
        parser.add_argument("--usd", required=True, metavar="AMOUNT", help="US dollars, e.g. 25 or 12.50.")
        parser.add_argument("--note", default="", help="Why (kept on the ledger line).")
        parser.add_argument(
            "--start-prepaid",
            action="store_true",
            help="Put a tenant not yet on prepaid credits on them (calls are then refused when the "
            "balance cannot cover them).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        usd = positive_decimal("--usd", options["usd"], places=USD_PLACES, maximum=MAX_CREDIT_USD)
        assert usd is not None  # a required option
        tenant = tenant_named(options["tenant"])
        try:
            with transaction.atomic():
                started = options["start_prepaid"] and not tenant.prepaid
                credit_topup(
                    tenant=tenant,
                    usd=usd,
                    note=options["note"],
                    actor=Actor.command("credits_topup"),
                    start_prepaid=options["start_prepaid"],
                )
                balance = credit_balance(tenant)
        except ValidationError as exc:
            raise command_error(exc) from None
        if started:
            self.stdout.write(f"Tenant {tenant.slug} now runs on prepaid credits.")
        self.stdout.write(
            f"Added {usd_text(usd)} USD to the credits of {tenant.slug}; balance {usd_text(balance)} USD."
        )

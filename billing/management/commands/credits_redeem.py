"""`manage.py credits_redeem --tenant SLUG CODE`: redeem a redemption code for a tenant.

The code's value becomes a redemption line of the tenant's credit ledger
(billing.credits.code_redeem) and the new balance is printed. A malformed, unknown, expired or
already redeemed code, or an unknown tenant, exits 1 with one sentence and changes nothing. The
code itself is never repeated in any message.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from accounts.audit import Actor
from accounts.management.commands._cli import command_error, tenant_named
from billing.credits import code_redeem, credit_balance, usd_text


class Command(BaseCommand):
    help = "Redeem a redemption code for a tenant; prints the new balance."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="The tenant's slug.")
        parser.add_argument("code", help="The code, e.g. TH-XXXX-XXXX-XXXX-XXXX (any case, dashes optional).")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_named(options["tenant"])
        try:
            with transaction.atomic():
                entry = code_redeem(
                    tenant=tenant, code=options["code"], actor=Actor.command("credits_redeem")
                )
                balance = credit_balance(tenant)
        except ValidationError as exc:
            raise command_error(exc) from None
        self.stdout.write(
            f"Redeemed a code worth {usd_text(entry.amount)} USD for {tenant.slug}; "
            f"balance {usd_text(balance)} USD."
        )

"""`manage.py redeem_codes_create --usd AMOUNT --count N [--expires ISO]`: a batch of redemption codes.

Prints the raw codes, one per line and nothing else, on stdout (so `> codes.txt` keeps exactly the
codes), and a summary on stderr. They are shown once: only their digests are stored. Bad input
exits 1 with one sentence and creates nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from accounts.audit import Actor
from accounts.management.commands._cli import command_error, positive_decimal, positive_int
from accounts.management.commands.key_issue import parse_expiry
from billing.credits import MAX_CODES_PER_BATCH, MAX_CREDIT_USD, USD_PLACES, code_batch_create, usd_text
from config.command import OperatorCommand


class Command(OperatorCommand):
    help = "Create a batch of single-use redemption codes; prints one code per line (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--usd", required=True, metavar="AMOUNT", help="Value of each code, in US dollars."
        )
        parser.add_argument(
            "--count", required=True, metavar="N", help=f"How many codes (1 to {MAX_CODES_PER_BATCH})."
        )
        parser.add_argument(
            "--expires",
            metavar="ISO",
            help="Expiry, e.g. 2030-01-31 or 2030-01-31T12:00+02:00 (default: never).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        usd = positive_decimal("--usd", options["usd"], places=USD_PLACES, maximum=MAX_CREDIT_USD)
        count = positive_int("--count", options["count"])
        assert usd is not None and count is not None  # required options
        if count > MAX_CODES_PER_BATCH:
            raise CommandError(f"--count must be at most {MAX_CODES_PER_BATCH}, not {options['count']!r}.")
        expires_at = parse_expiry(options["expires"])
        try:
            codes = code_batch_create(
                usd=usd, count=count, expires_at=expires_at, actor=Actor.command("redeem_codes_create")
            ).codes
        except ValidationError as exc:
            raise command_error(exc) from None
        self.stdout.write("\n".join(codes))
        until = f", valid until {expires_at.isoformat()}" if expires_at else ", valid until redeemed"
        self.stderr.write(
            f"Created {len(codes)} redemption code(s) worth {usd_text(usd)} USD each{until}. "
            "Shown once; only their digests are stored."
        )

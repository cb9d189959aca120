"""`manage.py usage_reconcile [--since ISO] [--fix]`: do the raw usage rows, the hourly rollups,
the budget counters and the credit ledger agree?

Prints one line per difference and exits 1 when there is any; prints nothing and exits 0 when all
agree. `--since` (an ISO 8601 date or time; UTC unless it says otherwise) is where the comparison
starts, rounded down to its hour (default: the last two days); hours whose raw rows the retention
has purged are not compared. `--fix` re-derives the rollups and the counters from the raw rows (and
adds missing credit charges), prints what it repaired, compares again and exits 0 only when
nothing differs any more. Each run is recorded (billing.models.ReconcileRun), for the operator
overview's "last reconcile".
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser

from billing.reconcile import reconcile_run_save, usage_reconcile
from config.command import OperatorCommand


def _moment(text: str) -> datetime:
    if "\x00" in text or len(text) > 64:
        raise CommandError(
            "--since must be an ISO 8601 date or time, such as 2026-11-01 or 2026-11-01T12:00Z."
        )
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            moment = datetime.combine(date.fromisoformat(text.strip()), datetime.min.time())
        except ValueError:
            raise CommandError(
                f"--since must be an ISO 8601 date or time, such as 2026-11-01 or 2026-11-01T12:00Z, not {text[:64]!r}."
            ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Command(OperatorCommand):
    help = "Compare raw usage rows, hourly rollups, budget counters and the credit ledger; --fix repairs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", metavar="ISO", help="Start of the comparison (default: two days ago).")
        parser.add_argument(
            "--fix", action="store_true", help="Re-derive rollups and counters from the raw rows."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = _moment(options["since"]) if options["since"] is not None else None
        began = time.perf_counter()
        differences = usage_reconcile(since=since, fix=options["fix"])
        # Recorded (the operator overview shows the last run): what was found, before any repair.
        reconcile_run_save(
            since=since,
            differences=differences,
            fixed=options["fix"],
            source="command",
            seconds=time.perf_counter() - began,
        )
        if options["fix"] and differences:
            # Exit 0 only when the repair holds: compare again.
            remaining = usage_reconcile(since=since, fix=False)
            for difference in differences:
                self.stdout.write(f"{difference} (repaired)")
            for difference in remaining:
                self.stdout.write(f"{difference} (still differs after --fix)")
            differences = remaining
        else:
            for difference in differences:
                self.stdout.write(difference)
        if differences:
            self.stdout.flush()
            sys.exit(1)

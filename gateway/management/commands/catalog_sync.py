"""`manage.py catalog_sync FILE [--dry-run] [--prune]`: make the providers, routes, deployments and
prices what the catalog file (TOML or YAML, by extension) says.

Prints the diff (`+` added, `~` changed `field: old → new`, `-` removed or disabled), then applies it
in one transaction, each change audited (actor `command:catalog_sync`); `--dry-run` prints it and
changes nothing. Run twice, the second run says "No changes". A file that cannot be synced is
refused with `FILE:LINE: reason` for each problem, and nothing changes. See gateway/catalogsync.py for
what `--prune` does (never anything to a price in force).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from accounts.audit import Actor
from config.command import OperatorCommand
from gateway.catalogfile import CatalogFileError
from gateway.catalogsync import catalog_sync


class Command(OperatorCommand):
    help = "Sync providers, routes, deployments and prices from a catalog file (TOML or YAML)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE", help="The catalog: .toml, .yaml or .yml.")
        parser.add_argument("--dry-run", action="store_true", help="Print the changes; apply nothing.")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Also disable the providers and routes the file does not list, delete their "
            "deployments it does not list, and withdraw scheduled prices it does not list.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: str = options["file"]
        try:
            result = catalog_sync(
                path=path,
                prune=options["prune"],
                dry_run=options["dry_run"],
                actor=Actor.command("catalog_sync"),
            )
        except CatalogFileError as exc:
            raise CommandError(f"Refused, nothing changed:\n{exc.render()}") from None
        for warning in result.plan.warnings:
            self.stderr.write(f"Warning: {warning}.")
        if not result.plan.changes:
            self.stdout.write(f"No changes: the catalog already matches {path}.")
            return
        for line in result.plan.render():
            self.stdout.write(line)
        if options["dry_run"]:
            self.stdout.write(f"Dry run: {result.plan.summary()} would be applied; nothing changed.")
        else:
            self.stdout.write(f"Applied: {result.plan.summary()}.")

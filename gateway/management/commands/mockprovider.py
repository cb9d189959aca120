"""``python manage.py mockprovider --port N`` — run the mock OpenAI-compatible provider in the foreground.

All behaviour lives in :mod:`gateway.mockserver` (which has no Django dependency); this command only
parses the same flags as ``python -m gateway.mockserver`` and calls its ``run()``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from config.command import OperatorCommand
from gateway import mockserver


class Command(OperatorCommand):
    help = "Run the mock LLM provider (OpenAI wire format) in the foreground; Ctrl-C stops it."

    # The mock touches neither models nor the database, so don't make it wait on system checks.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        mockserver.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = mockserver.config_from_options(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        mockserver.run(host=options["host"], port=options["port"], config=config)

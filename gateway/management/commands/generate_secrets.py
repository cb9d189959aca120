"""`manage.py generate_secrets [--output FILE]`: fresh production secrets as environment lines.

    TOLLHOUSE_SECRET_KEY=...       Django's secret key (67 url-safe characters)
    TOLLHOUSE_ENCRYPTION_KEY=...   a Fernet key for provider credentials at rest
    TOLLHOUSE_KEY_PEPPER=...       the API-key digest pepper, separate so the secret key can be
                                   rotated later without voiding every issued key

Values are url-safe base64, so the lines need no quoting: they work with `set -a; . FILE; set +a`
and as a systemd EnvironmentFile. This is the command you run *before* you have secrets, so it must
work with no configuration or a broken one: it skips the system checks (which would refuse the
missing secrets) and touches neither the database nor Redis.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from django.core.management.base import CommandError, CommandParser

from config.command import OperatorCommand


def secret_lines() -> str:
    return (
        f"TOLLHOUSE_SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"TOLLHOUSE_ENCRYPTION_KEY={Fernet.generate_key().decode()}\n"
        f"TOLLHOUSE_KEY_PEPPER={secrets.token_urlsafe(32)}\n"
    )


class Command(OperatorCommand):
    help = (
        "Print fresh TOLLHOUSE_SECRET_KEY, TOLLHOUSE_ENCRYPTION_KEY and TOLLHOUSE_KEY_PEPPER lines, "
        "or write them to a new owner-only file with --output."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output",
            metavar="FILE",
            help="Write to FILE, created with mode 0600 (its directory too, 0700, if missing); "
            "refuses to overwrite an existing file, whose secrets may already be in use.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        lines = secret_lines()
        if options["output"] is None:
            self.stdout.write(lines, ending="")
            return
        path = Path(options["output"])
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # O_EXCL: replacing secrets in use would make stored credentials unreadable and void
            # every API key; the mode is set at creation, so the file is never readable by others.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CommandError(
                f"{path} already exists; it may hold the secrets in use, so it is left alone "
                "(move it away first to really make new ones)."
            ) from None
        except OSError as exc:
            raise CommandError(f"Cannot create {path}: {exc.strerror}.") from None
        with os.fdopen(fd, "w") as file:
            file.write(lines)
        self.stdout.write(f"Wrote new secrets to {path} (mode 0600).")

"""`manage.py serve`: run the gateway and console (uvicorn; see config/server.py for why not bare uvicorn)."""

from __future__ import annotations

import os
import shutil
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from config.command import OperatorCommand
from config.server import metrics_dir_prepare, port_in_use, uvicorn_options


def _default_port() -> int:
    value = os.environ.get("PORT", "8000")
    return int(value) if value.isdigit() else -1


class Command(OperatorCommand):
    help = "Serve the gateway (/v1) and the console with uvicorn (uvloop, httptools), N worker processes."
    # The ASGI startup validates the configuration itself and refuses to serve with one sentence.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument(
            "--port", type=int, default=_default_port(), help="Port to listen on (default $PORT or 8000)."
        )
        parser.add_argument(
            "--workers", type=int, default=1, help="Worker processes; one per core in production (default 1)."
        )
        parser.add_argument(
            "--log-level",
            default="warning",
            choices=["critical", "error", "warning", "info", "debug"],
            help="uvicorn's own log level (Tollhouse's follows TOLLHOUSE_LOG_LEVEL).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port, workers = options["host"], options["port"], options["workers"]
        if not 0 < port < 65536:
            raise CommandError("The port must be a number from 1 to 65535 (set --port or PORT).")
        if workers < 1:
            raise CommandError("--workers must be at least 1.")
        if settings.TOLLHOUSE_SINGLE_PROCESS and workers > 1:
            raise CommandError(
                "The embedded mode keeps its counters and usage buffer in one process: serve it with "
                "--workers 1, or set DATABASE_URL and REDIS_URL to run several workers."
            )
        if port_in_use(host, port):
            raise CommandError(
                f"Port {port} on {host} is already in use: stop what is using it, or serve elsewhere "
                f"with --port (make run: PORT=9000 make run)."
            )
        if settings.TOLLHOUSE_EMBEDDED_MOCK and port_in_use("127.0.0.1", settings.TOLLHOUSE_MOCK_PORT):
            raise CommandError(
                f"Port {settings.TOLLHOUSE_MOCK_PORT} for the embedded mock provider is already in use: "
                "set TOLLHOUSE_MOCK_PORT to a free port (make run: TOLLHOUSE_MOCK_PORT=9001 make run)."
            )
        metrics_dir, owned = metrics_dir_prepare(workers=workers)
        try:
            uvicorn.run(
                "config.asgi:application",
                **uvicorn_options(host=host, port=port, workers=workers, log_level=options["log_level"]),
            )
        finally:
            if owned and metrics_dir is not None:
                # Only the workers' value files, in a temporary directory: nothing to keep.
                shutil.rmtree(metrics_dir, ignore_errors=True)

"""Run `manage.py` commands as an operator would: in-process (call_command) or as a real process
against the test database (for exit codes and exactly what lands on stderr)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from django.core.management import call_command
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Output:
    stdout: str
    stderr: str


def call(name: str, *args: str) -> Output:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=stdout, stderr=stderr)
    return Output(stdout.getvalue(), stderr.getvalue())


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python manage.py ARGS` in a subprocess on the test database (needs transactional_db for
    the data a test made to be visible to it)."""
    environment = {**os.environ, "DATABASE_URL": database_url(), **(env or {})}
    environment.pop("TOLLHOUSE_TESTING", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_sentence_error(result: subprocess.CompletedProcess[str]) -> str:
    """The failed command's stderr, asserted to be a single `CommandError: ...` line."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("CommandError: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0].removeprefix("CommandError: ")


def call_or_refused(name: str, *args: str) -> Output | None:
    """`call`, or None when the command refused: then asserted to be one sentence (one line) that
    changed nothing in the database."""
    from django.core.management.base import CommandError

    from tests.support.snapshot import db_snapshot

    before = db_snapshot()
    try:
        return call(name, *args)
    except CommandError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message, message
        assert db_snapshot() == before
        return None

"""Files at rest: a fresh TOLLHOUSE_VAR_DIR, its SQLite database (with -wal and -shm) and the
generated secrets are owner-only from the start, whatever the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs inside the embedded profile while a connection is open (SQLite removes -wal and -shm when the
# last one closes), and reports every mode in the var directory.
SCRIPT = """
import json, os
from django.conf import settings
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS probe (x int)")
    cursor.execute("INSERT INTO probe VALUES (1)")
    var = settings.VAR_DIR
    modes = {name: oct(os.stat(var / name).st_mode & 0o777) for name in os.listdir(var)}
    modes["."] = oct(os.stat(var).st_mode & 0o777)
    print(json.dumps(modes))
"""


def run_embedded(var: Path, umask: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "TOLLHOUSE_", "CELERY_", "DJANGO_"))
    }
    env["TOLLHOUSE_VAR_DIR"] = str(var)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_fresh_var_dir_is_owner_only_even_with_an_open_umask(tmp_path):
    var = tmp_path / "var"
    modes = run_embedded(var, umask=0o000)
    assert modes["."] == oct(0o700)
    assert {
        "tollhouse.sqlite3",
        "tollhouse.sqlite3-wal",
        "tollhouse.sqlite3-shm",
        "secret_key",
        "encryption_key",
    } <= set(modes)
    assert {name: mode for name, mode in modes.items() if name != "."} == dict.fromkeys(
        set(modes) - {"."}, oct(0o600)
    )


def test_it_keeps_the_secrets_it_generated(tmp_path):
    var = tmp_path / "var"
    run_embedded(var, umask=0o022)
    first = (var / "secret_key").read_text()
    run_embedded(var, umask=0o022)
    assert (var / "secret_key").read_text() == first and len(first.strip()) >= 50
    assert not [name for name in os.listdir(var) if name.startswith(".")]  # no temporary files left


def test_it_tightens_files_an_older_version_left_readable(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    for name in ("tollhouse.sqlite3", "secret_key"):
        (var / name).write_text("" if name.endswith("sqlite3") else "x" * 60 + "\n")
        (var / name).chmod(0o644)
    modes = run_embedded(var, umask=0o022)
    assert modes["tollhouse.sqlite3"] == modes["secret_key"] == oct(0o600)
    assert stat.S_IMODE((var / "secret_key").stat().st_mode) == 0o600

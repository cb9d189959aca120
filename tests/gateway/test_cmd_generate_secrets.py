"""`manage.py generate_secrets [--output FILE]`: usable before any configuration exists."""

import os
import stat
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def generate(tmp_path, *args, **env):
    """The command in a process with none of Tollhouse's variables, except those given."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "TOLLHOUSE_"))
    }
    base.update({"TOLLHOUSE_VAR_DIR": str(tmp_path / "var"), **env})
    return subprocess.run(
        [sys.executable, "manage.py", "generate_secrets", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def parse(text):
    return dict(line.split("=", 1) for line in text.strip().splitlines())


def check_secrets(values):
    assert set(values) == {"TOLLHOUSE_SECRET_KEY", "TOLLHOUSE_ENCRYPTION_KEY", "TOLLHOUSE_KEY_PEPPER"}
    assert len(values["TOLLHOUSE_SECRET_KEY"]) >= 50
    Fernet(values["TOLLHOUSE_ENCRYPTION_KEY"].encode())  # a valid Fernet key, or this raises
    for value in values.values():  # no quoting needed by a shell or a systemd EnvironmentFile
        assert value.replace("-", "").replace("_", "").replace("=", "").isalnum(), value


def test_it_prints_fresh_secrets_the_production_settings_accept(tmp_path):
    first, second = generate(tmp_path), generate(tmp_path)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    values = parse(first.stdout)
    check_secrets(values)
    assert values != parse(second.stdout)
    # What it printed passes the production profile's checks.
    checked = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/tollhouse", **values},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "TOLLHOUSE_SECRET_KEY" not in checked.stderr and "TOLLHOUSE_ENCRYPTION_KEY" not in checked.stderr


def test_it_works_in_production_before_the_secrets_exist(tmp_path):
    # DATABASE_URL set and no secrets: the settings record errors and system checks would fail.
    result = generate(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/tollhouse")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    check_secrets(parse(result.stdout))


def test_it_works_with_a_broken_configuration(tmp_path):
    result = generate(tmp_path, DATABASE_URL="mysql://nope", TOLLHOUSE_TRUSTED_PROXIES="not-a-network")
    assert result.returncode == 0, result.stderr
    check_secrets(parse(result.stdout))


def test_it_writes_an_owner_only_file_that_a_shell_can_source(tmp_path):
    target = tmp_path / "etc" / "tollhouse.env"
    result = generate(tmp_path, "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert str(target) in result.stdout and "TOLLHOUSE_SECRET_KEY" not in result.stdout
    sourced = subprocess.run(
        ["bash", "-c", f"set -a; . {target}; set +a; env"], capture_output=True, text=True, check=True
    )
    exported = parse("\n".join(line for line in sourced.stdout.splitlines() if line.startswith("TOLLHOUSE_")))
    written = parse(target.read_text())
    assert {name: exported.get(name) for name in written} == written
    check_secrets(written)


def test_it_never_overwrites_secrets_that_may_be_in_use(tmp_path):
    target = tmp_path / "tollhouse.env"
    target.write_text("TOLLHOUSE_SECRET_KEY=in-use\n")
    result = generate(tmp_path, "--output", str(target))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"CommandError: {target} already exists"), result.stderr
    assert target.read_text() == "TOLLHOUSE_SECRET_KEY=in-use\n"

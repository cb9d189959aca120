"""Misconfiguration stops the start with one clear sentence (system checks), never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "dGVzdC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcyEhISE="


def check(tmp_path, **env):
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "TOLLHOUSE_", "CELERY_"))
    }
    base.update({"TOLLHOUSE_VAR_DIR": str(tmp_path), "TOLLHOUSE_TESTING": "1", **env})
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


def test_it_starts_clean_with_nothing_configured(tmp_path):
    result = check(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ERRORS" not in result.stderr and "WARNINGS" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        (
            {"DATABASE_URL": "mysql://root@localhost/x"},
            "DATABASE_URL must be a postgres:// (or sqlite://) URL",
        ),
        (
            {
                "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/tollhouse",
                "TOLLHOUSE_ENCRYPTION_KEY": GOOD_KEY,
            },
            "TOLLHOUSE_SECRET_KEY must be set in production",
        ),
        (
            {
                "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/tollhouse",
                "TOLLHOUSE_SECRET_KEY": "x" * 40,
            },
            "TOLLHOUSE_ENCRYPTION_KEY must be set in production",
        ),
        (
            {"TOLLHOUSE_ENCRYPTION_KEY": "not-a-fernet-key"},
            "TOLLHOUSE_ENCRYPTION_KEY must be url-safe base64 of 32 bytes",
        ),
        (
            {
                "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/tollhouse",
                "TOLLHOUSE_SECRET_KEY": "x" * 40,
                "TOLLHOUSE_ENCRYPTION_KEY": GOOD_KEY,
            },
            "REDIS_URL must be set in production",
        ),
        ({"TOLLHOUSE_REDIS_FAILURE": "maybe"}, "TOLLHOUSE_REDIS_FAILURE must be one of closed, open"),
        ({"TOLLHOUSE_LEASE_SECONDS": "-5"}, "TOLLHOUSE_LEASE_SECONDS must be at least 10"),
        ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL must be a redis://host:port/db URL"),
        ({"TOLLHOUSE_CACHE_TTL": "soon"}, "TOLLHOUSE_CACHE_TTL must be a whole number"),
        ({"TOLLHOUSE_SECRET_KEY": "short"}, "TOLLHOUSE_SECRET_KEY must be at least 32 characters"),
        (
            {"TOLLHOUSE_HEADER_TIMEOUT_SECONDS": "0"},
            "TOLLHOUSE_HEADER_TIMEOUT_SECONDS must be a number of seconds above 0 and at most 600, not '0'",
        ),
        (
            {"TOLLHOUSE_BODY_TIMEOUT_SECONDS": "nan"},
            "TOLLHOUSE_BODY_TIMEOUT_SECONDS must be a number of seconds above 0 and at most 3600",
        ),
        (
            {"TOLLHOUSE_MAX_CONNECTIONS_PER_ADDRESS": "-1"},
            "TOLLHOUSE_MAX_CONNECTIONS_PER_ADDRESS must be at least 0",
        ),
        (
            {"TOLLHOUSE_UPSTREAM_RETRY_AFTER_MAX_SECONDS": "0"},
            "TOLLHOUSE_UPSTREAM_RETRY_AFTER_MAX_SECONDS must be at least 1",
        ),
    ],
)
def test_it_refuses_a_bad_configuration_with_one_sentence(tmp_path, env, sentence):
    result = check(tmp_path, **env)
    assert result.returncode != 0
    assert sentence in result.stderr
    assert "Traceback" not in result.stderr
    for value in env.values():
        if "secret" in value.lower() or len(value) >= 40:
            assert value not in result.stderr


def test_it_refuses_to_serve_with_a_bad_configuration(tmp_path):
    code = "import django; django.setup(); from config.checks import raise_on_config_errors; raise_on_config_errors()"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "TOLLHOUSE_"))
    }
    env.update(
        {
            "TOLLHOUSE_VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "REDIS_URL": "nope://",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "REDIS_URL must be a redis://host:port/db URL" in result.stderr


def test_a_retention_shorter_than_the_budget_floor_is_a_warning_not_an_error(tmp_path):
    result = check(tmp_path, TOLLHOUSE_USAGE_RETENTION_DAYS="7")
    assert result.returncode == 0, result.stderr
    assert (
        "TOLLHOUSE_USAGE_RETENTION_DAYS is 7: raw usage rows are still kept back to the start"
        in result.stderr
    )
    assert "WARNINGS" not in check(tmp_path, TOLLHOUSE_USAGE_RETENTION_DAYS="90").stderr

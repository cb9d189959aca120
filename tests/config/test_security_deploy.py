"""Security settings: `manage.py check --deploy` is clean in production (DATABASE_URL set) by
default; each protection can be turned off by its variable (and the check then says so); the embedded
default (plain http on localhost) has them off."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "dGVzdC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcyEhISE="
# The lead is removing django-ratelimit (and its silencing); its two ids are not ours to judge.
IGNORED = {"django_ratelimit.W001", "django_ratelimit.E003"}


def production_env() -> dict[str, str]:
    db = settings.DATABASES["default"]
    return {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL or "redis://127.0.0.1:6379/0",
        "TOLLHOUSE_SECRET_KEY": secrets.token_urlsafe(50),
        "TOLLHOUSE_ENCRYPTION_KEY": GOOD_KEY,
    }


def run(tmp_path: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "TOLLHOUSE_", "CELERY_", "DJANGO_"))
    }
    base.update({"TOLLHOUSE_VAR_DIR": str(tmp_path / "var"), **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


def issues(result: subprocess.CompletedProcess[str]) -> set[str]:
    found = set(re.findall(r"\(([\w.]+\.[EW]\d{3})\)", result.stdout + result.stderr))
    return found - IGNORED


def test_check_deploy_is_clean_in_production(tmp_path):
    result = run(tmp_path, ["check", "--deploy"], **production_env())
    assert result.returncode == 0, result.stderr
    assert issues(result) == set(), result.stdout + result.stderr


def test_each_protection_can_be_turned_off_and_the_check_says_so(tmp_path):
    result = run(
        tmp_path,
        ["check", "--deploy"],
        **production_env(),
        TOLLHOUSE_SSL_REDIRECT="false",
        TOLLHOUSE_SECURE_COOKIES="false",
        TOLLHOUSE_HSTS_SECONDS="0",
    )
    assert issues(result) == {
        "security.W008",  # SSL redirect
        "security.W012",  # session cookie
        "security.W016",  # CSRF cookie
        "security.W004",  # HSTS
    }, result.stdout + result.stderr

    result = run(
        tmp_path,
        ["check", "--deploy"],
        **production_env(),
        TOLLHOUSE_HSTS_INCLUDE_SUBDOMAINS="false",
        TOLLHOUSE_HSTS_PRELOAD="false",
    )
    assert issues(result) == {"security.W005", "security.W021"}, result.stdout + result.stderr


PRINT_SETTINGS = (
    "import json; from django.conf import settings as s; print(json.dumps({n: getattr(s, n) for n in "
    "['SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', "
    "'SECURE_PROXY_SSL_HEADER', 'X_FRAME_OPTIONS']}))"
)


def settings_in(tmp_path: Path, **env: str) -> dict:
    result = run(tmp_path, ["shell", "-c", PRINT_SETTINGS], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_embedded_default_is_plain_http_and_the_proxy_header_needs_a_trusted_proxy(tmp_path):
    embedded = settings_in(tmp_path)
    assert embedded == {
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_PROXY_SSL_HEADER": None,
        "X_FRAME_OPTIONS": "DENY",
    }
    proxied = settings_in(tmp_path, **production_env(), TOLLHOUSE_TRUSTED_PROXIES="10.0.0.0/8")
    # Never the raw header: the key config.clientip sets only for a trusted proxy's word.
    assert proxied["SECURE_PROXY_SSL_HEADER"] == ["TOLLHOUSE_FORWARDED_SCHEME", "https"]
    assert proxied["SECURE_SSL_REDIRECT"] is True and proxied["SECURE_HSTS_SECONDS"] == 31_536_000


@pytest.mark.django_db
def test_health_probes_are_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    response = client.get("/admin/login/")
    assert response.status_code == 301 and response["Location"].startswith("https://")


@pytest.fixture
def production_http(settings):
    """The production profile's https settings, the README's trusted proxies, and the client's
    middleware built after them."""
    from ipaddress import ip_network

    settings.SECURE_SSL_REDIRECT = True
    settings.TOLLHOUSE_TRUSTED_PROXIES = (ip_network("10.0.0.0/8"),)
    settings.SECURE_PROXY_SSL_HEADER = ("TOLLHOUSE_FORWARDED_SCHEME", "https")
    return settings


@pytest.mark.django_db
def test_a_spoofed_forwarded_proto_from_an_untrusted_peer_is_redirected(client, production_http):
    response = client.get("/admin/login/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 301 and response["Location"].startswith("https://")


@pytest.mark.django_db
def test_a_trusted_proxys_forwarded_proto_is_believed(client, production_http):
    behind = client.get(
        "/admin/login/",
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    assert behind.status_code == 200
    # The proxy appended what it saw (http) to what the client claimed (https): redirected.
    appended = client.get(
        "/admin/login/",
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_PROTO="https, http",
        HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7",
    )
    assert appended.status_code == 301


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1"),
        ("get", "/v1/"),
        ("post", "/v1/completions"),
        ("get", "/v1/chat/completions/extra"),
        ("get", "/v1/a%0Ab"),
        ("get", "/v1/" + "x" * 60_000),
    ],
)
def test_v1_is_never_redirected_and_an_unknown_route_answers_the_json_404(
    client, production_http, caplog, method, path
):
    with caplog.at_level(logging.WARNING):
        response = getattr(client, method)(path, REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 404, response.content[:200]
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "unknown_url"
    assert len(response.content) < 1000
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[:500]

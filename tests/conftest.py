"""Shared fixtures: an operator, two tenants (owner, member, outsider), keys, the mock provider,
and the live gateway. CI runs them against real PostgreSQL and Redis (see the Makefile)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from gateway.mockserver import MockConfig, MockServerThread
from tests.support.secrets import registry, session_log_findings, session_log_start

UPSTREAM_SECRET = "upstream-credential-0f9e8d7c6b5a"
registry.credential(UPSTREAM_SECRET)


# No log line of the whole run may hold an API key, a provider credential, a JWT or a prompt marker
# (tests/support/secrets.py): every record logged in this process, and the output of every gateway
# and worker subprocess (tests/support/process.py), is scanned when the session ends.
def pytest_sessionstart(session: pytest.Session) -> None:
    session_log_start(Path(tempfile.gettempdir()) / f"tollhouse-test-logs-{os.getpid()}.jsonl")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    findings = session_log_findings()
    if findings:
        print("\nSecrets or prompt text in the logs of this run:\n" + "\n".join(map(str, findings[:50])))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def mock_upstream() -> Iterator[MockServerThread]:
    # The mock insists on the provider credential, which proves the gateway decrypts and sends it.
    with MockServerThread(config=MockConfig(api_key=UPSTREAM_SECRET)) as mock:
        yield mock


@pytest.fixture(scope="session", autouse=True)
def _no_stray_connections_at_teardown(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """Server and executor threads keep their own connections; the test database can only be
    dropped once they are gone."""
    yield
    from django.db import connection

    # Only when the test database was set up (a run with no database test never switches to it).
    if connection.vendor == "postgresql" and connection.settings_dict["NAME"].startswith("test_"):
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(scope="session")
def gateway_server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[str]:
    from tests.support.server import GatewayServerThread

    server = GatewayServerThread().start()
    yield server.url
    with django_db_blocker.unblock():
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    """Each test sees the database as it made it, not a previous test's cached keys and routes."""
    from gateway.breaker import CircuitBreaker
    from gateway.governor import Governor
    from gateway.runtime import runtime
    from gateway.strangers import FailedAuthCounter

    runtime.clear_caches()
    runtime.authenticator.failures = FailedAuthCounter()
    runtime.governor = Governor()
    runtime.breaker = CircuitBreaker()
    yield
    runtime.clear_caches()


@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    if settings.REDIS_URL:
        from config.redis import sync_client

        sync_client().flushdb()


@dataclass
class World:
    operator: Any
    acme: Any
    globex: Any
    owner: Any
    member: Any
    outsider: Any
    key: str  # acme's key, every model
    globex_key: str
    provider: Any


@pytest.fixture
def world(transactional_db: None, mock_upstream: MockServerThread) -> World:
    from django.contrib.auth import get_user_model

    from accounts.models import Membership, Plan
    from accounts.services import api_key_issue, tenant_create
    from gateway.services import demo_models_install, provider_upsert

    User = get_user_model()
    operator = User.objects.create_superuser("operator", "op@example.com", "pw-operator-1")
    owner = User.objects.create_user("alice", "alice@acme.test", "pw-alice-123")
    member = User.objects.create_user("bob", "bob@acme.test", "pw-bob-1234")
    outsider = User.objects.create_user("eve", "eve@globex.test", "pw-eve-1234")
    plan = Plan.objects.create(name="Team")
    acme = tenant_create(name="Acme", slug="acme", plan=plan)
    globex = tenant_create(name="Globex", slug="globex", plan=plan)
    Membership.objects.create(tenant=acme, user=owner, role="owner")
    Membership.objects.create(tenant=acme, user=member, role="member")
    Membership.objects.create(tenant=globex, user=outsider, role="owner")

    provider = provider_upsert(
        name="mock",
        kind="mock",
        base_url=mock_upstream.url + "/v1",
        credential=UPSTREAM_SECRET,
        read_timeout=Decimal("1.5"),
    )
    demo_models_install(provider=provider)
    return World(
        operator=operator,
        acme=acme,
        globex=globex,
        owner=owner,
        member=member,
        outsider=outsider,
        key=registry.api_key(api_key_issue(tenant=acme, name="acme-default").raw),
        globex_key=registry.api_key(api_key_issue(tenant=globex, name="globex-default").raw),
        provider=provider,
    )


def _drain() -> None:
    if settings.REDIS_URL:
        from billing.usage import usage_drain

        usage_drain(claim_idle_ms=600_000)


@pytest.fixture
def usage_rows() -> Callable[..., list[Any]]:
    """Wait (briefly) until `count` usage rows exist, pushing the pipeline along, and return them."""
    from billing.models import UsageRecord

    def wait(count: int, *, timeout: float = 5.0, settle: float = 0.3) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            _drain()
            rows = list(UsageRecord.objects.order_by("created_at", "id"))
            if len(rows) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # A little longer, so that an extra (wrong) row would show up too.
        time.sleep(settle)
        _drain()
        return list(UsageRecord.objects.order_by("created_at", "id"))

    return wait


# --- the console: roles, signed-in clients, the browser ---------------------------------------------


@pytest.fixture
def roles(db: None) -> Any:
    """Tenant "acme" with an owner, admin, member and viewer; "globex" owned by the outsider
    (tests/support/console.py). Every user's password is `roles.password`."""
    from tests.support.console import make_roles

    return make_roles()


@pytest.fixture
def console_client(roles: Any) -> Callable[[str], Any]:
    """`console_client("viewer")`: a Django test client signed in as that role's user ("owner",
    "admin", "member", "viewer", "outsider"), or not signed in ("anonymous")."""
    from django.test import Client

    def make(role: str) -> Client:
        client = Client()
        user = roles.user(role)
        if user is not None:
            client.force_login(user)
        return client

    return make


@pytest.fixture(autouse=True)
def _console_login_throttle() -> None:
    """Each test starts with no failed sign-ins counted in this process (Redis is flushed anyway)."""
    from accounts.throttle import login_throttle

    login_throttle().reset()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: see `browser`."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium (/usr/bin/chromium) for the whole session (tests/support/browser.py).

    Playwright's sync API keeps its event loop marked as running in the main thread, which Django
    takes for an async context and refuses ORM calls in. So once the browser is up the check is off
    (DJANGO_ALLOW_ASYNC_UNSAFE), and browser tests run after every other test (above), so that no
    test of the gateway's async code runs without it."""
    from playwright.sync_api import sync_playwright

    from tests.support.browser import launch

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    with sync_playwright() as playwright:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        try:
            chromium = launch(playwright)
            yield chromium
            chromium.close()
        finally:
            if previous is None:
                os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
            else:
                os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def console_page(browser: Any, gateway_server: str, settings: Any) -> Iterator[Any]:
    """A fresh context and page on the live server, watching for JavaScript errors and CSP
    violations (tests/support/browser.py). The server is plain http, so cookies may not be Secure."""
    from tests.support.browser import ConsolePage

    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.SECURE_SSL_REDIRECT = False
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway_server)
    page = context.new_page()
    yield ConsolePage(page=page, base_url=gateway_server).watch()
    context.close()


@pytest.fixture
def api_client(roles: Any) -> Callable[[str], Any]:
    """`api_client("viewer")`: a Django test client whose requests carry a personal access token of
    that visitor (tests/support/api.py: a role, "outsider", "operator", "anonymous", "expired",
    "revoked"), with CSRF checks on, as a script would call the API."""
    from tests.support.api import client_with, raw_token

    return lambda visitor: client_with(raw_token(roles, visitor))

"""The operator's tenants pages in Chromium: the operator suspends a tenant (its next call with the
official openai SDK through a second gateway process is refused with 403), tops up another
tenant's credits (its owner's console shows the new balance), resumes the first, and opens a
tenant's console read-only. Screenshot: docs/screenshots/ops-tenants.png."""

from __future__ import annotations

import time
from decimal import Decimal

import openai
import pytest
from django.conf import settings
from django.db import connection

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
    ),
]


def ask(base_url: str, key: str) -> str:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=10)
    reply = client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "Hello"}])
    return reply.choices[0].message.content or ""


def test_the_operator_suspends_tops_up_and_resumes(console_page, world):
    from accounts.models import AuditEntry, Tenant
    from billing.credits import credit_balance
    from billing.models import UsageHourlyTenant
    from tests.support.process import GatewayProcess, subprocess_env

    # Some spend this month, so the list's spend column has something to show.
    hour = Tenant.objects.get(slug="acme").created_at.replace(minute=0, second=0, microsecond=0)
    UsageHourlyTenant.objects.create(
        tenant_id=world.acme.pk, hour=hour, requests=1284, cost=Decimal("42.118")
    )
    env = subprocess_env(
        settings_dict=connection.settings_dict, redis_url=settings.REDIS_URL, TOLLHOUSE_CACHE_TTL="300"
    )
    page = console_page.page
    page.on("dialog", lambda dialog: dialog.accept())  # "Suspend Acme? ..." (data-confirm)
    with GatewayProcess(env=env) as second:
        assert ask(second.url, world.key)  # the second process now holds acme's key in its cache

        console_page.sign_in("op@example.com", "pw-operator-1")
        console_page.goto("/ops/tenants/")
        assert page.is_visible("#tenants")
        page.click("a[href='/ops/tenants/acme/']")
        with page.expect_navigation():
            page.click("#suspend")
        assert page.inner_text("#tenant-status") == "suspended"

        deadline = time.monotonic() + 3
        while True:
            try:
                ask(second.url, world.key)
            except openai.PermissionDeniedError as exc:
                assert exc.status_code == 403 and exc.code == "tenant_suspended"
                break
            assert time.monotonic() < deadline, "the second process still serves a suspended tenant"
            time.sleep(0.05)

        console_page.screenshot("ops-tenant-detail")
        # Top up globex, which is not on prepaid credits yet: the box puts it on them.
        console_page.goto("/ops/tenants/globex/")
        page.fill("#topup #id_amount", "37.25")
        page.fill("#topup #id_note", "invoice 2041")
        page.check("#topup #id_start_prepaid")
        with page.expect_navigation():
            page.click("#topup button[type=submit]")
        assert "$37.25" in page.inner_text("#balance")
        assert credit_balance(world.globex) == Decimal("37.25")

        # Resume acme: served again by the second process.
        console_page.goto("/ops/tenants/acme/")
        with page.expect_navigation():
            page.click("#resume")
        deadline = time.monotonic() + 3
        while True:
            try:
                assert ask(second.url, world.key)
                break
            except openai.PermissionDeniedError:
                assert time.monotonic() < deadline, "the second process still refuses a resumed tenant"
                time.sleep(0.05)

        # The read-only view of globex's console, with its banner.
        page.click("text=Tenants")
        page.click("a[href='/ops/tenants/globex/']")
        page.click("#open-console")
        assert "Viewing as operator (read-only)" in page.inner_text("main")
        assert AuditEntry.objects.filter(tenant=world.globex, action="tenant.operator_view").exists()

        console_page.goto("/ops/tenants/")
        console_page.screenshot("ops-tenants")
        console_page.assert_clean()
        assert "Traceback" not in second.log()

    # The tenant's owner sees the new balance in their own console.
    page.context.clear_cookies()
    console_page.sign_in("eve@globex.test", "pw-eve-1234")
    console_page.goto("/t/globex/credits/")
    assert "37.25" in page.inner_text("#balance")
    assert "invoice 2041" in page.inner_text("#ledger")
    console_page.assert_clean()

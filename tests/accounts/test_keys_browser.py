"""The keys page in Chromium: the demo tenant's owner signs in, issues a key, copies it from the
page, calls the gateway with the official openai SDK, rotates it, and both secrets work."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import openai
import pytest

from tests.conftest import UPSTREAM_SECRET
from tests.support.secrets import registry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(mock_upstream):
    from gateway.services import demo_prepare, provider_upsert

    prepared = demo_prepare(mock_url=mock_upstream.url)
    registry.api_key(prepared.raw_key)
    # The test mock insists on a credential (it proves the gateway sends one); the demo's has none.
    provider_upsert(name="mock", kind="mock", base_url=mock_upstream.url + "/v1", credential=UPSTREAM_SECRET)
    return prepared


def ask(base_url: str, key: str, text: str = "Hello") -> str:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=10)
    reply = client.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": f"{text} [mock prompt_tokens=400 tokens=120]"}]
    )
    return reply.choices[0].message.content or ""


def copied_key(console_page) -> str:
    page = console_page.page
    page.click("button[data-copy='#new-key']")
    page.wait_for_selector("button.copied")
    raw = page.evaluate("navigator.clipboard.readText()")
    assert raw == page.input_value("#new-key") and raw.startswith("th-")
    return registry.api_key(raw)


def test_the_owner_issues_copies_uses_and_rotates_a_key(console_page, demo, usage_rows):
    from accounts.models import ApiKey
    from accounts.services import api_key_issue, api_key_revoke
    from billing.budgets import api_key_issue_with_budget

    assert demo.owner_password, "the demo owner is created with a one-time password"
    page = console_page.page
    console_page.sign_in(demo.owner_email, demo.owner_password)
    console_page.goto("/t/demo/keys/")
    page.click("text=Issue a key")
    page.fill("#id_name", "support-bot")
    page.fill("#id_allowed_models", "gpt-4.1, claude-sonnet-4.5")
    page.fill("#id_rpm_limit", "120")
    page.fill("#id_budget", "20")
    page.select_option("#id_budget_period", "month")
    with page.expect_navigation():
        page.click("button:has-text('Issue key')")
    first = copied_key(console_page)
    assert ask(console_page.base_url, first)

    key = ApiKey.objects.get(name="support-bot")
    console_page.goto(f"/t/demo/keys/{key.pk}/")
    page.select_option("#id_grace", "3600")
    with page.expect_navigation():
        page.click("button:has-text('Rotate key')")
    assert page.locator("text=keeps working until").is_visible()
    second = copied_key(console_page)
    assert second != first
    # Both secrets work during the grace period, as the same key.
    assert ask(console_page.base_url, first) and ask(console_page.base_url, second)
    rows = usage_rows(3)
    assert {row.api_key_id for row in rows if row.api_key_id == key.pk} == {key.pk}
    assert sum(1 for row in rows if row.api_key_id == key.pk) == 3

    # A fuller page for the screenshot: a second key with spend, one revoked.
    batch = api_key_issue_with_budget(
        tenant=key.tenant,
        name="nightly-batch",
        tpm_limit=50_000,
        budget_usd=Decimal("5"),
        budget_period="day",
    )
    for _ in range(2):
        ask(console_page.base_url, registry.api_key(batch.raw), "Summarise")
    api_key_revoke(api_key=api_key_issue(tenant=key.tenant, name="old-laptop").api_key)
    usage_rows(5)
    console_page.goto("/t/demo/keys/")
    table = page.locator("table.keys")
    assert "support-bot" in table.inner_text() and "rotating" in table.inner_text()
    support_row = page.locator("tr", has_text="support-bot")
    assert "3" in support_row.locator("td.num").nth(1).inner_text()
    assert first not in page.content() and second not in page.content()
    console_page.screenshot("keys")
    console_page.assert_clean()
    # The demo's grace period is an hour: the old secret is still good at the end of the test.
    assert key.tenant.api_keys.get(pk=key.pk).previous_valid_until > key.created_at + timedelta(minutes=50)

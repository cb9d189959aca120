"""The operator's catalog pages in a real browser (Chromium through Playwright): an operator creates a
provider (its credential never shown back), tests its connection, creates a route with two
deployments, and schedules a price with a future effective date, which the prices page shows as
"next" with its date while the price in force stays as it was. Screenshots for the README."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.services import model_price_set
from gateway.models import Deployment, ModelRoute, Provider
from gateway.services import provider_upsert
from tests.conftest import UPSTREAM_SECRET
from tests.support.operators import PASSWORD, make_operator_users

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_sets_up_a_provider_a_route_and_a_future_price(console_page, mock_upstream):
    make_operator_users()
    provider_upsert(
        name="mock-backup", kind="mock", base_url=mock_upstream.url + "/v1", credential=UPSTREAM_SECRET
    )
    model_price_set(
        model="gpt-4.1",
        input_per_mtok=Decimal(2),
        cached_input_per_mtok=Decimal("0.5"),
        output_per_mtok=Decimal(8),
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
    )
    page = console_page.page
    console_page.sign_in("oona@ops.test", PASSWORD, next_path="/ops/providers/")

    # A provider, with its credential typed once.
    page.click("text=Add a provider")
    page.fill("#id_name", "mock")
    page.select_option("#id_kind", "mock")
    page.fill("#id_base_url", mock_upstream.url + "/v1")
    page.fill("#id_credential", UPSTREAM_SECRET)
    page.fill("#id_read_timeout", "30")
    with page.expect_navigation():
        page.click("text=Add provider")
    assert "Provider mock created." in page.inner_text("main")
    assert f"stored ••••{UPSTREAM_SECRET[-4:]}" in page.inner_text("main")
    assert UPSTREAM_SECRET not in page.content()
    assert page.input_value("#id_credential") == ""

    # A route with two deployments.
    console_page.goto("/ops/routes/")
    page.click("text=Add the first route")
    page.fill("#id_name", "gpt-4.1")
    page.fill("#id_aliases", "gpt4")
    page.select_option("#id_strategy", "least_latency")
    page.fill("#id_context_window", "1047576")
    with page.expect_navigation():
        page.click("text=Add route")
    for provider, priority, weight in (("mock", "0", "3"), ("mock-backup", "1", "1")):
        page.select_option("#id_deployment-provider", label=provider)
        page.fill("#id_deployment-upstream_model", "gpt-4.1")
        page.fill("#id_deployment-priority", priority)
        page.fill("#id_deployment-weight", weight)
        with page.expect_navigation():
            page.click("text=Add deployment")
    rows = page.locator("#deployments tbody tr")
    assert rows.count() == 2
    assert "$2 in · $8 out" in rows.nth(0).inner_text()
    route = ModelRoute.objects.get(name="gpt-4.1")
    assert route.aliases == ["gpt4"] and route.strategy == "least_latency"
    assert Deployment.objects.filter(route=route).count() == 2
    console_page.screenshot("ops-routes")

    # The connection test, through the provider's adapter to the mock.
    provider = Provider.objects.get(name="mock")
    console_page.goto(f"/ops/providers/{provider.pk}/")
    assert page.input_value("#id_model") == "gpt-4.1"
    with page.expect_navigation():
        page.click("button:has-text('Test connection')")
    result = page.inner_text("#connection-result")
    assert "OK" in result and "upstream status 200" in result
    assert UPSTREAM_SECRET not in page.content()
    console_page.goto("/ops/providers/")
    console_page.screenshot("ops-providers")

    # A price from next month: shown as next, with its date; the price in force is unchanged.
    next_month = (datetime.now(UTC) + timedelta(days=31)).replace(hour=0, minute=0, second=0, microsecond=0)
    console_page.goto("/ops/prices/")
    page.fill("#id_model", "gpt-4.1")
    page.fill("#id_effective_from", next_month.strftime("%Y-%m-%dT%H:%M"))
    page.fill("#id_input_per_mtok", "1.5")
    page.fill("#id_cached_input_per_mtok", "0.375")
    page.fill("#id_output_per_mtok", "6")
    with page.expect_navigation():
        page.click("text=Save price")
    history = page.inner_text("#history")
    assert f"Next: $1.5 in · $0.375 cached · $6 out from {next_month:%Y-%m-%d %H:%M}" in history
    assert "In force: $2 in · $0.5 cached · $8 out since 2025-01-01 00:00" in history
    console_page.goto("/ops/prices/")
    row = page.locator("#prices tbody tr").first.inner_text()
    assert "$2 in" in row and f"from {next_month:%Y-%m-%d %H:%M}" in row
    console_page.screenshot("ops-prices")
    console_page.assert_clean()

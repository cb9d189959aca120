"""The billing pages in a real browser (Chromium through Playwright): a budget alert crossing 50 %
shows in the history and on the spend chart with one email; the explorer's CSV reads back equal to
the ledger; every chart draws (non-blank canvas, no JavaScript error, no CSP violation) for an empty
tenant and a seeded one; the screenshots of the README."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db.models import Sum

from accounts.services import api_key_issue
from billing.models import BudgetAlert, UsageRecord
from tests.conftest import UPSTREAM_SECRET
from tests.support.secrets import registry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHARTS = (
    "#chart-spend",
    "#chart-requests",
    "#chart-errors",
    "#chart-tokens",
    "#chart-latency",
    "#chart-speed",
)


@pytest.fixture
def mock_routes(roles, mock_upstream):
    from gateway.services import demo_models_install, provider_upsert

    provider = provider_upsert(
        name="mock",
        kind="mock",
        base_url=mock_upstream.url + "/v1",
        credential=UPSTREAM_SECRET,
        read_timeout=Decimal("1.5"),
    )
    demo_models_install(provider=provider)
    return provider


def all_charts_drawn(console_page) -> None:
    page = console_page.page
    for selector in CHARTS:
        page.wait_for_selector(selector)
        assert console_page.canvas_drawn(selector), selector
    console_page.assert_clean()


def test_every_chart_draws_for_an_empty_tenant_which_is_shown_how_to_start(console_page, roles):
    console_page.sign_in("viewer@acme.test", roles.password, next_path="/t/acme/")
    assert console_page.page.locator("#getting-started").is_visible()
    assert "OPENAI_BASE_URL=" in console_page.page.inner_text("#snippet-env")
    all_charts_drawn(console_page)
    for path in ("/t/acme/budgets/", "/t/acme/credits/", "/t/acme/usage/", "/t/acme/?range=24h"):
        console_page.goto(path)
        console_page.assert_clean()


def test_a_budget_alert_shows_in_the_history_and_on_the_spend_chart_with_one_email(
    console_page, roles, mock_routes, usage_rows, mailoutbox, settings
):
    from openai import OpenAI

    settings.CELERY_TASK_ALWAYS_EAGER = True
    raw = registry.api_key(api_key_issue(tenant=roles.tenant, name="app").raw)
    console_page.sign_in("admin@acme.test", roles.password, next_path="/t/acme/budgets/")
    page = console_page.page
    page.select_option("#id_scope", "tenant")
    page.fill("#id_amount", "0.000001")
    page.select_option("#id_period", "month")
    page.uncheck("#id_hard")  # soft: the calls go through and cross it
    page.fill("#id_thresholds", "50")
    page.fill("#id_emails", "finance@acme.test")
    with page.expect_navigation():
        page.click("text=Save budget")
    assert "Budget saved." in page.inner_text("main")

    client = OpenAI(base_url=console_page.base_url + "/v1", api_key=raw, max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "Hello"}])
    rows = usage_rows(2)
    assert len(rows) == 2 and sum(row.cost for row in rows) > Decimal("0.0000005")
    from billing.alerts import budget_alerts_check

    budget_alerts_check(tenant_id=roles.tenant.pk)  # and once more: still one alert
    assert BudgetAlert.objects.filter(threshold=50).count() == 1
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["finance@acme.test"]

    console_page.goto("/t/acme/budgets/")
    history = page.inner_text("#alert-history")
    assert "50 %" in history and "finance@acme.test" in history and "delivered" in history
    console_page.goto("/t/acme/?range=24h")
    markers = page.evaluate("JSON.parse(document.getElementById('spend-data').textContent).markers")
    assert [marker["text"] for marker in markers] == ["50 % alert"]
    for chart in ("chart-spend", "chart-budget"):
        drawn = page.evaluate(
            f"Chart.getChart(document.getElementById('{chart}')).options.plugins.tollhouseOverlay.markers.length"
        )
        assert drawn == 1, chart
    all_charts_drawn(console_page)
    assert console_page.canvas_drawn("#chart-budget")


def test_the_explorer_exports_its_range_as_csv_equal_to_the_ledger(console_page, roles):
    call_command(
        "usage_seed", "--tenant", "acme", "--rows", "3000", "--days", "6", "--keys", "3", "--models", "3"
    )
    console_page.sign_in("member@acme.test", roles.password, next_path="/t/acme/usage/?range=7d")
    page = console_page.page
    assert page.locator("#usage-rows tbody tr").count() == 50
    with page.expect_navigation():
        page.click("#next-page")
    assert page.locator("#usage-rows tbody tr").count() == 50
    with page.expect_download() as download:
        page.click("#export-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    ledger = UsageRecord.objects.filter(tenant_id=roles.tenant.pk)
    assert len(rows) == ledger.count() == 3000
    assert sum(Decimal(row["cost_usd"]) for row in rows) == ledger.aggregate(total=Sum("cost"))["total"]
    assert len({row["request_id"] for row in rows}) == 3000
    console_page.assert_clean()


def test_every_chart_draws_for_a_seeded_tenant_and_the_screenshots(console_page, roles):
    from billing.models import Budget

    call_command(
        "usage_seed", "--tenant", "acme", "--rows", "40000", "--days", "31", "--keys", "5", "--models", "5"
    )
    Budget.objects.create(tenant=roles.tenant, amount=Decimal(120), thresholds=[50, 80, 100], hard=False)
    console_page.sign_in("owner@acme.test", roles.password, next_path="/t/acme/?range=30d")
    page = console_page.page
    assert not page.locator("#getting-started").count()
    all_charts_drawn(console_page)
    assert console_page.canvas_drawn("#chart-budget")
    console_page.screenshot("overview")
    # The picker redraws latency and speed for one model.
    model = page.locator("#latency-model option").nth(1).get_attribute("value")
    with page.expect_response(lambda response: "latency.json" in response.url):
        page.select_option("#latency-model", model)
    page.wait_for_timeout(200)
    assert console_page.canvas_drawn("#chart-latency")
    for preset in ("24h", "7d"):
        console_page.goto(f"/t/acme/?range={preset}")
        all_charts_drawn(console_page)
    console_page.goto("/t/acme/usage/?range=24h")
    console_page.screenshot("usage-explorer", full_page=False)
    console_page.goto("/t/acme/budgets/")
    console_page.assert_clean()

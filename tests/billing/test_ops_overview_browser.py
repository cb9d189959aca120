"""The operator overview in a real browser (Chromium through Playwright): every chart draws
(non-blank canvas), with no JavaScript error and no CSP violation, for an empty gateway and for a
seeded one with a deployment in cooldown and a reconcile on record; the README's screenshot."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from billing import tasks
from config.redis import close_async_client
from gateway.breaker import CircuitBreaker, Policy
from gateway.models import Deployment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHARTS = (
    "#chart-tenant-spend",
    "#chart-tenant-requests",
    "#chart-model-spend",
    "#chart-model-requests",
    "#chart-provider-errors",
    "#chart-provider-latency",
    "#chart-rate-limited",
    "#chart-alerts",
)


def every_chart_drawn(console_page) -> None:
    page = console_page.page
    for selector in CHARTS:
        page.wait_for_selector(selector)
        assert console_page.canvas_drawn(selector), selector
    console_page.assert_clean()


def test_every_chart_draws_on_an_empty_gateway_which_says_how_to_start(console_page):
    get_user_model().objects.create_superuser("root", "root@ops.test", "pw-root-12345")
    console_page.sign_in("root@ops.test", "pw-root-12345", next_path="/ops/")
    page = console_page.page
    assert page.locator("#ops-getting-started").is_visible()
    assert "manage.py usage_seed" in page.inner_text("#ops-getting-started")
    every_chart_drawn(console_page)
    for preset in ("24h", "30d"):
        console_page.goto(f"/ops/?range={preset}")
        every_chart_drawn(console_page)
    console_page.goto("/ops/audit/")
    assert "Nothing changed yet" in page.inner_text("#audit-rows")
    console_page.assert_clean()


def test_every_chart_draws_on_a_seeded_gateway_and_the_screenshot_shows_it(console_page, world, settings):
    call_command(
        "usage_seed", "--tenant", "acme", "--rows", "6000", "--days", "7", "--keys", "3", "--models", "4"
    )
    call_command(
        "usage_seed", "--tenant", "globex", "--rows", "2500", "--days", "7", "--keys", "2", "--models", "3"
    )
    tasks.usage_reconcile()
    deployment = Deployment.objects.get(route__name="gpt-4.1", provider=world.provider)
    if settings.REDIS_URL:
        breaker = CircuitBreaker(Policy(failures=1, window_us=10_000_000, cooldown_us=120_000_000))

        async def fail() -> None:
            try:
                await breaker.record(deployment.pk, ok=False)
            finally:
                await close_async_client()

        # Playwright's loop runs in this thread: the breaker gets a loop of its own in another.
        opener = threading.Thread(target=asyncio.run, args=(fail(),))
        opener.start()
        opener.join()

    console_page.sign_in("op@example.com", "pw-operator-1", next_path="/ops/?range=7d")
    page = console_page.page
    every_chart_drawn(console_page)
    assert page.locator("#ops-getting-started").count() == 0
    legend = page.evaluate(
        "Chart.getChart(document.getElementById('chart-tenant-spend')).data.datasets.map(d => d.label)"
    )
    assert sorted(legend) == ["Acme", "Globex"]
    assert "agree" in page.inner_text("#reconcile")
    if settings.REDIS_URL:
        assert "gpt-4.1 → mock/gpt-4.1" in page.inner_text("#cooldowns")
    path = console_page.screenshot("ops-overview")
    assert path.stat().st_size > 50_000
    console_page.goto("/ops/?range=24h")
    every_chart_drawn(console_page)

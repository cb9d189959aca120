"""The operator overview, /ops/ (billing.views_ops_overview): only operators get in (a superuser, or
staff in the operators group; everyone else a 404); spend and requests by tenant and model, error
rates, latencies and upstream 429s by provider and deployment, from real calls through the gateway
and the usage pipeline; deployments in cooldown from the real breaker in Redis; the pipeline's lag
and dead letters; the last reconcile, recorded by the real task; budget alerts sent."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client

from accounts.permissions import OPERATOR_GROUP
from billing import tasks
from billing.budgets import budget_set
from billing.models import BudgetAlert, ReconcileRun, UsageHourlyDeployment
from billing.reconcile import usage_reconcile
from billing.usage import stream_key, usage_drain
from config.redis import close_async_client, sync_client
from gateway.breaker import CircuitBreaker, Policy
from gateway.models import Deployment

needs_redis = pytest.mark.skipif(
    not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
)

CHARTS = (
    "tenant-spend-data",
    "tenant-requests-data",
    "model-spend-data",
    "model-requests-data",
    "provider-errors-data",
    "provider-latency-data",
    "rate-limited-data",
    "alerts-data",
)


def staff(name: str, *, operator: bool) -> Any:
    user = get_user_model().objects.create_user(name, f"{name}@ops.test", "pw-staff-12345", is_staff=True)
    if operator:
        user.groups.add(Group.objects.get(name=OPERATOR_GROUP))
    return user


def client_for(user: Any) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def chart(response: Any, name: str) -> dict[str, Any]:
    html = response.content.decode()
    start = html.index(f'id="{name}"')
    start = html.index(">", start) + 1
    return json.loads(html[start : html.index("</script>", start)])


# --- who gets in ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_lets_in_a_superuser_and_staff_of_the_operators_group_only(roles):
    superuser = get_user_model().objects.create_superuser("root", "root@ops.test", "pw-root-12345")
    visitors = {
        "superuser": (superuser, 200),
        "staff in the operators group": (staff("oper", operator=True), 200),
        "staff outside the group": (staff("clerk", operator=False), 404),
        "tenant owner": (roles.owner, 404),
        "tenant admin": (roles.admin, 404),
        "tenant viewer": (roles.viewer, 404),
        "another tenant's owner": (roles.outsider, 404),
        "anonymous": (None, 404),
    }
    for who, (user, status) in visitors.items():
        response = client_for(user).get("/ops/")
        assert response.status_code == status, who
        if status == 404:
            assert b"Gateway overview" not in response.content, who
        else:
            assert b"Gateway overview" in response.content and response["Cache-Control"].startswith(
                "max-age=0"
            )


@pytest.mark.django_db
def test_it_teaches_what_to_do_on_an_empty_gateway_and_draws_every_chart_empty(admin_client):
    response = admin_client.get("/ops/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "No calls in this range" in html and "manage.py usage_seed" in html
    assert "No reconcile has run yet" in html and "manage.py usage_reconcile" in html
    assert "Every breaker is closed" in html
    for name in CHARTS:
        spec = chart(response, name)
        assert spec["unit"] and spec["empty"] and spec["labels"], name


@pytest.mark.django_db
def test_a_bad_range_is_an_inline_error_on_a_page_of_the_last_7_days(admin_client):
    for query in ("range=1y", "range=custom&first=2026-02-01&last=2026-01-01", "range=custom&first=nonsense"):
        response = admin_client.get(f"/ops/?{query}")
        assert response.status_code == 200, query
        assert response.context["span"].preset == "7d"
        assert b"Showing the last 7 days." in response.content, query


@pytest.mark.django_db
def test_the_nav_shows_the_operator_sections_that_exist(admin_client):
    response = admin_client.get("/ops/")
    nav = response.context["console"]["nav"]
    assert nav[0] == {"label": "Overview", "url": "/ops/", "active": True}
    assert "Audit log" in [item["label"] for item in nav]


# --- what it shows, from real calls -----------------------------------------------------------------


def call(url: str, key: str, text: str = "Hello", model: str = "gpt-4.1") -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"{text} [mock prompt_tokens=40 tokens=10]"}],
    }
    return httpx.post(
        url + "/v1/chat/completions",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=15,
    )


@needs_redis
def test_it_shows_spend_requests_errors_latency_and_upstream_429s_of_real_calls(
    world, gateway_server, usage_rows, client, settings
):
    settings.TOLLHOUSE_UPSTREAM_BACKOFF_SECONDS = 0.01
    for _ in range(3):
        assert call(gateway_server, world.key).status_code == 200
    assert call(gateway_server, world.globex_key, model="deepseek-v3.2").status_code == 200
    # The upstream refuses the first try with 429; the executor's retry gets the answer.
    refused_once = call(
        gateway_server, world.key, "[mock status=429 fault_times=1 fault_key=ops-429 ttft_ms=0]"
    )
    assert refused_once.status_code == 200, refused_once.text
    # An upstream that keeps failing: the client gets the error after the retries.
    failing = call(gateway_server, world.globex_key, "[mock status=500 ttft_ms=0]")
    assert failing.status_code >= 500
    rows = usage_rows(6)
    assert len(rows) == 6
    deployment = Deployment.objects.get(route__name="gpt-4.1", provider=world.provider)

    client.force_login(world.operator)
    response = client.get("/ops/?range=24h")
    assert response.status_code == 200
    context = response.context
    assert context["requests"] == 6
    assert context["total_cost"] == sum((row.cost for row in rows), start=Decimal(0)) > 0
    tenants = {name: (n, usd) for name, n, usd in context["tenants"].totals}
    assert tenants["Acme"][0] == 4 and tenants["Globex"][0] == 2
    assert tenants["Acme"][1] == sum((r.cost for r in rows if r.tenant_id == world.acme.pk), start=Decimal(0))
    models = {name: n for name, n, _ in context["models"].totals}
    assert models == {"gpt-4.1": 5, "deepseek-v3.2": 1}

    # Spend as exact decimal text, per tenant, in the hour of the calls.
    spend = chart(response, "tenant-spend-data")
    acme = next(series for series in spend["series"] if series["label"] == "Acme")
    assert [Decimal(v) for v in acme["data"] if v != "0"] == [tenants["Acme"][1]]
    assert all(isinstance(v, str) for v in acme["data"])

    health = context["health"]
    (mock,) = health.providers
    assert mock.name == "mock" and mock.requests == 6 and mock.errors == 1 and mock.upstream_errors == 1
    assert mock.p50 is not None and mock.p50 <= mock.p95 <= mock.p99
    served = next(d for d in health.deployments if d.deployment_id == deployment.pk)
    # 3 + 2 (a 429, then the answer) + 3 (500, and two retries of it) attempts; the 429 and the 500s failed.
    assert served.rate_limited == 1 and served.attempts == 8 and served.failures == 4
    assert served.state == "failing"  # a run of 3 failures: not enough to open its breaker (5)
    assert str(deployment.route.name) in served.name and "mock/gpt-4.1" in served.name
    # The route's strategy and how it split the route's calls (the one deployment served them all).
    assert (served.route, served.strategy, served.share) == ("gpt-4.1", "priority", 100.0)
    limited = chart(response, "rate-limited-data")
    assert [sum(series["data"]) for series in limited["series"]] == [1]
    errors = chart(response, "provider-errors-data")
    assert [series["label"] for series in errors["series"]] == ["mock"]
    html = response.content.decode()
    assert "Upstream 429s" in html and "cooling down" not in html

    # The deployment rollup agrees with the raw rows, as every other rollup does.
    assert usage_reconcile(fix=False) == []


def open_breaker(deployment_id: int, *, cooldown_s: float = 60.0) -> None:
    """Open a deployment's breaker through the real breaker, in Redis (one failure opens it)."""
    breaker = CircuitBreaker(
        Policy(failures=1, window_us=10_000_000, cooldown_us=int(cooldown_s * 1_000_000))
    )

    async def fail() -> None:
        try:
            assert await breaker.allow(deployment_id)
            await breaker.record(deployment_id, ok=False)
        finally:
            await close_async_client()

    asyncio.run(fail())


@needs_redis
def test_it_lists_the_deployments_in_cooldown_from_the_breakers_in_redis(world, client):
    deployment = Deployment.objects.get(route__name="gpt-4.1", provider=world.provider)
    probing = Deployment.objects.get(route__name="deepseek-v3.2", provider=world.provider)
    open_breaker(deployment.pk)
    open_breaker(probing.pk, cooldown_s=0.001)  # its cooldown is over: the next call is the probe
    client.force_login(world.operator)
    response = client.get("/ops/")
    cooldowns = {c.breaker.deployment_id: c for c in response.context["breakers"].cooldowns}
    assert set(cooldowns) == {deployment.pk, probing.pk}
    assert cooldowns[deployment.pk].breaker.state == "open"
    assert 50 < cooldowns[deployment.pk].breaker.remaining_seconds <= 60
    assert cooldowns[probing.pk].breaker.state == "half_open"
    html = response.content.decode()
    section = html[html.index('id="cooldowns"') :]
    assert "gpt-4.1 → mock/gpt-4.1" in section and "half-open" in section and "open</span>" in section
    assert '<div class="value" id="stat-cooldown">2</div>' in html


@needs_redis
def test_it_shows_the_pipeline_lag_and_the_dead_letters(world, gateway_server, client):
    client.force_login(world.operator)
    assert call(gateway_server, world.key).status_code == 200  # waits in the stream: not drained
    state = client.get("/ops/").context["pipeline"]["state"]
    assert state.length == 1 and state.unread == 1 and state.oldest_age_seconds is not None
    assert state.dead_letters == 0
    sync_client().xadd(stream_key(), {b"e": b"not json {"})
    usage_drain(claim_idle_ms=600_000)
    response = client.get("/ops/")
    state = response.context["pipeline"]["state"]
    assert state.length == 0 and state.oldest_age_seconds is None and state.dead_letters == 1
    assert "events set aside in <code>usage:dead</code>" in response.content.decode()


@needs_redis
def test_it_shows_the_last_reconcile_as_the_daily_task_recorded_it(world, gateway_server, usage_rows, client):
    client.force_login(world.operator)
    assert call(gateway_server, world.key).status_code == 200
    usage_rows(1)
    assert tasks.usage_reconcile() == 0
    response = client.get("/ops/")
    run = response.context["reconcile"]
    assert run.source == "task" and run.ok
    assert "agree</span>" in response.content.decode()

    # A rollup that drifted (by a hand): the next run finds it, and the page quotes it.
    UsageHourlyDeployment.objects.filter(provider="mock").update(requests=7)
    assert tasks.usage_reconcile() == 1
    assert ReconcileRun.objects.count() == 2
    response = client.get("/ops/")
    html = response.content.decode()
    assert "1 difference</span>" in html
    lines = html[html.index('id="reconcile-lines"') :]
    assert "deployment rollup" in lines and "requests raw 1 rollup 7" in lines


@needs_redis
def test_it_counts_the_budget_alerts_sent_across_tenants(world, gateway_server, usage_rows, client):
    from billing.alerts import budget_alerts_check

    budget_set(
        tenant=world.acme, usd=Decimal("0.000001"), period="month", hard=False, thresholds=[50], emails=[]
    )
    assert call(gateway_server, world.key).status_code == 200
    usage_rows(1)
    budget_alerts_check(tenant_id=world.acme.pk)
    assert BudgetAlert.objects.count() == 1
    client.force_login(world.operator)
    response = client.get("/ops/?range=7d")
    assert response.context["alert_total"] == 1
    assert sum(chart(response, "alerts-data")["series"][0]["data"]) == 1
    (alert,) = response.context["alerts"]
    assert alert.tenant == "Acme" and alert.threshold == 50
    html = response.content.decode()
    assert "Latest budget alerts" in html and "monthly $0.000001" in html


@pytest.mark.django_db
def test_each_deployment_shows_its_routes_strategy_and_its_share_of_the_routes_calls(world, client):
    from django.utils import timezone

    from gateway.models import ModelRoute

    route = ModelRoute.objects.create(name="split-route", strategy=ModelRoute.Strategy.LEAST_LATENCY)
    fast = Deployment.objects.create(route=route, provider=world.provider, upstream_model="gpt-4.1", weight=1)
    slow = Deployment.objects.create(route=route, provider=world.provider, upstream_model="gpt-4.1-mini")
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    for deployment, calls in ((fast, 30), (slow, 10)):
        UsageHourlyDeployment.objects.create(
            hour=hour, provider="mock", deployment_id=deployment.pk, requests=calls, upstream_attempts=calls
        )
    client.force_login(world.operator)
    response = client.get("/ops/?range=24h")
    assert response.status_code == 200
    rows = {row.deployment_id: row for row in response.context["health"].deployments}
    assert (rows[fast.pk].strategy, rows[fast.pk].share) == ("least latency", 75.0)
    assert (rows[slow.pk].strategy, rows[slow.pk].share) == ("least latency", 25.0)
    html = response.content.decode()
    assert "least latency" in html and "75.0 %" in html and "25.0 %" in html

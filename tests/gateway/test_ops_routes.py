"""/ops/routes/: routes with aliases (one model name, one route), strategies and fallbacks (existing,
no loop), and their deployments inline (add, edit, disable, delete), every change audited and heard
by every gateway process."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import AuditEntry
from billing.services import model_price_set
from gateway.models import Deployment, ModelRoute, Provider
from gateway.services import deployment_upsert, provider_upsert, route_upsert
from tests.conftest import UPSTREAM_SECRET
from tests.support.operators import NOT_OPERATORS, OPERATORS, fast_passwords, operator_clients
from tests.support.secrets import registry
from tests.support.snapshot import db_snapshot
from tests.support.texts import MODEL_ISH

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]
__all__ = ["fast_passwords"]  # a fixture, used by name


@pytest.fixture
def clients(roles: Any) -> dict[str, Any]:
    return operator_clients(roles)


@pytest.fixture
def provider() -> Provider:
    return provider_upsert(name="mock", kind="mock", base_url="http://127.0.0.1:9/v1")


def route_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "gpt-4.1",
        "aliases": "gpt4, gpt-4-latest",
        "strategy": "priority",
        "max_output_tokens": "4096",
        "context_window": "",
        "fallbacks": "",
        "enabled": "on",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def deployment_form(provider: Provider, **overrides: Any) -> dict[str, Any]:
    data = {
        "deployment-provider": str(provider.pk),
        "deployment-upstream_model": "gpt-4.1-2025-04-14",
        "deployment-priority": "0",
        "deployment-weight": "1",
        "deployment-rpm_limit": "",
        "deployment-tpm_limit": "",
        "deployment-enabled": "on",
    }
    data.update({f"deployment-{key}": value for key, value in overrides.items()})
    return data


# -- access -------------------------------------------------------------------------------------------


def _pages(
    route: ModelRoute, deployment: Deployment, provider: Provider
) -> list[tuple[str, str, dict[str, Any]]]:
    base = f"/ops/routes/{route.pk}/"
    one = f"{base}deployments/{deployment.pk}/"
    plain_deployment = {
        key.removeprefix("deployment-"): value for key, value in deployment_form(provider).items()
    }
    return [
        ("get", "/ops/routes/", {}),
        ("get", "/ops/routes/new/", {}),
        ("post", "/ops/routes/new/", route_form(name="made-by-visitor", aliases="")),
        ("get", base, {}),
        ("post", base, route_form(name=route.name, aliases="stolen")),
        ("post", base + "deployments/", deployment_form(provider)),
        ("get", one, {}),
        ("post", one, plain_deployment),
        ("post", one + "toggle/", {}),
        ("post", one + "delete/", {}),
    ]


@pytest.mark.parametrize("way", NOT_OPERATORS)
def test_it_is_a_404_for_everyone_but_operators_and_changes_nothing(clients, provider, way):
    route = route_upsert(name="gpt-4.1")
    deployment = deployment_upsert(route=route, provider=provider, upstream_model="gpt-4.1")
    before = db_snapshot()
    for method, url, data in _pages(route, deployment, provider):
        assert getattr(clients[way], method)(url, data).status_code == 404, (way, method, url)
    assert db_snapshot() == before


@pytest.mark.parametrize("way", OPERATORS)
def test_operators_reach_every_page_and_action(clients, provider, way):
    route = route_upsert(name="gpt-4.1")
    deployment = deployment_upsert(route=route, provider=provider, upstream_model="gpt-4.1")
    expected = [200, 200, 302, 200, 302, 302, 200, 302, 302, 302]
    got = [
        getattr(clients[way], m)(url, data).status_code
        for m, url, data in _pages(route, deployment, provider)
    ]
    assert got == expected
    assert not Deployment.objects.filter(pk=deployment.pk).exists()  # the last action deleted it


# -- routes -------------------------------------------------------------------------------------------


def test_an_operator_creates_a_route_with_two_deployments(clients, provider):
    other = provider_upsert(name="backup", kind="openai", base_url="https://api.openai.com/v1")
    client = clients["operator"]
    response = client.post("/ops/routes/new/", route_form(strategy="least_latency", context_window="1047576"))
    assert response.status_code == 302
    route = ModelRoute.objects.get(name="gpt-4.1")
    assert route.aliases == ["gpt4", "gpt-4-latest"] and route.strategy == "least_latency"
    assert route.context_window == 1047576
    url = f"/ops/routes/{route.pk}/"
    assert client.post(url + "deployments/", deployment_form(provider, rpm_limit="600")).status_code == 302
    assert (
        client.post(url + "deployments/", deployment_form(other, priority="1", weight="3")).status_code == 302
    )
    rows = list(
        route.deployments.order_by("priority").values_list(
            "provider__name", "priority", "weight", "rpm_limit"
        )
    )
    assert rows == [("mock", 0, 1, 600), ("backup", 1, 3, None)]
    model_price_set(
        model="gpt-4.1-2025-04-14",
        input_per_mtok=Decimal(2),
        cached_input_per_mtok=Decimal("0.5"),
        output_per_mtok=Decimal(8),
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
    )
    listing = client.get("/ops/routes/").content.decode()
    assert "gpt4, gpt-4-latest" in listing and "Least latency" in listing
    assert 'mock/gpt-4.1-2025-04-14</span>: <span class="nowrap">$2 in · $8 out</span>' in listing
    actions = list(AuditEntry.objects.filter(tenant=None).order_by("id").values_list("action", flat=True))
    assert actions == ["provider.create", "provider.create", "route.create", "deployment.create",
                       "deployment.create", "price.create"]  # fmt: skip


@pytest.mark.parametrize(
    ("existing", "overrides", "field", "message"),
    [
        (
            {"name": "gpt-4.1-mini", "aliases": ["gpt4"]},
            {},
            "aliases",
            "already a name or alias of route 'gpt-4.1-mini'",
        ),
        ({"name": "gpt4"}, {}, "aliases", "already a name or alias of route 'gpt4'"),
        (
            {"name": "other", "aliases": ["gpt-4.1"]},
            {"aliases": ""},
            "name",
            "already a name or alias of route 'other'",
        ),
        (None, {"aliases": "gpt4, gpt4"}, "aliases", "listed twice"),
        (None, {"aliases": "bad name!"}, "aliases", "'name!' is not a model name"),
        (None, {"fallbacks": "nowhere"}, "fallbacks", "'nowhere' is not a route"),
        (None, {"fallbacks": "gpt4"}, "fallbacks", "cannot fall back to itself"),
        (None, {"max_output_tokens": "0"}, "max_output_tokens", "greater than or equal to 1"),
        (None, {"strategy": "random"}, "strategy", "Select a valid choice"),
    ],
)
def test_a_route_breaking_the_catalogs_rules_is_refused_inline(clients, existing, overrides, field, message):
    if existing:
        route_upsert(name=existing["name"], aliases=existing.get("aliases", []))
    before = db_snapshot()
    response = clients["operator"].post("/ops/routes/new/", route_form(**overrides))
    assert response.status_code == 400
    assert any(message in error for error in response.context["form"].errors[field]), response.context[
        "form"
    ].errors
    assert db_snapshot() == before


def test_fallbacks_must_not_loop(clients):
    a = route_upsert(name="model-a")
    route_upsert(name="model-b", aliases=["b"])
    client = clients["operator"]
    assert (
        client.post(f"/ops/routes/{a.pk}/", route_form(name="model-a", aliases="", fallbacks="b")).status_code
        == 302
    )
    b = ModelRoute.objects.get(name="model-b")
    response = client.post(
        f"/ops/routes/{b.pk}/", route_form(name="model-b", aliases="b", fallbacks="model-a")
    )
    assert response.status_code == 400
    assert response.context["form"].errors["fallbacks"] == [
        "These fallbacks make a loop: model-b → model-a → model-b."
    ]
    b.refresh_from_db()
    assert b.fallbacks == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.one_of(MODEL_ISH, st.text(st.characters(exclude_categories=("Cs",)), max_size=50)),
    aliases=st.one_of(MODEL_ISH, st.text(st.characters(exclude_categories=("Cs",)), max_size=50)),
    tokens=st.one_of(st.integers(-5, 10**12).map(str), st.text(max_size=8)),
)
def test_hostile_route_input_never_500s(clients, name, aliases, tokens):
    response = clients["operator"].post(
        "/ops/routes/new/", route_form(name=name, aliases=aliases, max_output_tokens=tokens, fallbacks="")
    )
    assert response.status_code in (302, 400)
    for route in ModelRoute.objects.all():
        route.full_clean()
    ModelRoute.objects.all().delete()


# -- deployments --------------------------------------------------------------------------------------


def test_deployments_are_edited_disabled_and_deleted_inline(clients, provider):
    client = clients["superuser"]
    route = route_upsert(name="gpt-4.1")
    deployment = deployment_upsert(route=route, provider=provider, upstream_model="gpt-4.1")
    one = f"/ops/routes/{route.pk}/deployments/{deployment.pk}/"
    edit = {"provider": provider.pk, "upstream_model": "gpt-4.1-x", "priority": "2", "weight": "5",
            "rpm_limit": "10", "tpm_limit": "1000", "enabled": "on"}  # fmt: skip
    assert client.post(one, edit).status_code == 302
    deployment.refresh_from_db()
    assert (deployment.upstream_model, deployment.weight, deployment.tpm_limit) == ("gpt-4.1-x", 5, 1000)
    bad = client.post(one, {**edit, "weight": "-1", "rpm_limit": "x"})
    assert bad.status_code == 400 and {"weight", "rpm_limit"} <= set(bad.context["form"].errors)
    assert client.post(one + "toggle/").status_code == 302
    deployment.refresh_from_db()
    assert deployment.enabled is False
    page = client.get(f"/ops/routes/{route.pk}/").content.decode()
    assert "disabled" in page and "Enable</button>" in page
    refused = client.post(
        f"/ops/routes/{route.pk}/deployments/", deployment_form(provider, upstream_model="")
    )
    assert refused.status_code == 400 and "This field is required." in refused.content.decode()
    assert client.post(one + "delete/").status_code == 302
    assert not Deployment.objects.exists()
    entries = list(AuditEntry.objects.filter(object_type="gateway.deployment").order_by("id"))
    assert [e.action for e in entries][-3:] == ["deployment.update", "deployment.update", "deployment.delete"]
    assert entries[-2].before["enabled"] is True and entries[-2].after["enabled"] is False
    assert entries[-1].after is None and entries[-1].before["upstream_model"] == "gpt-4.1-x"


def test_another_routes_deployment_is_a_404(clients, provider):
    route = route_upsert(name="gpt-4.1")
    other = route_upsert(name="other")
    deployment = deployment_upsert(route=other, provider=provider, upstream_model="m")
    assert (
        clients["operator"].post(f"/ops/routes/{route.pk}/deployments/{deployment.pk}/delete/").status_code
        == 404
    )
    assert Deployment.objects.filter(pk=deployment.pk).exists()


# -- every gateway process hears of a change ----------------------------------------------------------


def test_a_route_change_reaches_a_second_gateway_process(clients, mock_upstream, transactional_db):
    from django.conf import settings as django_settings

    from accounts.models import Plan
    from accounts.services import api_key_issue, tenant_create
    from tests.support.process import GatewayProcess, subprocess_env

    provider = provider_upsert(
        name="mock", kind="mock", base_url=mock_upstream.url + "/v1", credential=UPSTREAM_SECRET
    )
    route = route_upsert(name="gpt-4.1")
    deployment_upsert(route=route, provider=provider, upstream_model="gpt-4.1")
    tenant = tenant_create(name="Calls", slug="calls", plan=Plan.objects.create(name="calls"))
    key = registry.api_key(api_key_issue(tenant=tenant, name="k").raw)
    env = subprocess_env(
        settings_dict=django_settings.DATABASES["default"], redis_url=django_settings.REDIS_URL
    )
    with GatewayProcess(env=env) as gateway:

        def ask(model: str) -> int:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
            headers = {"Authorization": f"Bearer {key}"}
            return httpx.post(
                f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=10
            ).status_code

        assert ask("gpt-4.1") == 200 and ask("gpt4o-alias") == 404
        response = clients["operator"].post(f"/ops/routes/{route.pk}/", route_form(aliases="gpt4o-alias"))
        assert response.status_code == 302
        deadline = time.monotonic() + 5
        while ask("gpt4o-alias") != 200:
            assert time.monotonic() < deadline, "the second process never heard of the new alias"
            time.sleep(0.1)


def test_deployments_in_cooldown_are_shown_as_every_process_sees_them(clients, provider):
    from config.redis import sync_client
    from gateway.breaker import open_key

    route = route_upsert(name="gpt-4.1")
    cooling = deployment_upsert(route=route, provider=provider, upstream_model="a")
    other = provider_upsert(name="other", kind="mock", base_url="http://127.0.0.1:9/v1")
    probing = deployment_upsert(route=route, provider=other, upstream_model="b")
    redis = sync_client()
    seconds, micros = redis.time()
    now_us = int(seconds) * 1_000_000 + int(micros)
    # What gateway/breaker.py's scripts write: the moment each breaker's cooldown ends, in µs.
    redis.hset(
        open_key(), mapping={str(cooling.pk): str(now_us + 90_000_000), str(probing.pk): str(now_us - 1)}
    )
    page = clients["operator"].get(f"/ops/routes/{route.pk}/").content.decode()
    assert "cooling down, 89 s" in page or "cooling down, 90 s" in page
    assert '<span class="badge warn">probing</span>' in page
    listing = clients["operator"].get("/ops/providers/").content.decode()
    assert listing.count("1 cooling down</span>") == 1 and listing.count("1 probing</span>") == 1

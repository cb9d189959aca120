"""Routing around deployments that cannot take a call (issue 16): one at its rpm cap is skipped, not
refused; every one at its cap is a 429 with the soonest Retry-After; every one in cooldown is a
503; in each client's dialect. And cheapest follows the price in force. The official SDKs against
the in-process gateway, the mock provider over real HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
import time_machine

from billing.services import model_price_set
from gateway.services import provider_upsert
from tests.conftest import UPSTREAM_SECRET
from tests.support.process import free_port
from tests.support.routing import Spec, strategy_route, unique

pytestmark = pytest.mark.django_db(transaction=True)


def openai_client(gateway_server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_server + "/v1", api_key=key, max_retries=0, timeout=20)


def anthropic_client(gateway_server: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway_server, api_key=key, max_retries=0, timeout=20)


def chat(client: openai.OpenAI, model: str) -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi [mock tokens=2]"}], max_tokens=8
    )


def test_a_deployment_at_its_rpm_cap_is_skipped_not_refused(gateway_server, world, usage_rows):
    capped, spare = unique("cap-a"), unique("cap-b")
    route, (first, second) = strategy_route(
        strategy="priority", provider=world.provider, specs=[Spec(capped, rpm=1), Spec(spare, priority=1)]
    )
    client = openai_client(gateway_server, world.key)
    assert [chat(client, route.name).model for _ in range(3)] == [capped, spare, spare]
    rows = usage_rows(3)
    assert [(r.status, r.deployment_id, r.route_strategy) for r in rows] == [
        (200, first.id, "priority"),
        (200, second.id, "priority"),
        (200, second.id, "priority"),
    ]


def test_every_deployment_at_its_cap_is_a_429_with_the_soonest_retry_after(gateway_server, world, usage_rows):
    route, _ = strategy_route(
        strategy="priority",
        provider=world.provider,
        # In the route's order, the first frees up last: a minute for 1 rpm, 30 s for 2 rpm.
        specs=[Spec(unique("slowest"), rpm=1), Spec(unique("soonest"), rpm=2, priority=1)],
    )
    client = openai_client(gateway_server, world.key)
    for _ in range(3):
        chat(client, route.name)
    with pytest.raises(openai.RateLimitError) as refused:
        chat(client, route.name)
    assert refused.value.response.headers["retry-after"] == "30"
    error = refused.value.response.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert "every upstream deployment of this model" in error["message"]
    assert "try again in 30s" in error["message"]

    with pytest.raises(anthropic.RateLimitError) as refused_too:
        anthropic_client(gateway_server, world.key).messages.create(
            model=route.name, max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
        )
    assert refused_too.value.response.headers["retry-after"] == "30"
    assert refused_too.value.response.json()["type"] == "error"
    assert refused_too.value.response.json()["error"]["type"] == "rate_limit_error"
    rows = usage_rows(5)
    assert [r.status for r in rows] == [200, 200, 200, 429, 429]


def test_every_deployment_in_cooldown_is_a_503(gateway_server, world, usage_rows, settings):
    settings.TOLLHOUSE_BREAKER_FAILURES = 1
    settings.TOLLHOUSE_BREAKER_COOLDOWN_SECONDS = 30.0
    settings.TOLLHOUSE_UPSTREAM_RETRIES = 0
    down = provider_upsert(
        name=f"down-{uuid.uuid4().hex[:6]}",
        kind="mock",
        base_url=f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
        credential=UPSTREAM_SECRET,
    )
    route, (first, second) = strategy_route(
        strategy="least_latency", provider=down, specs=[Spec(unique("down-a")), Spec(unique("down-b"))]
    )
    client = openai_client(gateway_server, world.key)
    with pytest.raises(openai.APIStatusError) as failed:
        chat(client, route.name)
    assert failed.value.status_code in (502, 504)  # both tried, both failed: each breaker opens

    with pytest.raises(openai.APIStatusError) as cooling:
        chat(client, route.name)
    assert cooling.value.status_code == 503
    assert 28 <= int(cooling.value.response.headers["retry-after"]) <= 30
    assert cooling.value.response.json()["error"]["code"] == "deployments_unavailable"
    with pytest.raises(anthropic.APIStatusError) as cooling_too:
        anthropic_client(gateway_server, world.key).messages.create(
            model=route.name, max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
        )
    assert cooling_too.value.status_code == 503
    assert cooling_too.value.response.json()["type"] == "error"
    rows = usage_rows(3)
    assert [r.status for r in rows][1:] == [503, 503]
    assert rows[1].error_type == "deployments_unavailable"
    assert sorted(a["deployment_id"] for a in rows[1].attempt_log) == sorted([first.id, second.id])
    assert {a["error_type"] for a in rows[1].attempt_log} == {"circuit_open"}


def test_cheapest_picks_the_cheaper_deployment_and_switches_when_a_new_price_takes_effect(
    gateway_server, world, usage_rows
):
    now = datetime.now(tz=UTC)
    cheap, later = unique("cheap-now"), unique("cheap-later")
    since = now - timedelta(days=30)
    model_price_set(
        model=cheap,
        input_per_mtok=Decimal(1),
        cached_input_per_mtok=Decimal("0.1"),
        output_per_mtok=Decimal(4),
        effective_from=since,
    )
    model_price_set(
        model=later,
        input_per_mtok=Decimal(3),
        cached_input_per_mtok=Decimal("0.3"),
        output_per_mtok=Decimal(15),
        effective_from=since,
    )
    # A price cut that takes effect tomorrow.
    model_price_set(
        model=later,
        input_per_mtok=Decimal("0.5"),
        cached_input_per_mtok=Decimal("0.05"),
        output_per_mtok=Decimal(2),
        effective_from=now + timedelta(days=1),
    )
    route, (first, second) = strategy_route(
        strategy="cheapest", provider=world.provider, specs=[Spec(later, weight=100), Spec(cheap)]
    )
    client = openai_client(gateway_server, world.key)
    assert {chat(client, route.name).model for _ in range(5)} == {cheap}  # weight does not outbid price
    with time_machine.travel(now + timedelta(days=2), tick=True):
        assert {chat(client, route.name).model for _ in range(5)} == {later}
    rows = usage_rows(10)
    assert [r.deployment_id for r in rows] == [second.id] * 5 + [first.id] * 5
    assert {r.route_strategy for r in rows} == {"cheapest"}
    # Billed at the price in force when it served: $0.5 / $2 per million.
    prompt, completion = rows[-1].prompt_tokens, rows[-1].completion_tokens
    assert rows[-1].cost == (Decimal(prompt) * Decimal("0.5") + Decimal(completion) * 2) / 1_000_000

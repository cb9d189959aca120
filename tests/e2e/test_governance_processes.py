"""Governance across processes: two `manage.py serve` processes share one Redis, and every limit and
budget holds exactly across them (DESIGN §3 step 4, §6)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Tenant
from accounts.services import api_key_issue, tenant_save
from billing.models import UsageRecord
from billing.pots import budget_pot, credit_pot
from billing.pricing import dollars_to_nanos
from billing.usage import usage_drain
from config.redis import redis_key, sync_client
from tests.support.process import GatewayProcess, subprocess_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
    ),
]


def ask(content: str = "Hello there", **extra: Any) -> bytes:
    return orjson.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": content}], **extra})


async def burst(
    urls: list[str], keys: list[str], count: int, body: bytes, **headers: str
) -> list[httpx.Response]:
    """`count` calls at once, spread over every gateway and every key."""
    limits = httpx.Limits(max_connections=count + 10)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            return await client.post(
                urls[i % len(urls)] + "/v1/chat/completions",
                content=body,
                headers={
                    "Authorization": f"Bearer {keys[i % len(keys)]}",
                    "Content-Type": "application/json",
                    **headers,
                },
            )

        return list(await asyncio.gather(*(one(i) for i in range(count))))


@pytest.fixture(scope="module")
def _processes(django_db_setup: Any) -> Any:
    env = subprocess_env(settings_dict=connection.settings_dict, redis_url=settings.REDIS_URL)
    with GatewayProcess(env=env) as one, GatewayProcess(env=env) as two:
        yield [one.url, two.url]
        for process in (one, two):
            assert "Traceback" not in process.log(), process.log()
            print(process.log())


@pytest.fixture
def gateways(world: Any, _processes: list[str]) -> list[str]:
    # Each test makes its own keys and routes; the processes hear of them over Redis pub/sub, and
    # are told to forget what earlier tests made (their rows are gone).
    from config.changes import publish

    publish([{"kind": "all"}])
    time.sleep(0.2)
    return _processes


def test_a_key_limit_admits_exactly_n_of_a_burst_across_two_processes(world, gateways):
    n = 7
    key = api_key_issue(tenant=world.acme, name="limited", rpm_limit=n).raw
    responses = asyncio.run(burst(gateways, [key], 3 * n, ask()))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: n, 429: 2 * n}, statuses
    for response in responses:
        if response.status_code == 429:
            error = response.json()["error"]
            assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
            assert "requests per min (RPM): Limit 7" in error["message"]
            assert int(response.headers["retry-after"]) >= 1
            assert response.headers["x-ratelimit-limit-requests"] == str(n)
            assert response.headers["x-ratelimit-remaining-requests"] == "0"
        else:
            assert response.headers["x-ratelimit-limit-requests"] == str(n)
    remaining = sorted(
        int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(n))


def test_a_tenant_limit_holds_across_two_keys_and_two_processes(world, gateways):
    n = 6
    world.acme.rpm_limit = n
    tenant_save(tenant=world.acme)
    keys = [api_key_issue(tenant=world.acme, name=f"k{i}").raw for i in range(2)]
    responses = asyncio.run(burst(gateways, keys, 3 * n, ask()))
    assert Counter(r.status_code for r in responses) == {200: n, 429: 2 * n}
    assert all("this organization" in r.json()["error"]["message"] for r in responses if r.status_code == 429)


def test_tokens_per_minute_count_the_tokens_actually_used(world, gateways):
    key = api_key_issue(tenant=world.acme, name="tpm", tpm_limit=100).raw
    used = "[mock prompt_tokens=30 tokens=30]"  # 60 tokens a call

    def call(url: str) -> httpx.Response:
        return httpx.post(
            url + "/v1/chat/completions",
            content=ask(used, max_tokens=4000),  # max_tokens does not count: only what is used
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=10,
        )

    first = call(gateways[0])
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-tokens"] == "100"
    second = call(gateways[1])  # 60 of 100 used: still room
    assert second.status_code == 200, second.text
    assert second.headers["x-ratelimit-remaining-tokens"] == "40"
    third = call(gateways[0])  # 120 of 100 used
    assert third.status_code == 429
    assert third.json()["error"]["type"] == "tokens"
    assert "tokens per min (TPM): Limit 100" in third.json()["error"]["message"]


def test_a_concurrency_limit_never_has_more_than_c_calls_in_flight(world, gateways):
    c = 3
    key = api_key_issue(tenant=world.acme, name="narrow", concurrency_limit=c).raw
    # Slow answers, so all of them overlap.
    responses = asyncio.run(burst(gateways, [key], 12, ask("[mock ttft_ms=800]")))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: c, 429: 12 - c}, statuses
    # And the slots come back when the calls end.
    again = asyncio.run(burst(gateways, [key], c, ask()))
    assert [r.status_code for r in again] == [200] * c
    assert sync_client().zcard(redis_key("rl", "k", str(_key_id(key)), "c")) == 0


def _key_id(raw: str) -> int:
    from accounts.models import ApiKey

    return ApiKey.objects.get(prefix=raw[3:15]).id


def _drain_all() -> None:
    while usage_drain(claim_idle_ms=600_000):
        pass


def _pot(key: str) -> dict[str, int]:
    values = sync_client().hgetall(key)
    return {k.decode(): int(v) for k, v in values.items() if not k.startswith((b"r:", b"meta"))} | {
        "reservations": sum(1 for k in values if k.startswith(b"r:"))
    }


def _budget_key(budget: Any, tenant: Tenant) -> str:
    from django.utils import timezone

    from billing.periods import window

    span = window(budget.period, tenant.timezone, timezone.now())
    return budget_pot(budget.id, span.label, "")


# A prompt of 100 bytes that the mock counts as 100 tokens (the most a tokenizer could make of it),
# answering 16 tokens (its default) unless max_tokens says fewer.
PROMPT = "x" * 75 + " [mock prompt_tokens=100]"
CALL_COST = 100 * 2000 + 16 * 8000  # gpt-4.1: $2 in, $8 out per million tokens, in nano-dollars


def test_two_hundred_concurrent_calls_never_overspend_a_hard_budget(world, gateways):
    from billing.budgets import budget_set

    budget = budget_set(tenant=world.acme, usd=Decimal(50 * CALL_COST) / 10**9, period="month")
    responses = asyncio.run(burst(gateways, [world.key], 200, ask(PROMPT, max_tokens=16)))
    statuses = Counter(r.status_code for r in responses)
    # Reservations of calls in flight hold budget until they settle, and calls that could not pay
    # for 16 tokens were capped to fewer: about 50 are answered, never more than the budget pays for.
    assert set(statuses) <= {200, 402}, statuses
    assert statuses[200] >= 30, statuses
    for response in responses:
        if response.status_code == 402:
            assert response.json()["error"]["code"] == "budget_exceeded"
            assert response.json()["error"]["type"] == "insufficient_quota"
    _drain_all()
    rows = UsageRecord.objects.filter(tenant=world.acme)
    assert rows.count() == 200
    spent = sum(dollars_to_nanos(row.cost) for row in rows)
    assert spent <= dollars_to_nanos(budget.amount)
    pot = _pot(_budget_key(budget, world.acme))
    # No reservation is left behind, and the counter is the ledger to the nano-dollar.
    assert pot["reserved"] == 0 and pot["reservations"] == 0
    assert pot["spent"] == spent


def test_two_hundred_concurrent_calls_never_overspend_prepaid_credits(world, gateways):
    from billing.credits import credit_add

    world.acme.prepaid = True
    tenant_save(tenant=world.acme)
    credit_add(tenant=world.acme, kind="topup", usd=Decimal(50 * CALL_COST) / 10**9)
    responses = asyncio.run(burst(gateways, [world.key], 200, ask(PROMPT, max_tokens=16)))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 402} and statuses[200] >= 30, statuses
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 402} == {"credits_exhausted"}
    _drain_all()
    from billing.credits import credit_balance

    assert credit_balance(world.acme) >= 0
    pot = _pot(credit_pot(world.acme.id))
    spent = sum(dollars_to_nanos(row.cost) for row in UsageRecord.objects.filter(tenant=world.acme))
    assert pot["reserved"] == 0 and pot["reservations"] == 0
    assert pot["spent"] == spent
    assert pot["credit"] - pot["spent"] == dollars_to_nanos(credit_balance(world.acme))


def test_a_call_the_budget_cannot_fully_pay_for_is_capped_not_refused(world, gateways):
    from billing.budgets import budget_set

    # $0.001 left: the prompt (~70 bytes, $0.00014 at most) fits, 100,000 output tokens ($0.8) do not.
    budget_set(tenant=world.acme, usd=Decimal("0.001"), period="day")
    response = httpx.post(
        gateways[0] + "/v1/chat/completions",
        content=ask("Write me a novel.", max_tokens=100_000),
        headers={"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    capped = int(response.headers["x-tollhouse-budget-capped"])
    assert 0 < capped < 125  # ($0.001 - prompt) / $8 per million
    assert response.json()["usage"]["completion_tokens"] <= capped


def test_the_max_cost_header_caps_or_refuses_a_call(world, gateways):
    def call(max_cost: str, **extra: Any) -> httpx.Response:
        return httpx.post(
            gateways[1] + "/v1/chat/completions",
            content=ask("Hello", **extra),
            headers={
                "Authorization": f"Bearer {world.key}",
                "Content-Type": "application/json",
                "x-tollhouse-max-cost": max_cost,
            },
            timeout=10,
        )

    capped = call("0.0002", max_tokens=1000)  # $0.0002 pays for the prompt and ~5 tokens
    assert capped.status_code == 200 and 0 < int(capped.headers["x-tollhouse-budget-capped"]) < 25
    roomy = call("1")
    assert roomy.status_code == 200 and "x-tollhouse-budget-capped" not in roomy.headers
    refused = call("0.000000001")
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "max_cost_exceeded"
    for bad in ("-1", "abc", "NaN", "1e400", "0.0000000001"):
        response = call(bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["param"] == "x-tollhouse-max-cost"


def test_an_upstream_failure_releases_its_reservation_and_concurrency_slot(world, gateways):
    from billing.budgets import budget_set

    budget = budget_set(tenant=world.acme, usd=Decimal("1"), period="month")
    key = api_key_issue(tenant=world.acme, name="c1", concurrency_limit=1).raw
    response = httpx.post(
        gateways[0] + "/v1/chat/completions",
        content=ask("[mock status=500]"),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=20,
    )
    assert response.status_code == 502
    time.sleep(0.3)  # settlement runs right after the answer
    pot = _pot(_budget_key(budget, world.acme))
    assert pot["reserved"] == 0 and pot["reservations"] == 0 and pot["spent"] == 0
    ok = httpx.post(
        gateways[1] + "/v1/chat/completions",
        content=ask(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=20,
    )
    assert ok.status_code == 200, ok.text


def test_a_client_that_leaves_mid_stream_is_billed_for_what_was_generated(world, gateways):
    from billing.budgets import budget_set

    budget = budget_set(tenant=world.acme, usd=Decimal("1"), period="month")
    body = ask("[mock tokens=400 chunk_ms=20]", stream=True, max_tokens=100_000)
    received = 0
    with httpx.stream(
        "POST",
        gateways[0] + "/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"},
        timeout=20,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                received += 1
                if received == 10:
                    break  # the client goes away
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _drain_all()
        row = UsageRecord.objects.filter(tenant=world.acme).first()
        if row is not None:
            break
        time.sleep(0.2)
    assert row is not None and row.status == 499 and row.streamed
    # Billed for the chunks generated before the upstream call was cancelled: far from the 400 the
    # mock would have written, and nowhere near max_tokens.
    assert 5 <= row.completion_tokens < 400
    pot = _pot(_budget_key(budget, world.acme))
    assert pot["reserved"] == 0 and pot["spent"] == dollars_to_nanos(row.cost) > 0

"""The budget and credit counters are re-derived from the ledger exactly, while calls are still in
the usage stream, and a counter that drifted is repaired and reported (billing/reconcile.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from django.conf import settings
from django.db import connection

from billing.budgets import budget_set
from billing.credits import credit_add
from billing.models import UsageRecord
from billing.pots import credit_pot
from billing.pricing import dollars_to_nanos
from billing.reconcile import counters_reconcile
from billing.usage import usage_drain
from config.redis import redis_key, sync_client

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
    ),
]


def call(url: str, key: str, tokens: int = 20) -> httpx.Response:
    body = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": f"Hello [mock prompt_tokens=50 tokens={tokens}]"}],
    }
    response = httpx.post(
        url + "/v1/chat/completions",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response


def budget_pot_key() -> str:
    keys = [
        k.decode() for k in sync_client().scan_iter(match=redis_key("pot", "b", "*")) if not k.endswith(b":x")
    ]
    assert len(keys) == 1, keys
    return keys[0]


def spent(key: str) -> int:
    return int(sync_client().hget(key, "spent"))


def ledger_total(tenant: Any) -> int:
    return sum(dollars_to_nanos(row.cost) for row in UsageRecord.objects.filter(tenant=tenant))


def test_counters_agree_with_the_ledger_while_calls_wait_in_the_stream(world, gateway_server):
    budget_set(tenant=world.acme, usd=Decimal("10"), period="month")
    for tokens in (10, 20, 30, 40):
        call(gateway_server, world.key, tokens)
    pot = budget_pot_key()
    assert UsageRecord.objects.count() == 0  # nothing drained: every cost is still in the stream
    assert counters_reconcile() == []
    usage_drain(batch_size=2, max_batches=1)  # half of them written, the rest pending
    assert UsageRecord.objects.count() == 2
    assert counters_reconcile() == []
    usage_drain(claim_idle_ms=0)
    assert spent(pot) == ledger_total(world.acme) > 0
    assert counters_reconcile() == []


def test_a_counter_that_drifted_is_repaired_and_reported(world, gateway_server, caplog):
    budget_set(tenant=world.acme, usd=Decimal("10"), period="day")
    call(gateway_server, world.key)
    call(gateway_server, world.key)
    pot = budget_pot_key()
    sync_client().hincrby(pot, "spent", 777)  # a settlement that never happened
    differences = counters_reconcile()
    assert [(d.field, d.counter - d.ledger) for d in differences] == [("spent", 777)]
    assert "repaired from the ledger" in caplog.text
    usage_drain(claim_idle_ms=0)
    assert spent(pot) == ledger_total(world.acme)
    assert counters_reconcile() == []


def test_a_pot_recreated_while_its_calls_were_in_the_stream_is_caught_up(world, gateway_server):
    budget_set(tenant=world.acme, usd=Decimal("10"), period="week")
    call(gateway_server, world.key, 10)
    pot = budget_pot_key()
    first = spent(pot)
    sync_client().delete(pot)  # Redis lost it (restart without persistence)
    call(gateway_server, world.key, 30)  # recreated from the database, which lacks the first call
    assert spent(pot) < first + ledger_total(world.acme) or UsageRecord.objects.count() == 0
    differences = counters_reconcile()
    assert [(d.field, d.ledger - d.counter) for d in differences] == [("spent", first)]
    usage_drain(claim_idle_ms=0)
    assert spent(pot) == ledger_total(world.acme)


def test_credit_counters_follow_top_ups_and_charges(world, gateway_server):
    world.acme.prepaid = True
    world.acme.save()
    credit_add(tenant=world.acme, kind="topup", usd=Decimal("2"))
    call(gateway_server, world.key)
    pot = credit_pot(world.acme.id)
    assert int(sync_client().hget(pot, "credit")) == dollars_to_nanos(Decimal("2"))
    credit_add(tenant=world.acme, kind="topup", usd=Decimal("1.5"))  # reaches the live counter
    assert int(sync_client().hget(pot, "credit")) == dollars_to_nanos(Decimal("3.5"))
    sync_client().hincrby(pot, "credit", -5)
    differences = counters_reconcile()
    assert [(d.field, d.ledger - d.counter) for d in differences] == [("credit", 5)]
    usage_drain(claim_idle_ms=0)
    assert int(sync_client().hget(pot, "spent")) == ledger_total(world.acme) > 0
    assert counters_reconcile() == []


def test_a_shared_plan_counter_from_before_the_upgrade_is_ignored_and_each_tenant_rederived(
    world, gateway_server, caplog
):
    """Before counters named their tenant, a plan's monthly budget was ONE pot for every tenant on
    the plan (`th:pot:b:plan:<month>:`), created from whichever tenant called first. After the
    upgrade no call admits against it, each tenant's own pot is derived from its own ledger, and
    reconciliation ignores it, then removes it."""
    from django.utils import timezone

    from billing.periods import window
    from billing.pots import budget_pot

    plan = world.acme.plan
    plan.monthly_budget = Decimal("0.01")
    plan.save()
    label = window("month", "UTC", timezone.now()).label
    legacy = redis_key("pot", "b", "plan", label, "")
    meta = {"tenant": world.acme.id, "scope": "tenant", "key": None, "end_user": "", "budget": "plan"}
    meta |= {"start": 0, "end": 4102444800}
    # As the old gateways left it: the whole plan's budget spent, by the two tenants together.
    sync_client().hset(
        legacy, mapping={"spent": 10_000_000, "reserved": 0, "credit": 0, "meta": orjson.dumps(meta)}
    )
    call(gateway_server, world.key)
    call(gateway_server, world.globex_key)
    usage_drain(claim_idle_ms=0)
    for tenant in (world.acme, world.globex):
        assert spent(budget_pot(tenant.id, "plan", label, "")) == ledger_total(tenant) > 0
    assert counters_reconcile(fix=False) == []
    assert sync_client().exists(legacy)
    assert "predates per-tenant counters: ignored" in caplog.text
    assert counters_reconcile() == []
    assert not sync_client().exists(legacy)
    assert counters_reconcile() == []

"""A daily budget resets at midnight in the tenant's time zone, not at midnight UTC."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from decimal import Decimal

import httpx
import orjson
import time_machine

from accounts.services import tenant_save
from billing.budgets import budget_set

AUCKLAND = zoneinfo.ZoneInfo("Pacific/Auckland")  # UTC+13 in November


def call(url: str, key: str) -> httpx.Response:
    body = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Hi [mock prompt_tokens=10 tokens=100]"}],
    }
    return httpx.post(
        url + "/v1/chat/completions",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=10,
    )


def test_a_daily_budget_resets_at_the_tenants_midnight(world, gateway_server):
    world.acme.timezone = "Pacific/Auckland"
    tenant_save(tenant=world.acme)
    # One call costs 10 x $2 + 100 x $8 per million = $0.00082; the budget pays for two.
    budget_set(tenant=world.acme, usd=Decimal("0.0017"), period="day")
    late = datetime(2026, 11, 24, 23, 50, tzinfo=AUCKLAND)  # 10:50 UTC on the 24th
    early = datetime(2026, 11, 25, 0, 5, tzinfo=AUCKLAND)  # 11:05 UTC, still the 24th in UTC
    assert (
        late.astimezone(zoneinfo.ZoneInfo("UTC")).date() == early.astimezone(zoneinfo.ZoneInfo("UTC")).date()
    )

    with time_machine.travel(late, tick=True):
        statuses = [call(gateway_server, world.key).status_code for _ in range(4)]
    # Two paid in full; then what is left pays for the prompt and a capped answer, then nothing.
    assert statuses[:2] == [200, 200] and statuses[-1] == 402, statuses

    with time_machine.travel(early, tick=True):
        response = call(gateway_server, world.key)
    assert response.status_code == 200, response.text
    # A whole new day's budget: the answer is capped only by what $0.0017 pays for (the route's
    # 4,096 output tokens would cost $0.033), not by the $0.00006 left of the day before.
    assert int(response.headers["x-tollhouse-budget-capped"]) > 150

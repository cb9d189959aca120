"""10,000 calls through a live gateway: exactly 10,000 usage rows, whose tokens and cost are those of
the hourly rollups and of the budget counter to the nano-dollar; `usage_reconcile` finds nothing,
then finds a corrupted rollup and a drifted counter, and `--fix` repairs both (issue 7)."""

from __future__ import annotations

import asyncio
import io
import random
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models import F, Sum
from django.utils import timezone

from accounts.services import api_key_issue
from billing.budgets import budget_set
from billing.models import UsageHourly, UsageRecord
from billing.periods import window
from billing.pots import budget_pot
from billing.pricing import dollars_to_nanos
from billing.usage import stream_key, usage_drain
from config.redis import sync_client
from tests.support.process import GatewayProcess, subprocess_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
    ),
    pytest.mark.timeout(600),
]
CALLS = 10_000


def body(rng: random.Random) -> bytes:
    kind = rng.random()
    prompt = f"[mock prompt_tokens={rng.randrange(1, 400)} tokens={rng.randrange(1, 60)}] Hi"
    if kind < 0.03:  # a model nobody routes: 404, still a row (the key was identified)
        return orjson.dumps({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})
    if kind < 0.05:  # an upstream failure
        prompt = "[mock status=500] Hi"
    stream = kind > 0.7
    return orjson.dumps(
        {
            "model": rng.choice(["gpt-4.1", "gpt4", "deepseek-v3.2"]),
            "messages": [{"role": "user", "content": prompt}],
            "stream": stream,
            **({"stream_options": {"include_usage": True}} if stream else {}),
        }
    )


async def traffic(url: str, keys: list[str], count: int) -> Counter[int]:
    rng = random.Random(20261124)
    bodies = [body(rng) for _ in range(count)]
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    async with httpx.AsyncClient(
        timeout=60, limits=httpx.Limits(max_connections=40, keepalive_expiry=1)
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                response = await client.post(
                    url + "/v1/chat/completions",
                    content=bodies[index],
                    headers={
                        "Authorization": f"Bearer {keys[index % len(keys)]}",
                        "Content-Type": "application/json",
                    },
                )
                statuses[response.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(32)))
    return statuses


def drain_all(expected: int) -> None:
    client = sync_client()
    for _ in range(200):
        usage_drain(batch_size=1000, max_batches=100)
        if client.xlen(stream_key()) == 0 and UsageRecord.objects.count() >= expected:
            return
    raise AssertionError(f"{UsageRecord.objects.count()} rows, {client.xlen(stream_key())} events waiting")


def reconcile(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("usage_reconcile", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


@pytest.fixture
def gateway(world: Any) -> Any:
    env = subprocess_env(settings_dict=connection.settings_dict, redis_url=settings.REDIS_URL)
    # Each demo model has one deployment, and each of the 2 % failing calls fails it three times
    # (two retries): on a busy box overlapping ones may put five failures in a row, which is
    # the breaker's rule for cutting the deployment off for 30 s (tests/gateway/test_breaker.py tests
    # that). This test is about the ledger: its failures must stay failures, not become a cooldown.
    env["TOLLHOUSE_BREAKER_FAILURES"] = "1000"
    with GatewayProcess(env=env) as process:
        yield process
        assert "Traceback" not in process.log(), process.log()[-5000:]


def test_ten_thousand_calls_give_ten_thousand_rows_that_agree_with_rollups_and_budget_counter(world, gateway):
    budget = budget_set(tenant=world.acme, usd=Decimal(1000), period="month")
    keys = [api_key_issue(tenant=world.acme, name=f"scale-{i}").raw for i in range(3)]

    statuses = asyncio.run(traffic(gateway.url, keys, CALLS))
    warnings = [line for line in gateway.log().splitlines() if "WARNING" in line or "ERROR" in line]
    assert sum(statuses.values()) == CALLS and statuses[200] > 0.9 * CALLS, (statuses, warnings[-20:])
    assert set(statuses) <= {200, 404, 500, 502}, statuses
    drain_all(CALLS)

    rows = UsageRecord.objects.filter(tenant_id=world.acme.id)
    assert rows.count() == CALLS and rows.values("request_id").distinct().count() == CALLS
    assert Counter(rows.values_list("status", flat=True)) == statuses
    raw = rows.aggregate(
        prompt=Sum("prompt_tokens"),
        cached=Sum("cached_tokens"),
        completion=Sum("completion_tokens"),
        cost=Sum("cost"),
    )
    rolled = UsageHourly.objects.filter(tenant_id=world.acme.id).aggregate(
        requests=Sum("requests"),
        prompt=Sum("prompt_tokens"),
        cached=Sum("cached_tokens"),
        completion=Sum("completion_tokens"),
        cost=Sum("cost"),
        errors=Sum(F("errors_invalid_request") + F("errors_5xx")),
    )
    assert rolled == {**raw, "requests": CALLS, "errors": CALLS - statuses[200]}
    assert raw["cost"] > 0 and raw["completion"] > 0
    span = window(budget.period, world.acme.timezone, timezone.now())
    spent = int(sync_client().hget(budget_pot(world.acme.id, budget.id, span.label, ""), "spent"))
    assert spent == dollars_to_nanos(raw["cost"])  # to the nano-dollar

    assert reconcile() == (0, "")

    # A rollup corrupted by hand, and a counter that drifted: both reported, both repaired.
    cell = UsageHourly.objects.filter(tenant_id=world.acme.id).order_by("hour", "api_key_id").first()
    UsageHourly.objects.filter(pk=cell.pk).update(
        requests=F("requests") + 1, cost=F("cost") + Decimal("0.000000007")
    )
    sync_client().hincrby(budget_pot(world.acme.id, budget.id, span.label, ""), "spent", 5)
    code, out = reconcile()
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert f"requests raw {cell.requests} rollup {cell.requests + 1}" in lines[0]
    assert f"cost raw {cell.cost} rollup {cell.cost + Decimal('0.000000007')}" in lines[0]
    assert lines[1].startswith("budget counter") and f"counter {spent + 5}, ledger {spent}" in lines[1]

    code, out = reconcile("--fix")
    assert code == 0 and out.count("(repaired)") == 2, out
    assert reconcile() == (0, "")
    repaired = UsageHourly.objects.get(
        tenant_id=cell.tenant_id,
        hour=cell.hour,
        api_key_id=cell.api_key_id,
        end_user=cell.end_user,
        requested_model=cell.requested_model,
        served_model=cell.served_model,
    )
    assert (repaired.requests, repaired.cost) == (cell.requests, cell.cost)

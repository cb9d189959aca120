"""Routing strategies across two `manage.py serve` processes sharing one Redis (issue 16): weighted
splits, least-latency moving traffic off a slow deployment and back, least-busy balancing calls
in flight. Deployments are told apart by their upstream model names (the mock answers with the
model it was asked for); its per-model delays (PUT /_mock/delays) make one slow."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection

from gateway.governor import busy_key
from tests.support.process import GatewayProcess, subprocess_env
from tests.support.routing import Spec, body, fire, served, split, strategy_route, unique

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
    ),
]


@pytest.fixture(scope="module")
def _processes(django_db_setup: Any) -> Iterator[list[str]]:
    env = subprocess_env(settings_dict=connection.settings_dict, redis_url=settings.REDIS_URL)
    with GatewayProcess(env=env) as one, GatewayProcess(env=env) as two:
        yield [one.url, two.url]
        for process in (one, two):
            assert "Traceback" not in process.log(), process.log()


@pytest.fixture
def gateways(world: Any, _processes: list[str]) -> list[str]:
    from config.changes import publish

    publish([{"kind": "all"}])  # forget earlier tests' routes; hear of this test's at once
    time.sleep(0.2)
    return _processes


@pytest.fixture
def mock_delays(mock_upstream: Any) -> Iterator[Any]:
    def delay(model: str, ttft_ms: float) -> None:
        httpx.put(
            mock_upstream.url + "/_mock/delays", json={"model": model, "ttft_ms": ttft_ms}
        ).raise_for_status()

    yield delay
    httpx.delete(mock_upstream.url + "/_mock/delays")


def test_weighted_routing_splits_2000_calls_across_two_processes_by_weight(world, gateways):
    a, b, c = unique("w-a"), unique("w-b"), unique("w-c")
    route, _ = strategy_route(
        strategy="priority",
        provider=world.provider,
        specs=[Spec(a, weight=5), Spec(b, weight=3), Spec(c, weight=2), Spec(unique("w-backup"), priority=1)],
    )
    responses = asyncio.run(fire(gateways, world.key, [body(route.name)] * 2_000, concurrency=24))
    counts = split(responses)
    assert set(counts) == {a, b, c}  # the priority-1 deployment only when the others fail
    # Each within ±5 percentage points of its weight's share (a weighted draw per call: one standard
    # deviation is about 1.1 points here, so this never fails by chance; equal shares would).
    for model, share in ((a, 0.5), (b, 0.3), (c, 0.2)):
        assert abs(counts[model] / 2_000 - share) <= 0.05, counts


def test_least_latency_leaves_a_slow_deployment_and_comes_back_when_it_recovers(world, gateways, mock_delays):
    fast, slow = unique("lat-fast"), unique("lat-slow")
    route, _ = strategy_route(
        strategy="least_latency", provider=world.provider, specs=[Spec(fast), Spec(slow)]
    )
    warm = served(asyncio.run(fire(gateways, world.key, [body(route.name)] * 40, concurrency=1)))
    assert set(warm) == {fast, slow}  # both measured, both about as fast

    mock_delays(slow, 200)  # now 200 ms slower to its first byte
    after = served(asyncio.run(fire(gateways, world.key, [body(route.name)] * 200, concurrency=1)))
    # Within 200 calls at least 90 % of the traffic has moved away (after the first few that found
    # it slow); what still goes there is the exploration share (TOLLHOUSE_ROUTING_EXPLORE, 5 %).
    moved = Counter(after[20:])
    assert moved[fast] >= 0.9 * 180, moved
    assert moved[slow] >= 1  # explored now and then, so a recovery can be seen

    mock_delays(slow, 0)  # it recovers
    back = served(asyncio.run(fire(gateways, world.key, [body(route.name)] * 400, concurrency=1)))
    returned = Counter(back[300:])
    assert returned[slow] >= 15, returned  # measured fast again: about as fast, so it shares again


def test_least_busy_balances_50_concurrent_slow_calls_within_one(world, gateways, mock_upstream):
    # Weights 9:1 only break ties: a weighted split would send about 45 of 50 to the first.
    a, b = unique("busy-a"), unique("busy-b")
    route, deployments = strategy_route(
        strategy="least_busy", provider=world.provider, specs=[Spec(a, weight=9), Spec(b, weight=1)]
    )
    httpx.delete(mock_upstream.url + "/_mock/requests")
    slow = body(route.name, "Take your time [mock ttft_ms=1200]")

    async def scene() -> tuple[list[httpx.Response], Counter[str]]:
        calls = asyncio.ensure_future(fire(gateways, world.key, [slow] * 50, concurrency=50))
        # All 50 in flight (each waits 1.2 s for its first byte): count them at the mock.
        deadline = time.monotonic() + 1.0
        in_flight: Counter[str] = Counter()
        while time.monotonic() < deadline and sum(in_flight.values()) < 50:
            await asyncio.sleep(0.05)
            async with httpx.AsyncClient() as client:
                log = (await client.get(mock_upstream.url + "/_mock/requests")).json()["requests"]
            in_flight = Counter(entry["json"]["model"] for entry in log if entry["json"])
        return await calls, in_flight

    responses, in_flight = asyncio.run(scene())
    assert sum(in_flight.values()) == 50, in_flight
    assert abs(in_flight[a] - in_flight[b]) <= 1, in_flight
    assert split(responses) == in_flight
    # Every call released its mark when it ended.
    from config.redis import sync_client

    assert all(sync_client().zcard(busy_key(d.id)) == 0 for d in deployments)

"""What the routing strategies share across processes: least_busy's calls in flight (counted by
admission, gateway/governor.py, in both backends) and least_latency's averages (gateway/routing.py
LatencyBoard, in Redis). Real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings

from config.redis import close_async_client, redis_key, sync_client
from gateway import errors
from gateway.catalog import DeploymentInfo, ProviderInfo
from gateway.governor import Governor, LocalBackend, RedisBackend, Request, Ticket, busy_key
from gateway.routing import LatencyBoard, latency_key

needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")
LEASE_US = 60_000_000


class Harness:
    def __init__(self, kind: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.backend: RedisBackend | LocalBackend = RedisBackend() if kind == "redis" else LocalBackend()

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    def admit(self, request: Request, *, lease_us: int = LEASE_US) -> Ticket:
        return self.run(self.backend.admit(request, lease_us))

    def in_flight(self, deployment_id: int) -> int:
        key = busy_key(deployment_id)
        if isinstance(self.backend, LocalBackend):
            now = time.time_ns() // 1000
            return sum(1 for expiry in self.backend.inflight.get(key, {}).values() if expiry > now)
        return int(sync_client().zcount(key, time.time_ns() // 1000, "+inf"))

    def close(self) -> None:
        self.run(close_async_client())
        self.loop.close()


@pytest.fixture(params=[pytest.param("redis", marks=needs_redis), "local"])
def gov(request: pytest.FixtureRequest) -> Iterator[Harness]:
    harness = Harness(request.param)
    yield harness
    harness.close()


def deployments(
    *ids: int, rpm: dict[int, int] | None = None
) -> list[tuple[int, str, str, int | None, int | None]]:
    tag = uuid.uuid4().hex[:8]
    return [
        (
            d,
            redis_key("rl", "d", f"{d}-{tag}", "r"),
            redis_key("rl", "d", f"{d}-{tag}", "t"),
            (rpm or {}).get(d),
            None,
        )
        for d in ids
    ]


def ask(deps: list[tuple[int, str, str, int | None, int | None]]) -> Request:
    return Request(
        request_id=uuid.uuid4().hex,
        subjects=[],
        deployments=deps,
        pots=[],
        prompt_cost=0,
        per_token=0,
        want_tokens=0,
        max_cost=None,
        busy=True,
    )


def ids() -> tuple[int, int]:
    base = 700_000 + int(uuid.uuid4().hex[:5], 16)
    return base, base + 1


def test_admission_picks_the_deployment_with_fewest_calls_in_flight(gov):
    a, b = ids()
    deps = deployments(a, b)
    tickets = [gov.admit(ask(deps)) for _ in range(5)]
    assert [t.deployment for t in tickets] == [0, 1, 0, 1, 0]  # a tie goes to the first in order
    assert (gov.in_flight(a), gov.in_flight(b)) == (3, 2)
    assert tickets[0].busy == (a, busy_key(a)) and busy_key(a) in tickets[0].concurrency
    # Settlement releases the call's mark (as it releases a concurrency slot).
    for ticket in tickets[:3:2]:
        gov.run(gov.backend.settle(ticket, tokens=0, cost=0, deployment=a, event=None))
    assert (gov.in_flight(a), gov.in_flight(b)) == (1, 2)
    assert gov.admit(ask(deps)).deployment == 0


def test_a_busy_deployment_at_its_cap_is_skipped_and_all_at_their_caps_is_a_429(gov):
    a, b = ids()
    deps = deployments(a, b, rpm={a: 1, b: 2})
    assert [gov.admit(ask(deps)).deployment for _ in range(3)] == [0, 1, 1]
    with pytest.raises(errors.RateLimited) as refused:
        gov.admit(ask(deps))
    assert refused.value.headers["Retry-After"] == "30"  # b frees up in 30 s, a in 60 s: the soonest


def test_a_mark_left_by_a_dead_process_expires_with_its_lease(gov):
    a, b = ids()
    deps = deployments(a, b)
    gov.admit(ask(deps), lease_us=50_000)  # on a, never settled: its process died
    assert gov.admit(ask(deps)).deployment == 1
    time.sleep(0.06)
    assert gov.in_flight(a) == 0
    assert gov.admit(ask(deps)).deployment == 0


def test_a_call_that_moves_on_moves_its_mark(gov):
    a, b = ids()
    governor = Governor()
    ticket = gov.admit(ask(deployments(a, b)))
    ticket.backend = gov.backend
    gov.run(governor.busy_move(ticket, b))
    assert (gov.in_flight(a), gov.in_flight(b)) == (0, 1)
    assert ticket.busy == (b, busy_key(b)) and ticket.concurrency == [busy_key(b)]
    gov.run(gov.backend.settle(ticket, tokens=0, cost=0, deployment=b, event=None))
    assert gov.in_flight(b) == 0


# -- least_latency's board -------------------------------------------------------------------------------

PROVIDER = ProviderInfo(
    id=1, name="p", kind="mock", base_url="http://x", credential="", connect_timeout=1.0, read_timeout=1.0
)


def dep(id_: int) -> DeploymentInfo:
    return DeploymentInfo(id=id_, provider=PROVIDER, upstream_model="m", priority=0, weight=1)


@needs_redis
def test_one_process_measures_and_every_process_reads_it():
    a, b = ids()
    loop = asyncio.new_event_loop()
    try:
        one, two = LatencyBoard(), LatencyBoard()

        async def scene() -> None:
            one.watch([dep(a), dep(b)])
            two.watch([dep(a), dep(b)])
            one.observe(a, 200_000)
            one.observe(b, 2_000)
            assert one.values == {a: 200_000.0, b: 2_000.0}  # this process knows at once
            await one.refresh()
            await two.refresh()
            assert two.values == {a: 200_000.0, b: 2_000.0}  # the other within one refresh
            two.observe(a, 2_000)  # recovering: each sample moves the shared average
            await two.refresh()
            await one.refresh()
            assert 2_000 < one.values[a] <= 101_000
            for board in (one, two):  # the refreshes watch() and observe() started on their own
                if board._task is not None:
                    await board._task

        loop.run_until_complete(scene())
        loop.run_until_complete(close_async_client())
    finally:
        loop.close()
    assert sync_client().pttl(latency_key(a)) > 500_000  # forgotten after LatencyBoard.TTL_MS


@needs_redis
def test_a_figure_not_moved_for_a_while_gives_way_to_a_new_sample():
    (a, _) = ids()
    sync_client().hset(latency_key(a), mapping={"e": 300_000, "t": time.time_ns() // 1000 - 60_000_000})
    loop = asyncio.new_event_loop()
    try:
        board = LatencyBoard()

        async def scene() -> None:
            board.watch([dep(a)])
            board._pending.append((a, 2_000))
            await board.refresh()
            if board._task is not None:
                await board._task

        loop.run_until_complete(scene())
        loop.run_until_complete(close_async_client())
    finally:
        loop.close()
    # A minute unmeasured (six half-lives): the new sample weighs 1 - 0.5 * 2^-6, not 0.5.
    assert board.values[a] == pytest.approx(2_000 + 298_000 * 0.5 / 64, abs=20)

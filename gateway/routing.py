"""Step 5 of the request path: the order in which a route's deployments are tried.

One registry, `STRATEGIES`, maps each ModelRoute.Strategy to one ordering function; `order` is the
one place that calls it, for the call's route (gateway/proxy.py, before admission) and for each
fallback route (gateway/executor.py). Every function returns a permutation of the deployments it
is given and reads only in-process facts, so a decision costs a few microseconds and no I/O:

- priority (the default): the lowest priority first; within a priority, weighted random order
  (exact: each next deployment is drawn with probability weight / remaining weight; weight 0 only
  after every weighted one).
- least_latency: by the exponentially weighted moving average of each deployment's time to first
  byte, shared by every process through Redis (`LatencyBoard`). Deployments within
  LATENCY_TOLERANCE of the fastest count as equally fast (weighted random among them, so noise
  does not flap traffic), a deployment never measured comes first (so it gets measured), and a
  TOLLHOUSE_ROUTING_EXPLORE share of calls goes to a random other deployment first, so one that
  recovered is measured again.
- least_busy: weighted random order; admission (gateway/governor.py) then picks, among the
  deployments with room, the one with the fewest calls in flight across every process, atomically
  with marking the call in flight there (so concurrent calls cannot all pick the same one). Ties
  keep this order: they are broken by weight.
- cheapest: by what the call's expected tokens (prompt estimate + expected output) cost at the
  price in force for each deployment's upstream model; ties weighted random; unpriced ones last.

Deployments whose circuit breaker is open (in cooldown) are not ordered: `order` returns them
apart, and they go after every other candidate (gateway/executor.py asks the breaker again before
each attempt, and answers 503 when nothing but cooling deployments was left).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import redis

from config.hot import hot
from config.redis import redis_key
from gateway.catalog import DeploymentInfo, RouteInfo

logger = logging.getLogger(__name__)

PRIORITY, LEAST_LATENCY, LEAST_BUSY, CHEAPEST = "priority", "least_latency", "least_busy", "cheapest"

# least_latency: deployments this close to the fastest (relative, plus an absolute slack for
# sub-millisecond noise) are as fast as it.
LATENCY_TOLERANCE = 0.2
LATENCY_SLACK_US = 2_000
# cheapest: the output a call is expected to write when it does not set max_tokens.
EXPECTED_OUTPUT_TOKENS = 256


@dataclass
class Facts:
    """What a decision may read; all of it in-process."""

    latency: dict[int, float] = field(default_factory=dict)  # EWMA µs to first byte, by deployment
    cost: Callable[[DeploymentInfo], int | None] | None = None  # the call's expected cost, nano-dollars
    explore: float = 0.0  # least_latency's exploration share


Strategy = Callable[[Sequence[DeploymentInfo], Facts, random.Random], list[DeploymentInfo]]


def weighted(deployments: Sequence[DeploymentInfo], rng: random.Random) -> list[DeploymentInfo]:
    """A weighted random order: each next deployment drawn with probability weight / weight left."""
    if len(deployments) < 2:
        return list(deployments)
    pool = list(deployments)
    weights = [d.weight for d in pool]
    total = sum(weights)
    ordered: list[DeploymentInfo] = []
    while pool and total > 0:
        x = rng.random() * total
        pick = len(pool) - 1
        for index, weight in enumerate(weights):
            x -= weight
            if x < 0:
                pick = index
                break
        else:  # float rounding: the last one with a weight
            while weights[pick] == 0:
                pick -= 1
        ordered.append(pool.pop(pick))
        total -= weights.pop(pick)
    ordered.extend(pool)  # weight 0: only after every weighted one, in the route's order
    return ordered


def priority_then_weighted(
    deployments: Sequence[DeploymentInfo], facts: Facts, rng: random.Random
) -> list[DeploymentInfo]:
    if len(deployments) < 2:
        return list(deployments)
    groups: dict[int, list[DeploymentInfo]] = {}
    for deployment in deployments:
        groups.setdefault(deployment.priority, []).append(deployment)
    if len(groups) == 1:
        return weighted(deployments, rng)
    ordered: list[DeploymentInfo] = []
    for priority in sorted(groups):
        ordered.extend(weighted(groups[priority], rng))
    return ordered


def least_latency(
    deployments: Sequence[DeploymentInfo], facts: Facts, rng: random.Random
) -> list[DeploymentInfo]:
    latency = facts.latency
    measured = sorted(
        ((latency[d.id], index, d) for index, d in enumerate(deployments) if d.id in latency),
        key=lambda item: (item[0], item[1]),
    )
    ordered = weighted([d for d in deployments if d.id not in latency], rng)  # never measured: first
    if measured:
        bound = measured[0][0] * (1 + LATENCY_TOLERANCE) + LATENCY_SLACK_US
        ordered.extend(weighted([d for value, _, d in measured if value <= bound], rng))
        ordered.extend(d for value, _, d in measured if value > bound)
    if len(ordered) > 1 and facts.explore > 0 and rng.random() < facts.explore:
        ordered.insert(0, ordered.pop(rng.randrange(1, len(ordered))))
    return ordered


def least_busy(
    deployments: Sequence[DeploymentInfo], facts: Facts, rng: random.Random
) -> list[DeploymentInfo]:
    # The counting happens in admission, atomically across processes; this order breaks its ties.
    return weighted(deployments, rng)


def cheapest(deployments: Sequence[DeploymentInfo], facts: Facts, rng: random.Random) -> list[DeploymentInfo]:
    assert facts.cost is not None
    costs: dict[int, list[DeploymentInfo]] = {}
    unpriced: list[DeploymentInfo] = []
    for deployment in deployments:
        cost = facts.cost(deployment)
        if cost is None:
            unpriced.append(deployment)
        else:
            costs.setdefault(cost, []).append(deployment)
    ordered: list[DeploymentInfo] = []
    for cost in sorted(costs):
        ordered.extend(weighted(costs[cost], rng))
    ordered.extend(weighted(unpriced, rng))
    return ordered


STRATEGIES: dict[str, Strategy] = {
    PRIORITY: priority_then_weighted,
    LEAST_LATENCY: least_latency,
    LEAST_BUSY: least_busy,
    CHEAPEST: cheapest,
}


def order(
    route: RouteInfo, facts: Facts, *, cooling: Collection[int] = (), rng: random.Random | None = None
) -> tuple[list[DeploymentInfo], list[DeploymentInfo]]:
    """(the deployments to try, in the route's strategy's order; those in cooldown, apart)."""
    strategy = STRATEGIES.get(route.strategy, priority_then_weighted)
    deployments: Sequence[DeploymentInfo] = route.deployments
    cooled: list[DeploymentInfo] = []
    if cooling:
        cooled = [d for d in deployments if d.id in cooling]
        if cooled:
            deployments = [d for d in deployments if d.id not in cooling]
    return strategy(deployments, facts, rng or _rng), cooled


_rng = random.Random()


def expected_cost(
    price_of: Callable[[str], object | None], *, prompt_tokens: int, output_tokens: int
) -> Callable[[DeploymentInfo], int | None]:
    """The call's expected cost on a deployment (nano-dollars, rounded up): `price_of(upstream
    model)` is the catalog's price in force (billing.pricing.PriceNanos) or None."""
    cache: dict[str, int | None] = {}

    def cost(deployment: DeploymentInfo) -> int | None:
        model = deployment.upstream_model
        if model not in cache:
            price = price_of(model)
            cache[model] = (
                None
                if price is None
                else math.ceil(
                    (prompt_tokens * price.input + output_tokens * price.output)  # type: ignore[attr-defined]
                    / 1_000_000
                )
            )
        return cache[model]

    return cost


# -- least_latency's shared measurements ---------------------------------------------------------------

# KEYS: a hash per deployment measured (its samples first, in ARGV), then one per deployment to
# read. ARGV: number of samples, alpha, half-life µs, ttl ms, then the samples (µs). Each hash holds
# `e` (the EWMA, µs) and `t` (when it last moved, Redis time). A sample moves the average by at
# least alpha, and by more the longer the deployment went unmeasured: 1 - (1 - alpha) * 2^(-gap /
# half-life), so an old figure gives way quickly once a deployment is measured again. A hash not
# moved for `ttl` expires: the deployment counts as never measured and is tried first.
_LATENCY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n, alpha, half, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for i = 1, n do
  local sample = tonumber(ARGV[4 + i])
  local h = redis.call('HMGET', KEYS[i], 'e', 't')
  local e = tonumber(h[1])
  if e then
    local a = 1 - (1 - alpha) * 2 ^ (-(now - tonumber(h[2])) / half)
    e = e + a * (sample - e)
  else
    e = sample
  end
  redis.call('HSET', KEYS[i], 'e', string.format('%.0f', e), 't', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[i], ttl)
end
local out = {}
for i = n + 1, #KEYS do
  out[#out + 1] = redis.call('HGET', KEYS[i], 'e') or ''
end
return out
"""


def latency_key(deployment_id: int) -> str:
    return redis_key("rt", "lat", str(deployment_id))


class LatencyBoard:
    """This process's copy of the time-to-first-byte averages of the deployments of least_latency
    routes, and its samples not yet sent.

    A sample moves this process's copy at once (`observe`: a dict update); every REFRESH_SECONDS at
    most, one Redis round trip, off the request path, sends the samples gathered since and reads
    back the averages every process has built (so a deployment one process found slow is avoided
    by all within a fraction of a second). Without Redis the copy is the whole truth."""

    ALPHA = 0.5
    HALF_LIFE_US = 10_000_000
    TTL_MS = 600_000
    REFRESH_SECONDS = 0.2

    def __init__(self) -> None:
        self.values: dict[int, float] = {}
        self._moved: dict[int, int] = {}  # deployment -> monotonic µs of its last local sample
        self._watched: set[int] = set()
        self._pending: list[tuple[int, int]] = []
        self._refreshed = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._script: object | None = None
        self._warned_at = -math.inf

    def watch(self, deployments: Sequence[DeploymentInfo]) -> None:
        for deployment in deployments:
            if deployment.id not in self._watched:
                self._watched.add(deployment.id)
                self._refreshed = -math.inf  # read it at once
        self._maybe_refresh()

    def observe(self, deployment_id: int, sample_us: int) -> None:
        if deployment_id not in self._watched:
            return
        now = time.monotonic_ns() // 1000
        old = self.values.get(deployment_id)
        if old is None:
            self.values[deployment_id] = float(sample_us)
        else:
            gap = now - self._moved.get(deployment_id, now)
            alpha = 1 - (1 - self.ALPHA) * 2 ** (-gap / self.HALF_LIFE_US)
            self.values[deployment_id] = old + alpha * (sample_us - old)
        self._moved[deployment_id] = now
        self._pending.append((deployment_id, sample_us))
        self._maybe_refresh()

    def _maybe_refresh(self) -> None:
        if not hot.REDIS_URL:
            self._pending.clear()
            return
        if self._task is not None and not self._task.done():
            return
        if time.monotonic() - self._refreshed < self.REFRESH_SECONDS:
            return
        self._refreshed = time.monotonic()
        self._task = asyncio.ensure_future(self.refresh())

    async def refresh(self) -> None:
        """Send the samples gathered so far and read back every watched deployment's average."""
        from gateway.governor import LuaScript

        if self._script is None:
            self._script = LuaScript(_LATENCY)
        script: LuaScript = self._script  # type: ignore[assignment]
        samples, self._pending = self._pending, []
        watched = list(self._watched)
        keys = [latency_key(d) for d, _ in samples] + [latency_key(d) for d in watched]
        args: list[object] = [len(samples), str(self.ALPHA), self.HALF_LIFE_US, self.TTL_MS]
        args.extend(sample for _, sample in samples)
        try:
            async with asyncio.timeout(hot.TOLLHOUSE_REDIS_TIMEOUT):
                values = await script(keys=keys, args=args)
        except (redis.RedisError, OSError) as exc:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                logger.warning(
                    "least-latency routing: Redis unreachable (%s); this process routes on its own "
                    "measurements until it answers",
                    type(exc).__name__,
                )
            return
        for deployment, value in zip(watched, values, strict=True):
            text = value.decode() if isinstance(value, bytes) else str(value)
            if text:
                self.values[deployment] = float(text)
            else:
                self.values.pop(deployment, None)


class Router:
    """The strategies' process-wide state (the latency board) and the one ordering step."""

    def __init__(self) -> None:
        self.latency = LatencyBoard()

    def order(
        self,
        route: RouteInfo,
        *,
        cooling: Collection[int],
        price_of: Callable[[str], object | None] | None = None,
        prompt_tokens: int = 0,
        output_tokens: int = 0,
    ) -> tuple[list[DeploymentInfo], list[DeploymentInfo]]:
        facts = Facts()
        if route.strategy == LEAST_LATENCY:
            self.latency.watch(route.deployments)
            facts.latency = self.latency.values
            facts.explore = hot.TOLLHOUSE_ROUTING_EXPLORE
        elif route.strategy == CHEAPEST:
            facts.cost = expected_cost(
                price_of or (lambda _: None), prompt_tokens=prompt_tokens, output_tokens=output_tokens
            )
        return order(route, facts, cooling=cooling)

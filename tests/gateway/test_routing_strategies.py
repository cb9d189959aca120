"""gateway/routing.py: each strategy orders a route's deployments; `order` keeps those in cooldown
apart. Any weights, priorities, prices and latencies give a permutation of the available
deployments, never one in cooldown."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from billing.pricing import PriceNanos
from gateway import routing
from gateway.catalog import DeploymentInfo, ProviderInfo, RouteInfo

PROVIDER = ProviderInfo(
    id=1, name="p", kind="mock", base_url="http://x", credential="", connect_timeout=1.0, read_timeout=1.0
)


def dep(id_: int, *, priority: int = 0, weight: int = 1, model: str = "") -> DeploymentInfo:
    return DeploymentInfo(
        id=id_, provider=PROVIDER, upstream_model=model or f"m{id_}", priority=priority, weight=weight
    )


def route(strategy: str, *deployments: DeploymentInfo) -> RouteInfo:
    return RouteInfo(name="r", deployments=deployments, strategy=strategy)


def first_picks(r: RouteInfo, facts: routing.Facts, n: int = 20_000, seed: int = 7) -> Counter[int]:
    rng = random.Random(seed)
    return Counter(routing.order(r, facts, rng=rng)[0][0].id for _ in range(n))


# -- priority, then weighted ---------------------------------------------------------------------------


def test_it_splits_a_priority_group_by_weight():
    picks = first_picks(
        route("priority", dep(1, weight=3), dep(2, weight=1), dep(3, priority=1, weight=50)), routing.Facts()
    )
    assert set(picks) == {1, 2}  # priority 1 only after the whole priority-0 group
    assert picks[1] / 20_000 == pytest.approx(0.75, abs=0.015)


def test_the_second_place_is_drawn_from_the_weight_left():
    rng = random.Random(3)
    seconds = Counter(
        routing.weighted([dep(1, weight=6), dep(2, weight=3), dep(3, weight=1)], rng)[1].id
        for _ in range(30_000)
    )
    # P(2 second) = P(1 first) * 3/4 + P(3 first) * 3/9 = 0.6 * 0.75 + 0.1 * 1/3
    assert seconds[2] / 30_000 == pytest.approx(0.6 * 0.75 + 0.1 / 3, abs=0.015)


def test_weight_zero_goes_after_every_weighted_one():
    rng = random.Random(1)
    for _ in range(500):
        ordered = routing.weighted([dep(1, weight=0), dep(2, weight=1), dep(3, weight=5)], rng)
        assert ordered[-1].id == 1
    assert [d.id for d in routing.weighted([dep(1, weight=0), dep(2, weight=0)], rng)] == [1, 2]


# -- least latency --------------------------------------------------------------------------------------


def test_least_latency_prefers_the_fastest_and_explores_a_share():
    r = route("least_latency", dep(1), dep(2), dep(3))
    facts = routing.Facts(latency={1: 50_000.0, 2: 5_000.0, 3: 200_000.0}, explore=0.05)
    picks = first_picks(r, facts)
    assert picks[2] / 20_000 == pytest.approx(0.95, abs=0.01)
    assert picks[1] > 300 and picks[3] > 300  # the others are measured again now and then
    ordered = routing.order(r, routing.Facts(latency=facts.latency), rng=random.Random(1))[0]
    assert [d.id for d in ordered] == [2, 1, 3]


def test_least_latency_tries_a_deployment_never_measured_first():
    r = route("least_latency", dep(1), dep(2))
    assert routing.order(r, routing.Facts(latency={1: 1_000.0}))[0][0].id == 2


def test_deployments_about_as_fast_as_the_best_share_by_weight():
    r = route("least_latency", dep(1, weight=1), dep(2, weight=3), dep(3))
    facts = routing.Facts(latency={1: 10_000.0, 2: 10_900.0, 3: 90_000.0})  # 1 and 2 within 20 %
    picks = first_picks(r, facts)
    assert picks[3] == 0
    assert picks[2] / 20_000 == pytest.approx(0.75, abs=0.015)


# -- cheapest -------------------------------------------------------------------------------------------

PRICES = {
    "cheap": PriceNanos(input=1_000_000_000, cached_input=0, output=4_000_000_000),  # $1 / $4 per M
    "dear": PriceNanos(input=3_000_000_000, cached_input=0, output=15_000_000_000),
    "cheap-too": PriceNanos(input=1_000_000_000, cached_input=0, output=4_000_000_000),
}


def test_cheapest_orders_by_the_expected_cost_ties_by_weight_unpriced_last():
    r = route(
        "cheapest",
        dep(1, model="dear"),
        dep(2, model="unknown"),
        dep(3, model="cheap", weight=1),
        dep(4, model="cheap-too", weight=4),
    )
    cost = routing.expected_cost(PRICES.get, prompt_tokens=1_000, output_tokens=500)
    assert cost(dep(3, model="cheap")) == 3_000_000  # 1,000 x $1/M + 500 x $4/M = $0.003
    facts = routing.Facts(cost=cost)
    picks = first_picks(r, facts)
    assert set(picks) == {3, 4} and picks[4] / 20_000 == pytest.approx(0.8, abs=0.015)
    for _ in range(50):
        assert [d.id for d in routing.order(r, facts)[0]][2:] == [1, 2]


def test_cheapest_weighs_input_and_output_as_the_call_will():
    prices = {
        "cheap-in": PriceNanos(input=1_000_000_000, cached_input=0, output=20_000_000_000),
        "cheap-out": PriceNanos(input=5_000_000_000, cached_input=0, output=5_000_000_000),
    }
    r = route("cheapest", dep(1, model="cheap-in"), dep(2, model="cheap-out"))
    long_prompt = routing.Facts(
        cost=routing.expected_cost(prices.get, prompt_tokens=100_000, output_tokens=100)
    )
    long_answer = routing.Facts(
        cost=routing.expected_cost(prices.get, prompt_tokens=100, output_tokens=4_000)
    )
    assert routing.order(r, long_prompt)[0][0].id == 1
    assert routing.order(r, long_answer)[0][0].id == 2


def test_cheapest_reads_the_price_in_force_at_the_calls_time():
    from gateway.catalog import Catalog

    old = datetime(2026, 1, 1, tzinfo=UTC)
    new = datetime(2026, 6, 1, tzinfo=UTC)
    catalog = Catalog(
        routes={},
        public_names=(),
        prices={"a": [(new, PRICES["dear"]), (old, PRICES["cheap"])], "b": [(old, PRICES["cheap"])]},
    )
    r = route("cheapest", dep(1, model="a"), dep(2, model="b", weight=1_000_000))

    def first(at: datetime) -> list[int]:
        cost = routing.expected_cost(lambda m: catalog.price(m, at), prompt_tokens=10, output_tokens=10)
        return [d.id for d in routing.order(r, routing.Facts(cost=cost))[0]]

    assert first(datetime(2026, 7, 1, tzinfo=UTC)) == [2, 1]  # a's new price is dearer
    assert first(datetime(2026, 3, 1, tzinfo=UTC))[0] in {1, 2}  # a tie, broken by weight


# -- every strategy, any input --------------------------------------------------------------------------

DEPLOYMENTS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20)), min_size=0, max_size=12).map(
    lambda rows: [dep(i + 1, priority=p, weight=w, model=f"m{i % 4}") for i, (p, w) in enumerate(rows)]
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    deployments=DEPLOYMENTS,
    strategy=st.sampled_from([*sorted(routing.STRATEGIES), "something-else"]),
    latencies=st.dictionaries(st.integers(1, 12), st.floats(0, 1e9, allow_nan=False)),
    prices=st.dictionaries(
        st.sampled_from(["m0", "m1", "m2", "m3"]),
        st.tuples(st.integers(0, 10**12), st.integers(0, 10**12)),
    ),
    cooling=st.sets(st.integers(1, 12)),
    explore=st.floats(0, 1),
    tokens=st.tuples(st.integers(0, 10**6), st.integers(0, 10**5)),
    seed=st.integers(0, 2**32),
)
def test_every_strategy_orders_exactly_the_available_deployments(
    deployments, strategy, latencies, prices, cooling, explore, tokens, seed
):
    r = route(strategy, *deployments)
    price_table = {m: PriceNanos(input=i, cached_input=0, output=o) for m, (i, o) in prices.items()}
    facts = routing.Facts(
        latency=latencies,
        cost=routing.expected_cost(price_table.get, prompt_tokens=tokens[0], output_tokens=tokens[1]),
        explore=explore,
    )
    ordered, cooled = routing.order(r, facts, cooling=cooling, rng=random.Random(seed))
    available = [d for d in deployments if d.id not in cooling]
    assert sorted(d.id for d in ordered) == sorted(d.id for d in available)
    assert [d.id for d in cooled] == [d.id for d in deployments if d.id in cooling]
    if strategy in ("priority", "something-else"):
        assert [d.priority for d in ordered] == sorted(d.priority for d in ordered)
    if strategy == "cheapest":
        costs = [facts.cost(d) for d in ordered]  # type: ignore[misc]
        priced = [c for c in costs if c is not None]
        assert costs[: len(priced)] == sorted(priced)  # cheapest first, the unpriced last
    if strategy == "least_latency" and explore == 0:
        known = [latencies[d.id] for d in ordered if d.id in latencies]
        unknown = [d for d in ordered if d.id not in latencies]
        assert all(d.id not in latencies for d in ordered[: len(unknown)])  # never measured: first
        if known:
            bound = min(known) * (1 + routing.LATENCY_TOLERANCE) + routing.LATENCY_SLACK_US
            far = [v for v in known if v > bound]
            assert known[len(known) - len(far) :] == sorted(far)
            assert all(v <= bound for v in known[: len(known) - len(far)])

"""gateway/governor.py: both backends (the Redis scripts and the in-process twin) apply the same rules
to rate limits, concurrency, deployments, budgets, credits and x-tollhouse-max-cost; the `Governor`
facade picks one and survives Redis going away and coming back (DESIGN §3 step 4, §6; issue 6).

Real Redis (REDIS_URL of `make test`) and real PostgreSQL: pots are created from the ledger in the
database thread, so the tests with pots commit (the `tenant` fixture asks for `transactional_db`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.services import tenant_create
from billing.models import UsageRecord
from config.redis import close_async_client, redis_key, sync_client
from gateway import errors
from gateway.auth import BudgetInfo, KeyInfo, Limits
from gateway.governor import (
    Governor,
    LocalBackend,
    Pot,
    RedisBackend,
    Request,
    Subject,
    Ticket,
    budget_pots,
)
from tests.support.process import RedisServer, free_port

LEASE_US = 60_000_000  # a minute: nothing expires unless a test says so

needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")
needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


# -- the harness: one backend, one event loop, synchronous calls ------------------------------------


@dataclass
class PotState:
    spent: int
    reserved: int  # the counter
    reservations: int  # how many calls hold one
    held: int  # what those hold together (must equal `reserved`)
    credit: int


class Harness:
    """A backend driven from synchronous test code. The Redis backend's client belongs to an event
    loop (config/redis.py), so one loop serves the whole test."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.loop = asyncio.new_event_loop()
        self.backend: RedisBackend | LocalBackend = self.loop.run_until_complete(self._make())

    async def _make(self) -> RedisBackend | LocalBackend:
        return RedisBackend() if self.kind == "redis" else LocalBackend()

    def admit(self, request: Request, *, lease_us: int = LEASE_US) -> Ticket:
        return self.loop.run_until_complete(self.backend.admit(request, lease_us))

    def refused(self, request: Request, *, lease_us: int = LEASE_US) -> errors.GatewayError:
        with pytest.raises(errors.GatewayError) as info:
            self.admit(request, lease_us=lease_us)
        return info.value

    def settle(
        self, ticket: Ticket, *, tokens: int = 0, cost: int = 0, deployment: int | None = None
    ) -> None:
        emitted = self.loop.run_until_complete(
            self.backend.settle(ticket, tokens=tokens, cost=cost, deployment=deployment, event=None)
        )
        assert emitted is False

    def age(self, counter: str, us: int) -> None:
        """Let `us` microseconds pass for one rate counter (its TAT moves back)."""
        if isinstance(self.backend, LocalBackend):
            self.backend.tat[counter] -= us
        else:
            client = sync_client()
            client.set(counter, int(cast(bytes, client.get(counter))) - us, keepttl=True)

    def pot(self, pot: Pot) -> PotState:
        if isinstance(self.backend, LocalBackend):
            local = self.backend.pots[pot.key]
            held = sum(amount for amount, _ in local.reserved.values())
            return PotState(local.spent, held, len(local.reserved), held, local.credit)
        raw = cast(dict[bytes, bytes], sync_client().hgetall(pot.key))
        values = {k.decode(): v for k, v in raw.items()}
        holds = [int(v) for k, v in values.items() if k.startswith("r:")]
        state = PotState(
            int(values["spent"]), int(values["reserved"]), len(holds), sum(holds), int(values["credit"])
        )
        # Every reservation has its expiry beside it, and nothing else does.
        assert sync_client().zcard(pot.expiry_key) == state.reservations
        return state

    def close(self) -> None:
        self.loop.run_until_complete(close_async_client())
        self.loop.close()


@pytest.fixture(params=[pytest.param("redis", marks=needs_redis), "local"])
def gov(request: pytest.FixtureRequest) -> Iterator[Harness]:
    harness = Harness(request.param)
    yield harness
    harness.close()


@pytest.fixture
def tenant(transactional_db: None) -> Any:
    return tenant_create(name="Governed", slug="governed")


def subject(name: str = "API key", **limits: int) -> Subject:
    tag = uuid.uuid4().hex[:12]
    keys = (redis_key("rl", "t", tag, "r"), redis_key("rl", "t", tag, "t"), redis_key("rl", "t", tag, "c"))
    return Subject(name, keys, Limits(**limits))


Deployment = tuple[int, str, str, int | None, int | None]  # as Request.deployments lists them


def deployment(deployment_id: int, *, rpm: int | None = None, tpm: int | None = None) -> Deployment:
    tag = f"{deployment_id}-{uuid.uuid4().hex[:8]}"
    return (deployment_id, redis_key("rl", "d", tag, "r"), redis_key("rl", "d", tag, "t"), rpm, tpm)


def ask(
    *,
    subjects: list[Subject] | None = None,
    deployments: list[Deployment] | None = None,
    pots: list[Pot] | None = None,
    prompt_cost: int = 0,
    per_token: int = 0,
    want: int = 0,
    max_cost: int | None = None,
) -> Request:
    return Request(
        request_id=uuid.uuid4().hex,
        subjects=subjects or [],
        deployments=deployments or [],
        pots=pots or [],
        prompt_cost=prompt_cost,
        per_token=per_token,
        want_tokens=want,
        max_cost=max_cost,
    )


def budget(nanos: int, *, scope: str = "tenant", period: str = "month") -> BudgetInfo:
    return BudgetInfo(
        id=f"t-{uuid.uuid4().hex[:12]}",
        scope=scope,
        end_user="",
        amount_nanos=nanos,
        period=period,
        hard=True,
    )


def pots_of(tenant: Any, *budgets: BudgetInfo, prepaid: bool = False, key_id: int = 1) -> list[Pot]:
    """The pots admission applies, built the way gateway/proxy.py builds them."""
    key = KeyInfo(
        id=key_id,
        tenant_id=tenant.id,
        digest="",
        active=True,
        tenant_active=True,
        expires_at=None,
        allowed_models=None,
        allowed_networks=(),
        ip_restricted=False,
        tenant_tz=tenant.timezone,
        prepaid=prepaid,
        budgets=budgets,
    )
    return budget_pots(key, "", timezone.now())


def usage(tenant: Any, nanos: int, *, key_id: int | None = None) -> None:
    """A call already in the ledger this period."""
    UsageRecord.objects.create(
        request_id=uuid.uuid4().hex,
        created_at=timezone.now(),
        tenant=tenant,
        api_key_id=key_id,
        cost=Decimal(nanos) / 10**9,
        status=200,
    )


# -- requests per minute ----------------------------------------------------------------------------------


def test_rpm_admits_a_burst_of_exactly_n_then_refuses_until_one_interval_passes(gov):
    n = 5
    key = subject(rpm=n)
    tickets = [gov.admit(ask(subjects=[key])) for _ in range(n)]
    assert [t.headers["x-ratelimit-limit-requests"] for t in tickets] == [str(n)] * n
    assert [t.headers["x-ratelimit-remaining-requests"] for t in tickets] == ["4", "3", "2", "1", "0"]
    # The counter is full again one interval (60 s / 5) after each admission.
    assert tickets[0].headers["x-ratelimit-reset-requests"] == "12s"
    assert "x-ratelimit-limit-tokens" not in tickets[0].headers

    refusal = gov.refused(ask(subjects=[key]))
    assert isinstance(refusal, errors.RateLimited)
    assert (refusal.status, refusal.type, refusal.code) == (429, "requests", "rate_limit_exceeded")
    assert refusal.headers["Retry-After"] == "12"  # 60 s / N: when the next one fits
    assert refusal.message == (
        "Rate limit reached for this API key on requests per min (RPM): Limit 5. Please try again in 12s."
    )
    # A refusal takes nothing: refused again, with the same wait.
    assert gov.refused(ask(subjects=[key])).headers["Retry-After"] == "12"

    gov.age(key.keys[0], 12_000_000)  # one interval later: exactly one more
    again = gov.admit(ask(subjects=[key]))
    assert again.headers["x-ratelimit-remaining-requests"] == "0"
    gov.refused(ask(subjects=[key]))


def test_the_tightest_subject_refuses_and_names_itself(gov):
    key, org = subject("API key", rpm=10), subject("organization", rpm=2)
    for remaining in ("1", "0"):
        # The headers show the subject closest to its limit.
        ticket = gov.admit(ask(subjects=[key, org]))
        assert ticket.headers["x-ratelimit-limit-requests"] == "2"
        assert ticket.headers["x-ratelimit-remaining-requests"] == remaining
    refusal = gov.refused(ask(subjects=[key, org]))
    assert "for this organization on requests per min (RPM): Limit 2" in refusal.message
    # The key's own counter was not charged for the refused call: 8 more fit on it alone.
    assert [gov.admit(ask(subjects=[key])).headers["x-ratelimit-remaining-requests"] for _ in range(8)] == [
        str(7 - i) for i in range(8)
    ]
    gov.refused(ask(subjects=[key]))


def test_a_refusal_anywhere_charges_no_counter(gov, tenant):
    key = subject(rpm=3, concurrency=3)
    pots = pots_of(tenant, budget(1_000))
    full = deployment(7, rpm=1)
    gov.admit(ask(deployments=[full]))
    # Refused by the budget (the prompt alone costs more than it has) and by the deployment's quota.
    for _ in range(5):
        assert gov.refused(ask(subjects=[key], pots=pots, prompt_cost=5_000)).status == 402
        assert gov.refused(ask(subjects=[key], deployments=[full])).status == 429
    # Still the whole burst of 3 and all 3 concurrency slots (none of the 10 took one), no reservation.
    tickets = [gov.admit(ask(subjects=[key])) for _ in range(3)]
    assert tickets[0].headers["x-ratelimit-remaining-requests"] == "2"
    assert gov.pot(pots[0]) == PotState(spent=0, reserved=0, reservations=0, held=0, credit=0)


# -- tokens per minute ------------------------------------------------------------------------------------


def test_tpm_admits_while_under_and_counts_the_tokens_settled(gov):
    key = subject(tpm=100)
    first = gov.admit(ask(subjects=[key]))
    assert first.headers["x-ratelimit-limit-tokens"] == "100"
    assert first.headers["x-ratelimit-remaining-tokens"] == "100"  # nothing used yet: admission counts none
    assert "x-ratelimit-limit-requests" not in first.headers
    second = gov.admit(ask(subjects=[key]))  # in flight together: tokens are counted when they are known
    assert second.headers["x-ratelimit-remaining-tokens"] == "100"
    gov.settle(first, tokens=60)
    third = gov.admit(ask(subjects=[key]))
    assert third.headers["x-ratelimit-remaining-tokens"] == "40"
    gov.settle(second, tokens=60)  # 120 of 100 used
    refusal = gov.refused(ask(subjects=[key]))
    assert (refusal.status, refusal.type, refusal.code) == (429, "tokens", "rate_limit_exceeded")
    assert "for this API key on tokens per min (TPM): Limit 100" in refusal.message
    # 120 tokens at 0.6 s each drain to below 100 in about 12 s.
    assert 12 <= int(refusal.headers["Retry-After"]) <= 13
    gov.settle(third, tokens=0)  # a call that used nothing adds nothing
    gov.age(key.keys[1], 36_000_000)  # 60 of the 120 tokens have drained away
    assert gov.admit(ask(subjects=[key])).headers["x-ratelimit-remaining-tokens"] == "40"


# -- concurrency ----------------------------------------------------------------------------------------


def test_concurrency_admits_c_and_settlement_frees_a_slot(gov):
    c = 3
    key = subject(concurrency=c)
    tickets = [gov.admit(ask(subjects=[key])) for _ in range(c)]
    refusal = gov.refused(ask(subjects=[key]))
    assert (refusal.status, refusal.type, refusal.headers["Retry-After"]) == (429, "requests", "1")
    assert refusal.message == (
        "Concurrency limit reached for this API key: Limit 3 requests in flight. "
        "Please try again when one of them has finished."
    )
    gov.settle(tickets[1])
    tickets[1] = gov.admit(ask(subjects=[key]))
    gov.refused(ask(subjects=[key]))
    for ticket in tickets:
        gov.settle(ticket)
    assert len([gov.admit(ask(subjects=[key])) for _ in range(c)]) == c


def test_a_lease_that_expires_frees_the_slot_of_a_call_never_settled(gov):
    key = subject(concurrency=2)
    gov.admit(ask(subjects=[key]), lease_us=150_000)  # its process dies: never settled
    kept = gov.admit(ask(subjects=[key]))
    gov.refused(ask(subjects=[key]))
    time.sleep(0.2)
    late = gov.admit(ask(subjects=[key]))
    gov.refused(ask(subjects=[key]))
    # The call that keeps its lease still holds its slot; settling it frees one.
    gov.settle(kept)
    gov.admit(ask(subjects=[key]))
    gov.refused(ask(subjects=[key]))
    gov.settle(late)


# -- budgets -----------------------------------------------------------------------------------------------

# Prompt 1,000 nano-dollars at most, 10 per output token, up to 100 tokens: 2,000 at worst.
PRICED = {"prompt_cost": 1_000, "per_token": 10, "want": 100}


def test_a_budget_reserves_the_worst_case_and_settlement_replaces_it_with_the_cost(gov, tenant):
    pots = pots_of(tenant, budget(10_000))
    ticket = gov.admit(ask(pots=pots, **PRICED))
    assert (ticket.reserved, ticket.capped) == (2_000, None)
    assert gov.pot(pots[0]) == PotState(spent=0, reserved=2_000, reservations=1, held=2_000, credit=0)
    other = gov.admit(ask(pots=pots, **PRICED))
    assert gov.pot(pots[0]).reserved == 4_000
    gov.settle(ticket, cost=1_234)
    assert gov.pot(pots[0]) == PotState(spent=1_234, reserved=2_000, reservations=1, held=2_000, credit=0)
    gov.settle(other, cost=0)  # a failed call: its reservation is released, nothing spent
    assert gov.pot(pots[0]) == PotState(spent=1_234, reserved=0, reservations=0, held=0, credit=0)


def test_what_is_left_caps_the_output_before_it_refuses(gov, tenant):
    pots = pots_of(tenant, budget(5_500))
    held = [gov.admit(ask(pots=pots, **PRICED)) for _ in range(2)]  # 4,000 reserved, 1,500 left
    capped = gov.admit(ask(pots=pots, **PRICED))
    # 1,500 pays for the prompt and 50 tokens: admitted with its output lowered to those.
    assert (capped.capped, capped.reserved) == (50, 1_500)
    assert gov.pot(pots[0]).reserved == 5_500
    refusal = gov.refused(ask(pots=pots, **PRICED))  # nothing left for the prompt
    assert isinstance(refusal, errors.PaymentRequired)
    assert (refusal.status, refusal.type, refusal.code) == (402, "insufficient_quota", "budget_exceeded")
    assert refusal.message == (
        "This request would exceed the monthly budget of this organization. It resets when the period "
        "ends, or an administrator can raise it."
    )
    gov.settle(held[0], cost=1_009)  # 991 back
    # 991 pays for the prompt but not one token more: still refused, never admitted at a loss.
    gov.refused(ask(pots=pots, **PRICED))
    gov.settle(held[1], cost=1_989)  # 11 back: 1,002 left, the prompt and no token
    gov.refused(ask(pots=pots, **PRICED))
    gov.settle(capped, cost=1_490)  # 12 back: 1,012 left, the prompt and one token
    assert gov.admit(ask(pots=pots, **PRICED)).capped == 1
    state = gov.pot(pots[0])
    assert state.spent + state.reserved == 5_498 <= 5_500


def test_a_budget_is_created_from_the_ledger(gov, tenant):
    usage(tenant, 9_000)  # spent this month before the counters existed
    usage(tenant, 7_000, key_id=99)  # the key's own call, which counts for the tenant too
    usage(tenant, 50_000, key_id=5)  # another key's, last month: in no budget of this period
    UsageRecord.objects.filter(api_key_id=5).update(created_at=timezone.now() - timedelta(days=40))
    pots = pots_of(tenant, budget(30_000), budget(8_500, scope="key"), key_id=99)
    ticket = gov.admit(ask(pots=pots, **PRICED))
    assert [gov.pot(p).spent for p in pots] == [16_000, 7_000]
    assert ticket.capped == 50  # the key's 1,500 left are the tightest


def test_an_overdrawn_budget_refuses_even_when_the_next_one_has_room(gov, tenant):
    # The tenant's budget was lowered below what it has spent: nothing is left, whatever the other
    # budgets (the key's, the credits) still have.
    usage(tenant, 3_000, key_id=1)
    pots = pots_of(tenant, budget(2_000), budget(1_000_000, scope="key"))
    refusal = gov.refused(ask(pots=pots, **PRICED))
    assert refusal.code == "budget_exceeded" and "of this organization" in refusal.message
    assert gov.pot(pots[1]) == PotState(spent=3_000, reserved=0, reservations=0, held=0, credit=0)


def test_the_tightest_of_several_budgets_caps_and_every_one_is_charged(gov, tenant):
    roomy, tight = budget(1_000_000), budget(1_700, scope="key")
    pots = pots_of(tenant, roomy, tight)
    ticket = gov.admit(ask(pots=pots, **PRICED))
    assert ticket.capped == 70
    assert [gov.pot(p).reserved for p in pots] == [1_700, 1_700]
    refusal = gov.refused(ask(pots=pots, **PRICED))
    assert "the monthly budget of this API key" in refusal.message
    gov.settle(ticket, cost=1_300)
    assert [(gov.pot(p).spent, gov.pot(p).reserved) for p in pots] == [(1_300, 0), (1_300, 0)]


def test_an_expired_reservation_is_released_at_the_next_admission(gov, tenant):
    pots = pots_of(tenant, budget(3_000))
    dead = gov.admit(ask(pots=pots, **PRICED), lease_us=150_000)  # its process dies mid-call
    gov.refused(ask(pots=pots, **PRICED))  # 1,000 left: not even the prompt and one token
    assert gov.pot(pots[0]) == PotState(spent=0, reserved=2_000, reservations=1, held=2_000, credit=0)
    time.sleep(0.2)
    # The dead call's 2,000 come back: this one is admitted in full.
    revived = gov.admit(ask(pots=pots, **PRICED))
    assert (revived.reserved, revived.capped) == (2_000, None)
    assert gov.pot(pots[0]) == PotState(spent=0, reserved=2_000, reservations=1, held=2_000, credit=0)
    # Had the call settled after all, it gives back nothing it no longer holds.
    gov.settle(dead, cost=0)
    assert gov.pot(pots[0]) == PotState(spent=0, reserved=2_000, reservations=1, held=2_000, credit=0)
    gov.settle(revived, cost=700)
    assert gov.pot(pots[0]) == PotState(spent=700, reserved=0, reservations=0, held=0, credit=0)


def test_credits_pay_from_the_balance_and_a_top_up_reaches_the_pot(gov, tenant):
    from billing.credits import credit_add

    credit_add(tenant=tenant, kind="topup", usd=Decimal("0.000003"))  # 3,000 nano-dollars
    pots = pots_of(tenant, prepaid=True)
    assert [p.kind for p in pots] == ["c"]
    first = gov.admit(ask(pots=pots, **PRICED))
    assert (first.reserved, first.capped) == (2_000, None)
    assert gov.pot(pots[0]) == PotState(spent=0, reserved=2_000, reservations=1, held=2_000, credit=3_000)
    refusal = gov.refused(ask(pots=pots, **PRICED))  # 1,000 left: the prompt, no token
    assert (refusal.status, refusal.code) == (402, "credits_exhausted")
    assert (
        refusal.message == "Your prepaid credit balance cannot pay for this request. Top up or redeem a code."
    )
    gov.settle(first, cost=1_500)
    assert gov.pot(pots[0]) == PotState(spent=1_500, reserved=0, reservations=0, held=0, credit=3_000)
    credit_add(tenant=tenant, kind="topup", usd=Decimal("0.000001"))
    if isinstance(gov.backend, LocalBackend):
        gov.backend.CREDIT_REFRESH_SECONDS = 0.0  # it re-reads the ledger every few seconds
    # 3,000 + 1,000 - 1,500 = 2,500 left: the worst case fits again.
    assert gov.admit(ask(pots=pots, **PRICED)).capped is None
    assert gov.pot(pots[0]).credit == 4_000


# -- x-tollhouse-max-cost ---------------------------------------------------------------------------------


def test_max_cost_alone_caps_or_refuses(gov):
    roomy = gov.admit(ask(max_cost=2_000, **PRICED))
    assert (roomy.reserved, roomy.capped, roomy.pots) == (2_000, None, [])
    capped = gov.admit(ask(max_cost=1_555, **PRICED))
    assert (capped.capped, capped.reserved) == (55, 1_550)
    refusal = gov.refused(ask(max_cost=1_009, **PRICED))
    assert (refusal.status, refusal.code) == (402, "max_cost_exceeded")
    assert "x-tollhouse-max-cost" in refusal.message
    gov.settle(capped, cost=1_200)  # no pot: nothing to give back, nothing fails


def test_max_cost_below_a_budget_names_itself_and_above_it_the_budget_does(gov, tenant):
    pots = pots_of(tenant, budget(1_500))
    assert gov.refused(ask(pots=pots, max_cost=500, **PRICED)).code == "max_cost_exceeded"
    assert gov.admit(ask(pots=pots, max_cost=1_200, **PRICED)).capped == 20
    assert gov.refused(ask(pots=pots, max_cost=1_000_000, **PRICED)).code == "budget_exceeded"


# -- deployments ---------------------------------------------------------------------------------------


def test_the_first_deployment_with_room_is_chosen_and_all_full_is_a_429(gov):
    first, second = deployment(11, rpm=2), deployment(12, rpm=1)
    chosen = [gov.admit(ask(deployments=[first, second])).deployment for _ in range(3)]
    assert chosen == [0, 0, 1]
    refusal = gov.refused(ask(deployments=[first, second]))
    assert (refusal.status, refusal.type) == (429, "requests")
    assert refusal.message.startswith(
        "Rate limit reached for every upstream deployment of this model on requests per min (RPM): Limit 2."
    )
    # One without a quota (as gateway/proxy.py lists it after limited ones) always has room.
    unlimited = deployment(13)
    assert gov.admit(ask(deployments=[first, second, unlimited])).deployment == 2


def test_a_deployment_full_of_tokens_is_skipped_after_settlement_counts_them(gov):
    first, second = deployment(21, tpm=100), deployment(22, tpm=1_000)
    ticket = gov.admit(ask(deployments=[first, second]))
    assert ticket.deployment == 0
    gov.settle(ticket, tokens=150, deployment=21)  # counted on the deployment that served it
    ticket = gov.admit(ask(deployments=[first, second]))
    assert ticket.deployment == 1
    gov.settle(ticket, tokens=1_100, deployment=22)
    refusal = gov.refused(ask(deployments=[first, second]))
    assert refusal.type == "tokens"
    # Both full: the refusal names the one that frees up first (1,000 tpm: 7 s; 100 tpm: 54 s).
    assert "every upstream deployment of this model on tokens per min (TPM): Limit 1000." in refusal.message
    assert refusal.headers["Retry-After"] in {"6", "7"}


def test_a_fallback_deployment_is_held_to_its_own_caps(gov):
    """The executor falls back to a deployment admission did not pick: Governor.deployment_wait
    checks (and counts) that deployment's own rpm, and its tpm once settlement counted tokens, and
    says how long until it has room."""
    governor = Governor()
    ticket = gov.admit(ask(deployments=[deployment(41)]))
    ticket.backend = gov.backend
    ids = [900_000 + int(uuid.uuid4().hex[:6], 16) for _ in range(2)]
    by_requests = SimpleNamespace(id=ids[0], rpm_limit=1, tpm_limit=None)
    by_tokens = SimpleNamespace(id=ids[1], rpm_limit=None, tpm_limit=100)

    def wait(target: Any) -> int:
        return gov.loop.run_until_complete(governor.deployment_wait(ticket, target))

    assert wait(by_requests) == 0  # its one request a minute
    assert 59_000_000 < wait(by_requests) <= 60_000_000  # spent: the fallback skips it for a minute
    assert wait(by_tokens) == 0
    assert ticket.deployment_tpm[by_tokens.id][1] == 100
    gov.settle(ticket, tokens=150, deployment=by_tokens.id)  # counted on the fallback that served
    assert wait(by_tokens) > 0


# -- a property: a hard budget is never exceeded, and settles to the ledger -----------------------------

ADMIT = st.tuples(
    st.just("admit"),
    st.integers(min_value=0, max_value=3_000),  # prompt cost
    st.integers(min_value=0, max_value=60),  # per token
    st.integers(min_value=0, max_value=200),  # tokens wanted
    st.one_of(st.none(), st.integers(min_value=0, max_value=20_000)),  # max cost
)
SETTLE = st.tuples(st.just("settle"), st.integers(min_value=0, max_value=1_000), st.integers(0, 1_000))


@needs_redis
@hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limits=st.lists(st.integers(min_value=0, max_value=30_000), min_size=1, max_size=2),
    steps=st.lists(st.one_of(ADMIT, SETTLE), max_size=40),
)
def test_interleaved_admissions_and_settlements_never_overspend(gov, tenant, limits, steps):
    scopes = ("tenant", "key")[: len(limits)]
    pots = pots_of(tenant, *(budget(limit, scope=scope) for limit, scope in zip(limits, scopes, strict=True)))
    limit = min(limits)
    spent = reserved = 0
    open_: list[tuple[Ticket, int]] = []
    created = False  # the pots exist from the first admission on
    for step in steps:
        if step[0] == "admit":
            created = True
            _, prompt, per_token, want, max_cost = step
            headroom = limit - spent - reserved
            if max_cost is not None:
                headroom = min(headroom, max_cost)
            worst = prompt + want * per_token
            request = ask(pots=pots, prompt_cost=prompt, per_token=per_token, want=want, max_cost=max_cost)
            if headroom >= worst:
                ticket = gov.admit(request)
                assert (ticket.reserved, ticket.capped) == (worst, None)
            elif per_token > 0 and headroom >= prompt + per_token:
                ticket = gov.admit(request)
                # Capped to exactly what is left pays for: no false refusal, no overspend.
                assert ticket.capped == (headroom - prompt) // per_token
                assert ticket.reserved == prompt + ticket.capped * per_token <= headroom
            else:
                refusal = gov.refused(request)
                max_cost_tighter = max_cost is not None and max_cost <= limit - spent - reserved
                assert refusal.code == ("max_cost_exceeded" if max_cost_tighter else "budget_exceeded")
                continue
            reserved += ticket.reserved
            open_.append((ticket, ticket.reserved))
        elif open_:
            _, which, permille = step
            ticket, held = open_.pop(which % len(open_))
            cost = held * permille // 1_000  # what it really cost: never more than it reserved
            gov.settle(ticket, cost=cost)
            reserved -= held
            spent += cost
        for pot in pots if created else []:
            state = gov.pot(pot)
            assert (state.spent, state.reserved, state.held) == (spent, reserved, reserved)
            assert state.spent + state.reserved <= pot.limit_nanos
    for ticket, held in open_:
        gov.settle(ticket, cost=held)
        spent += held
    for pot in pots if created else []:
        state = gov.pot(pot)
        assert (state.spent, state.reserved, state.reservations) == (spent, 0, 0)
        assert spent <= pot.limit_nanos


# -- the facade: which backend, and Redis going away -----------------------------------------------------


def _governor_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gateway.governor" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize("configured", [pytest.param(True, marks=needs_redis), False])
def test_the_governor_uses_redis_when_configured_and_the_lease_setting(configured, settings):
    if not configured:
        settings.REDIS_URL = None  # the embedded default
    settings.TOLLHOUSE_LEASE_SECONDS = 0.15
    key = subject(concurrency=1)

    async def main() -> None:
        governor = Governor()
        try:
            ticket = await governor.admit(ask(subjects=[key]))
            assert ticket.backend.name == ("redis" if configured else "local")
            with pytest.raises(errors.RateLimited):
                await governor.admit(ask(subjects=[key]))
            await asyncio.sleep(0.2)  # the lease ran out: the slot of the unsettled call is free
            again = await governor.admit(ask(subjects=[key]))
            await governor.settle(again, tokens=1, cost=0, deployment=None, event=None)
            await governor.settle(ticket, tokens=1, cost=0, deployment=None, event=None)
            await governor.admit(ask(subjects=[key]))
        finally:
            await close_async_client()

    asyncio.run(main())


@needs_redis_server
def test_fail_closed_refuses_with_503_logs_once_each_way_and_recovers(settings, caplog):
    caplog.set_level(logging.INFO, logger="gateway.governor")
    port = free_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"  # nothing listens there (yet)
    settings.TOLLHOUSE_REDIS_FAILURE = "closed"
    key = subject(rpm=2)
    redis_server = RedisServer(port=port)

    async def main() -> None:
        governor = Governor()
        governor.PROBE_MIN_SECONDS, governor.PROBE_MAX_SECONDS = 0.05, 0.2
        try:
            started = time.monotonic()
            while time.monotonic() - started < 0.6:  # several calls, and several probes that fail
                with pytest.raises(errors.ServiceUnavailable) as info:
                    await governor.admit(ask(subjects=[key]))
                await asyncio.sleep(0.03)
            refusal = info.value
            assert (refusal.status, refusal.type, refusal.code) == (
                503,
                "service_unavailable",
                "service_unavailable",
            )
            assert refusal.message == (
                "Rate limits and budgets cannot be checked right now (their store is unreachable); "
                "please retry shortly."
            )
            assert len(_governor_warnings(caplog)) == 1
            assert "refusing calls with 503 (fail-closed)" in _governor_warnings(caplog)[0]

            redis_server.start()
            deadline = time.monotonic() + 3
            while True:
                try:
                    ticket = await governor.admit(ask(subjects=[key]))
                    break
                except errors.ServiceUnavailable:
                    assert time.monotonic() < deadline, "the governor did not come back to Redis"
                    await asyncio.sleep(0.02)
            assert ticket.backend.name == "redis"
            warnings = _governor_warnings(caplog)
            assert len(warnings) == 2 and "reachable again" in warnings[1]
            # Limits are Redis's again: 2 a minute, the first of them the call that found it back.
            await governor.admit(ask(subjects=[key]))
            with pytest.raises(errors.RateLimited):
                await governor.admit(ask(subjects=[key]))
            assert len(_governor_warnings(caplog)) == 2
        finally:
            await close_async_client()

    try:
        asyncio.run(main())
    finally:
        redis_server.stop()


@needs_redis_server
def test_fail_open_governs_in_process_logs_once_each_way_and_recovers(settings, caplog):
    caplog.set_level(logging.INFO, logger="gateway.governor")
    secret = "s3cret-redis-password"
    redis_server = RedisServer("--requirepass", secret)
    settings.REDIS_URL = f"redis://:{secret}@127.0.0.1:{redis_server.port}/0"
    settings.TOLLHOUSE_REDIS_FAILURE = "open"
    key = subject(rpm=2)

    async def main() -> None:
        governor = Governor()
        governor.PROBE_MIN_SECONDS, governor.PROBE_MAX_SECONDS = 0.05, 0.2
        try:
            # Down: each process on its own, with the same limits.
            tickets = [await governor.admit(ask(subjects=[key])) for _ in range(2)]
            assert [t.backend for t in tickets] == [governor.local, governor.local]
            await asyncio.sleep(0.1)  # a probe is due: it fails, the call is still governed locally
            with pytest.raises(errors.RateLimited):
                await governor.admit(ask(subjects=[key]))
            for ticket in tickets:
                assert await governor.settle(ticket, tokens=3, cost=0, deployment=None, event=b"{}") is False
            warnings = _governor_warnings(caplog)
            assert len(warnings) == 1 and "fail-open" in warnings[0]

            redis_server.start()
            deadline = time.monotonic() + 3
            while True:
                with contextlib.suppress(errors.RateLimited):  # the local limit, until Redis is back
                    ticket = await governor.admit(ask(subjects=[key]))
                    assert ticket.backend is not governor.local
                    break
                assert time.monotonic() < deadline, "the governor did not come back to Redis"
                await asyncio.sleep(0.02)
            warnings = _governor_warnings(caplog)
            assert len(warnings) == 2 and "reachable again" in warnings[1]
        finally:
            await close_async_client()

    try:
        asyncio.run(main())
    finally:
        redis_server.stop()
    assert secret not in caplog.text


@needs_redis_server
def test_a_settlement_that_cannot_reach_redis_does_not_fail_the_call(settings, caplog):
    caplog.set_level(logging.INFO, logger="gateway.governor")
    redis_server = RedisServer().start()
    settings.REDIS_URL = redis_server.url
    settings.TOLLHOUSE_REDIS_FAILURE = "closed"

    async def main() -> None:
        governor = Governor()
        try:
            ticket = await governor.admit(ask(subjects=[subject(concurrency=1)]))
            redis_server.stop()  # Redis goes away while the call is upstream
            assert await governor.settle(ticket, tokens=5, cost=10, deployment=None, event=b"{}") is False
            with pytest.raises(errors.ServiceUnavailable):
                await governor.admit(ask(subjects=[subject(rpm=1)]))
        finally:
            await close_async_client()

    try:
        asyncio.run(main())
    finally:
        redis_server.stop()
    warnings = _governor_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert "will expire and reconciliation will count its cost" in warnings[0]
    assert "unreachable" in warnings[1]


@needs_redis
def test_a_settlement_sent_soon_is_in_redis_before_its_reply_is_awaited(settings, caplog):
    """`Governor.settle_sent` (a JSON answer's settlement): once the caller has yielded, before it
    awaits the reply, the concurrency slot is free and the usage event appended; the reply then says
    the event went in.
    In-process limits have no command to send: None, and `settle` does it all."""
    from billing.usage import stream_key

    caplog.set_level(logging.INFO, logger="gateway.governor")
    key = subject(concurrency=1)
    sync = sync_client()

    async def main() -> list[Any]:
        governor = Governor()
        try:
            ticket = await governor.admit(ask(subjects=[key]))  # opens this loop's lean connection
            events = sync.xlen(stream_key())
            reply = governor.settle_sent(ticket, tokens=3, cost=0, deployment=None, event=b'{"x":1}')
            assert reply is not None and ticket.settled
            await asyncio.sleep(0)  # as gateway/asgi.py yields before it sends the answer
            # The reply not awaited yet: Redis already has the settlement.
            seen = [sync.zcard(key.keys[2]), sync.xlen(stream_key()) - events]
            # Settled is settled: neither way settles it twice.
            assert governor.settle_sent(ticket, tokens=3, cost=0, deployment=None, event=None) is None
            assert await governor.settle(ticket, tokens=3, cost=0, deployment=None, event=None) is False
            seen.append(await reply)
            admitted = await governor.admit(ask(subjects=[key]))  # the slot is free
            local = await governor.local.admit(ask(subjects=[subject()]), LEASE_US)
            seen.append(governor.settle_sent(local, tokens=1, cost=0, deployment=None, event=None))
            await governor.settle(admitted, tokens=0, cost=0, deployment=None, event=None)
            return seen
        finally:
            await close_async_client()

    assert asyncio.run(main()) == [0, 1, True, None]
    assert _governor_warnings(caplog) == []


@needs_redis_server
def test_a_settlement_sent_soon_whose_reply_does_not_come_in_time_fails_like_settle(settings, caplog):
    """Redis takes the command but answers too late (paused, on a Redis of this test's own): the reply
    says the event was not appended (the caller's sink keeps it) and Redis is marked down, with the
    warnings `settle` gives."""
    caplog.set_level(logging.INFO, logger="gateway.governor")
    redis_server = RedisServer().start()
    settings.REDIS_URL = redis_server.url
    settings.TOLLHOUSE_REDIS_FAILURE = "closed"
    settings.TOLLHOUSE_GOVERNOR_REDIS_TIMEOUT = 0.2

    async def main() -> bool:
        governor = Governor()
        try:
            ticket = await governor.admit(ask(subjects=[subject(concurrency=1)]))
            redis.Redis.from_url(redis_server.url).execute_command("CLIENT", "PAUSE", 1000, "ALL")
            reply = governor.settle_sent(ticket, tokens=5, cost=10, deployment=None, event=b"{}")
            assert reply is not None
            return await reply
        finally:
            await close_async_client()

    try:
        assert asyncio.run(main()) is False
    finally:
        redis_server.stop()
    warnings = _governor_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert "will expire and reconciliation will count its cost" in warnings[0]
    assert "TimeoutError" in warnings[0] and "unreachable" in warnings[1]

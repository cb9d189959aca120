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
import redis
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
    return budget_pot(tenant.id, budget.id, span.label, "")


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


def _one_at_a_time(gateways: list[str], key: str, seen: Any, calls: int = 40) -> list[tuple[Any, ...]]:
    """`calls` JSON calls of `key`, one at a time, alternating between the processes; after each
    answer, before anything else: (status, new usage events in the stream, *seen(response))."""
    from billing.usage import stream_key

    redis_client, rows = sync_client(), []
    with httpx.Client(timeout=20) as client:
        for i in range(calls):
            events = redis_client.xlen(stream_key())
            response = client.post(
                gateways[i % 2] + "/v1/chat/completions",
                content=ask("[mock tokens=3]"),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            after = seen(response)  # first: the budget as the answer found it
            rows.append((response.status_code, redis_client.xlen(stream_key()) - events, *after))
    return rows


def test_a_json_answer_reaches_the_client_after_redis_has_its_settlement(world, gateways):
    """A JSON answer leaves before its settlement's reply is back (gateway/calls.py `settle_soon`),
    but never before Redis has the settlement: a client that calls one process after the other,
    one call at a time, with a concurrency limit of 1, is never refused for its previous call, and
    the moment it has each answer its budget shows that call settled (nothing reserved, its cost
    spent) and the usage stream holds its event."""
    from billing.budgets import budget_set

    budget = budget_set(tenant=world.acme, usd=Decimal("1"), period="month")
    key = api_key_issue(tenant=world.acme, name="one-at-a-time", concurrency_limit=1).raw
    pot_key = _budget_key(budget, world.acme)

    def settled(response: httpx.Response) -> tuple[int, int, bool]:
        pot = _pot(pot_key)
        return pot["reserved"], pot["reservations"], pot["spent"] > 0

    assert _one_at_a_time(gateways, key, settled) == [(200, 1, 0, 0, True)] * 40


def test_a_json_answer_nothing_governs_reaches_the_client_after_its_usage_event_is_in_redis(world, gateways):
    """The same for a key nothing governs (no limits, no budget): its one Redis write, the usage
    event, is in the stream the moment the client has the answer."""

    def governed(response: httpx.Response) -> tuple[bool]:
        return ("x-ratelimit-limit-requests" in response.headers,)

    assert _one_at_a_time(gateways, world.globex_key, governed) == [(200, 1, False)] * 40


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


# --- tenants on one plan: each spends its own counter (issue 12, item 1) ------------------------------


def _plan_tenants(count: int, *, monthly_budget: str, **plan: Any) -> tuple[list[Tenant], list[str]]:
    from accounts.models import Plan
    from accounts.services import tenant_create
    from tests.support.secrets import registry

    shared = Plan.objects.create(name=f"metered-{count}", monthly_budget=Decimal(monthly_budget), **plan)
    tenants = [tenant_create(name=f"Shop {i}", slug=f"shop-{count}-{i}", plan=shared) for i in range(count)]
    keys = [registry.api_key(api_key_issue(tenant=t, name="app").raw) for t in tenants]
    return tenants, keys


def _post(url: str, key: str, body: bytes) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=20,
    )


def _plan_pot(tenant: Tenant) -> str:
    from django.utils import timezone

    from billing.periods import window

    return budget_pot(tenant.id, "plan", window("month", tenant.timezone, timezone.now()).label, "")


@pytest.mark.parametrize("count", [2, 5])
def test_tenants_on_one_plan_each_spend_their_own_monthly_budget(world, gateways, count):
    from billing.reconcile import usage_reconcile

    # $0.003 a month: about nine calls of PROMPT each.
    tenants, keys = _plan_tenants(count, monthly_budget="0.003")
    body = ask(PROMPT, max_tokens=16)
    statuses = []
    for i in range(40):  # the first tenant spends its budget, through both processes
        statuses.append(_post(gateways[i % 2], keys[0], body).status_code)
        if statuses[-1] == 402:
            break
    assert statuses[-1] == 402 and 5 <= statuses.count(200) <= 10, statuses
    for key in keys[1:]:  # every other tenant on the plan is still answered, by either process
        for url in gateways:
            response = _post(url, key, body)
            assert response.status_code == 200, response.text
    # Then all of them at once, until every one has spent its own budget.
    responses = asyncio.run(burst(gateways, keys, 24 * count, body))
    assert {r.status_code for r in responses} <= {200, 402}
    for key in keys:  # reservations of the burst held more than its calls spent: use up the rest
        for _ in range(20):
            refused = _post(gateways[0], key, body)
            if refused.status_code != 200:
                break
        assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exceeded"
    _drain_all()
    for tenant in tenants:
        rows = UsageRecord.objects.filter(tenant=tenant)
        spent = sum(dollars_to_nanos(row.cost) for row in rows)
        assert 0 < spent <= dollars_to_nanos(Decimal("0.003"))
        pot = _pot(_plan_pot(tenant))
        # Each tenant's own counter is its own ledger to the nano-dollar, nothing left reserved.
        assert pot == {"spent": spent, "reserved": 0, "credit": 0, "reservations": 0}, tenant.slug
    assert usage_reconcile() == []


def _written_keys(monitor: Any, into: list[tuple[str, str]], stop: Any) -> None:
    """Every (command, first key) a write command named, from MONITOR (scripts' commands included)."""
    writes = {"SET", "HSET", "HINCRBY", "HDEL", "ZADD", "ZREM", "ZREMRANGEBYSCORE", "PEXPIRE", "EXPIRE"}
    writes |= {"XADD", "DEL", "INCR", "INCRBY", "HSETNX", "SETEX", "PSETEX", "LPUSH", "RPUSH", "SADD"}
    writes |= {"XGROUP", "XACK", "XCLAIM", "XAUTOCLAIM", "UNLINK", "SETNX", "GETSET", "HMSET"}
    while not stop.is_set():
        try:
            response = monitor.connection.read_response()
        except (redis.RedisError, OSError):
            return
        if not isinstance(response, bytes | str):
            continue
        text = response.decode(errors="replace") if isinstance(response, bytes) else response
        match = monitor.monitor_re.match(text.split(" ", 1)[1])
        if match is None:
            continue
        pieces = [piece.replace('\\"', '"') for piece in monitor.command_re.findall(match.group(3))]
        if not pieces:
            continue
        name = pieces[0].upper()
        if name in writes and len(pieces) > 1:
            key = pieces[2] if name == "XGROUP" and len(pieces) > 2 else pieces[1]
            into.append((name, key))


def test_every_counter_the_governor_writes_names_its_tenant_key_or_end_user(world, gateways):
    """Lists every Redis key written during a run of several tenants (two on one plan with a
    monthly budget, one of them on prepaid credits too, budgets of every scope, rate limits of
    every subject) and holds each key that counts money or a limit to naming whose it is."""
    import re
    import threading

    from django.utils import timezone

    from billing.budgets import budget_set
    from billing.credits import credit_add
    from billing.periods import window
    from gateway.models import Deployment

    tenants, keys = _plan_tenants(3, monthly_budget="5", rpm_limit=1000, concurrency_limit=50)
    first, second, prepaid = tenants
    prepaid.prepaid = True
    prepaid.end_user_rpm_limit = 500
    tenant_save(tenant=prepaid)
    credit_add(tenant=prepaid, kind="topup", usd=Decimal("3"))
    limited = api_key_issue(
        tenant=first, name="limited", rpm_limit=900, tpm_limit=100_000, concurrency_limit=9
    )
    keys.append(limited.raw)
    key_budget = budget_set(tenant=first, api_key=limited.api_key, usd=Decimal("2"), period="day")
    each_user = budget_set(tenant=second, end_user="", usd=Decimal("1"), period="week")
    deployment = Deployment.objects.filter(route__name="gpt-4.1").first()
    deployment.rpm_limit = 5000
    deployment.save()
    from config.changes import publish

    publish([{"kind": "all"}])
    time.sleep(0.3)

    written: list[tuple[str, str]] = []
    client = redis.Redis.from_url(settings.REDIS_URL)
    stop = threading.Event()
    with client.monitor() as monitor:
        reader = threading.Thread(target=_written_keys, args=(monitor, written, stop), daemon=True)
        reader.start()
        users = ["alice", "bob"]
        for i, key in enumerate(keys):
            for j, url in enumerate(gateways):
                response = _post(url, key, ask(PROMPT, max_tokens=16, user=users[(i + j) % 2]))
                assert response.status_code == 200, response.text
        _drain_all()
        time.sleep(0.3)
        stop.set()
        client.ping()  # one more line, so the reader wakes up and sees `stop`
        reader.join(5)
    scanned = [key.decode() for key in sync_client().scan_iter(count=1000)]
    every = {key for _, key in written} | set(scanned)
    assert any(name == "HINCRBY" for name, _ in written), "MONITOR saw no settlement"

    prefix = re.escape(settings.TOLLHOUSE_REDIS_PREFIX)
    now = timezone.now()
    tenant_ids = {str(t.id) for t in tenants}
    key_ids = {str(k.id) for t in tenants for k in t.api_keys.all()}
    budgets_of = {str(first.id): {"plan", str(key_budget.id)}, str(second.id): {"plan", str(each_user.id)}}
    budgets_of[str(prepaid.id)] = {"plan"}
    labels = {window(period, "UTC", now).label for period in ("day", "week", "month")}
    # Not counters: the usage stream (each event names its tenant), its dead letters, and the
    # drain's figures for /metrics.
    from billing.usage import dead_letter_key, stream_key
    from gateway.metrics import drain_key

    plain = {stream_key(), dead_letter_key(), drain_key()}
    seen = Counter()
    for key in sorted(every):
        if key in plain or key == "celery" or key.startswith("_kombu."):
            continue  # the Celery broker's queue (the drain queues budget checks through it)
        if m := re.fullmatch(prefix + r"rl:k:(\d+):[rtc]", key):
            assert m[1] in key_ids, key
            seen["key limit"] += 1
        elif m := re.fullmatch(prefix + r"rl:o:(\d+):[rtc]", key):
            assert m[1] in tenant_ids, key
            seen["tenant limit"] += 1
        elif m := re.fullmatch(prefix + r"rl:u:(\d+):(alice|bob):[rtc]", key):
            assert m[1] in tenant_ids, key
            seen["end-user limit"] += 1
        elif m := re.fullmatch(prefix + r"rl:d:(\d+):[rt]", key):
            # An upstream deployment's own quota (the provider account's), shared by design.
            assert m[1] == str(deployment.id), key
            seen["deployment limit"] += 1
        elif m := re.fullmatch(prefix + r"pot:b:(\d+):(\w+):([\w-]+):(alice|bob|)(:x)?", key):
            tenant_id, budget_id, label, subject, _ = m.groups()
            assert tenant_id in tenant_ids and budget_id in budgets_of[tenant_id], key
            assert label in labels, key
            assert subject == "" or budget_id == str(each_user.id), key
            seen[f"budget {'plan' if budget_id == 'plan' else 'own'}"] += 1
        elif m := re.fullmatch(prefix + r"pot:c:(\d+)(:x)?", key):
            assert m[1] == str(prepaid.id), key
            seen["credits"] += 1
        else:
            raise AssertionError(f"a Redis key nobody accounts for: {key}")
    # Every kind was seen, so the check above had something to hold.
    assert set(seen) == {
        "key limit",
        "tenant limit",
        "end-user limit",
        "deployment limit",
        "budget plan",
        "budget own",
        "credits",
    }, seen
    plan_pots = {k for k in every if re.fullmatch(prefix + r"pot:b:\d+:plan:[\w-]+:", k)}
    assert plan_pots == {_plan_pot(t) for t in tenants}

"""The executor under scripted upstream faults (gateway/executor.py, gateway/breaker.py; issue 14):
retries with backoff, Retry-After waited for, a hang cut by the first-byte timeout and failed over,
and a deployment that keeps failing cooled down in two gateway processes at once, then probed back.

Real gateway (in-process server, or two `manage.py serve` processes), real PostgreSQL and Redis,
the project's mock provider over HTTP with fault scripts (`fault_times` + `fault_key`: the first N
requests naming the key fail, the ones after are answered), and the official `openai` SDK.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from django.conf import settings
from django.db import connection

from gateway.mockserver import MockConfig, MockServerThread
from gateway.models import Deployment, ModelRoute, Provider
from gateway.services import deployment_upsert, provider_save, provider_upsert
from tests.conftest import UPSTREAM_SECRET
from tests.support.process import GatewayProcess, free_port, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def sdk(base_url: str, key: str, *, timeout: float = 30) -> openai.OpenAI:
    # No SDK retries: the gateway's own are under test, and each call must leave one row.
    return openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=timeout)


def ask(client: openai.OpenAI, directives: str, model: str = "gpt-4.1") -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"Hello [mock {directives}]"}]
    )


def script() -> str:
    return "fault_key=" + uuid.uuid4().hex


def statuses(row: Any) -> list[int]:
    return [attempt["status"] for attempt in row.attempt_log]


def test_500_500_200_is_one_success_after_three_attempts_on_the_row(gateway_server, world, usage_rows):
    started = time.monotonic()
    reply = ask(sdk(gateway_server, world.key), f"status=500 ttft_ms=0 fault_times=2 {script()} tokens=9")
    assert reply.choices[0].message.content and reply.usage.completion_tokens == 9

    [row] = usage_rows(1)
    assert row.status == 200 and row.error_type == "" and row.attempts == 3
    assert statuses(row) == [500, 500, 200]
    assert [attempt["error_type"] for attempt in row.attempt_log][:2] == ["upstream_error"] * 2
    deployment = Deployment.objects.get(route__name="gpt-4.1", provider=world.provider)
    assert {attempt["deployment_id"] for attempt in row.attempt_log} == {deployment.id}
    assert all(attempt["duration_us"] > 0 for attempt in row.attempt_log)
    # One success billed once, for what it used.
    assert row.completion_tokens == 9 and row.cost > 0
    assert (row.ingress, row.upstream_format) == ("openai_chat", "mock")
    # Backoff between the tries is jittered over 0.25 s, then 0.5 s: never a long wait.
    assert time.monotonic() - started < settings.TOLLHOUSE_UPSTREAM_BACKOFF_SECONDS * 3 + 5


def test_a_429_with_retry_after_is_waited_for_then_answered(gateway_server, world, usage_rows):
    started = time.monotonic()
    reply = ask(
        sdk(gateway_server, world.key), f"status=429 retry_after=1 ttft_ms=0 fault_times=1 {script()}"
    )
    elapsed = time.monotonic() - started
    assert reply.choices[0].message.content
    assert elapsed >= 1.0

    [row] = usage_rows(1)
    assert row.status == 200 and row.attempts == 2 and statuses(row) == [429, 200]
    assert row.attempt_log[0]["error_type"] == "upstream_rate_limited"
    # The second attempt started after the Retry-After second, not before.
    assert row.latency_ms >= Decimal(1000)


def test_a_retry_after_longer_than_the_gateway_waits_is_passed_to_the_client(
    gateway_server, world, usage_rows
):
    wait = int(settings.TOLLHOUSE_UPSTREAM_RETRY_WAIT_MAX_SECONDS) + 10
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        ask(
            sdk(gateway_server, world.key),
            f"status=429 retry_after={wait} ttft_ms=0 fault_times=1 {script()}",
        )
    assert time.monotonic() - started < 2  # not waited out by the gateway
    assert caught.value.response.headers["retry-after"] == str(wait)
    [row] = usage_rows(1)
    assert row.status == 429 and statuses(row) == [429]


@pytest.fixture
def two_deployments(world) -> tuple[Deployment, Deployment]:
    """gpt-4.1 served first by the world's mock provider, with a first-byte timeout of 0.5 s, and
    after it by a second provider (the same mock server, another name)."""
    first_provider = world.provider
    first_provider.first_byte_timeout = Decimal("0.5")
    provider_save(provider=first_provider, credential=None)
    second_provider = provider_upsert(
        name="mock-second", kind="mock", base_url=first_provider.base_url, credential=UPSTREAM_SECRET
    )
    route = ModelRoute.objects.get(name="gpt-4.1")
    first = Deployment.objects.get(route=route, provider=first_provider)
    second = deployment_upsert(route=route, provider=second_provider, upstream_model="gpt-4.1", priority=1)
    return first, second


def test_a_hang_hits_the_first_byte_timeout_and_falls_back_to_the_next_deployment(
    gateway_server, world, usage_rows, two_deployments
):
    first, second = two_deployments
    tries = settings.TOLLHOUSE_UPSTREAM_RETRIES + 1  # every try of the first deployment hangs
    started = time.monotonic()
    reply = ask(sdk(gateway_server, world.key), f"hang fault_times={tries} {script()}")
    elapsed = time.monotonic() - started
    assert reply.choices[0].message.content
    # Each hung try took the 0.5 s first-byte timeout, no more (the provider's read timeout is 1.5 s).
    assert 0.5 * tries <= elapsed < 0.5 * tries + 4

    [row] = usage_rows(1)
    assert row.status == 200 and row.attempts == tries + 1
    assert [(a["deployment_id"], a["status"], a["error_type"]) for a in row.attempt_log] == [
        *[(first.id, 0, "upstream_timeout")] * tries,
        (second.id, 200, ""),
    ]
    assert all(500_000 <= a["duration_us"] < 1_400_000 for a in row.attempt_log[:tries])
    assert row.deployment_id == second.id and row.provider == "mock-second"


# -- two gateway processes, one circuit breaker -----------------------------------------------------

COOLDOWN = 3.0
needs_redis = pytest.mark.skipif(
    not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
)


@pytest.fixture(scope="module")
def _breaker_processes(django_db_setup: Any) -> Any:
    env = subprocess_env(
        settings_dict=connection.settings_dict,
        redis_url=settings.REDIS_URL,
        TOLLHOUSE_BREAKER_FAILURES="2",
        TOLLHOUSE_BREAKER_WINDOW_SECONDS="60",
        TOLLHOUSE_BREAKER_COOLDOWN_SECONDS=str(COOLDOWN),
        TOLLHOUSE_UPSTREAM_RETRIES="0",
    )
    with GatewayProcess(env=env) as one, GatewayProcess(env=env) as two:
        yield [one, two]
        for process in (one, two):
            assert "Traceback" not in process.log(), process.log()


def attempts_of(row: Any) -> list[tuple[int, int, str]]:
    return [(a["deployment_id"], a["status"], a["error_type"]) for a in row.attempt_log]


@needs_redis
def test_a_failing_deployment_is_cooled_down_in_two_processes_and_probed_back(
    world, usage_rows, _breaker_processes
):
    from config.changes import publish

    # gpt-4.1: first a deployment whose upstream is down (nothing listens on its port yet), then
    # the world's mock.
    port = free_port()
    flaky_provider = provider_upsert(
        name="flaky", kind="mock", base_url=f"http://127.0.0.1:{port}/v1", credential=UPSTREAM_SECRET
    )
    route = ModelRoute.objects.get(name="gpt-4.1")
    flaky = deployment_upsert(route=route, provider=flaky_provider, upstream_model="gpt-4.1", priority=0)
    steady = Deployment.objects.get(route=route, provider=world.provider)
    steady.priority = 5
    steady.save()
    publish([{"kind": "all"}])
    time.sleep(0.3)
    one, two = (sdk(process.url, world.key) for process in _breaker_processes)

    # Two failures open the breaker: one call in each process, each failing over to the mock.
    assert ask(one, "tokens=3").choices[0].message.content
    assert ask(two, "tokens=3").choices[0].message.content
    rows = usage_rows(2)
    assert [attempts_of(row)[0][:2] for row in rows] == [(flaky.id, 0), (flaky.id, 0)]
    assert all(attempts_of(row)[-1] == (steady.id, 200, "") for row in rows)

    # Cooled down in both processes at once: neither sends it traffic (seen within a second). Routing
    # puts a deployment in cooldown after every other one, so the calls go straight to the mock.
    time.sleep(1.1)
    for client in (one, two, one, two):
        ask(client, "tokens=3")
    rows = usage_rows(6)[2:]
    assert all(attempts_of(row) == [(steady.id, 200, "")] for row in rows), [attempts_of(row) for row in rows]

    # The upstream comes back. After the cooldown one call probes it, the breaker closes, and both
    # processes send it their traffic again (it comes first).
    with MockServerThread(port=port, config=MockConfig(api_key=UPSTREAM_SECRET)) as revived:
        time.sleep(COOLDOWN)
        ask(one, "tokens=3")
        time.sleep(1.1)  # the other process re-reads the shared state
        for client in (two, one, two):
            ask(client, "tokens=3")
        rows = usage_rows(10)[6:]
        assert [attempts_of(row) for row in rows] == [[(flaky.id, 200, "")]] * 4
        served = httpx.get(revived.url + "/_mock/requests").json()["requests"]
        assert len(served) == 4

    # Each process logged the transitions it made, once: both saw it open (one opened it), one
    # probed it and closed it.
    logs = "".join(process.log() for process in _breaker_processes)
    assert logs.count(f"circuit breaker of deployment {flaky.id} open:") == 1
    assert logs.count(f"circuit breaker of deployment {flaky.id} half-open") == 1
    assert logs.count(f"circuit breaker of deployment {flaky.id} closed") == 1
    provider_ids = {flaky_provider.id, world.provider.id}
    assert Provider.objects.filter(id__in=provider_ids).count() == 2

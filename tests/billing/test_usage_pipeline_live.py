"""The usage pipeline end to end, in production's shape: a gateway process (uvicorn), a Celery
worker process with beat, PostgreSQL and Redis. Hostile calls and a poisoned stream entry must not
keep one innocent call from being billed; a Redis that hangs or refuses costs a call under a second
and loses no usage.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from django.conf import settings
from django.db import connection

from billing.models import UsageRecord
from billing.usage import FIELD, dead_letter_key, stream_key
from config.redis import sync_client
from tests.support.process import GatewayProcess, SilentServer, WorkerProcess, free_port, subprocess_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
    ),
]


def env_for(redis_url: str, **extra: str) -> dict[str, str]:
    return subprocess_env(settings_dict=connection.settings_dict, redis_url=redis_url, **extra)


def chat(gateway: GatewayProcess, key: str | None, body: Any, **headers: str) -> httpx.Response:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers["Content-Type"] = "application/json"
    return httpx.post(gateway.url + "/v1/chat/completions", content=content, headers=headers, timeout=15)


def ask(prompt_tokens: int, tokens: int, **extra: Any) -> dict[str, Any]:
    prompt = f"Hi [mock prompt_tokens={prompt_tokens} tokens={tokens}]"
    return {"model": "gpt-4.1", "messages": [{"role": "user", "content": prompt}], **extra}


def gpt41_cost(prompt_tokens: int, completion_tokens: int) -> Decimal:
    # gpt-4.1 in the demo catalog: $2.00 in, $8.00 out per million tokens
    return (Decimal(prompt_tokens) * 2 + Decimal(completion_tokens) * 8) / 1_000_000


def wait_for_rows(
    request_ids: set[str], *, timeout: float = 45.0, alive: Any = None
) -> dict[str, UsageRecord]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None:
            assert alive.alive(), alive.log()
        if UsageRecord.objects.filter(request_id__in=request_ids).count() >= len(request_ids):
            break
        time.sleep(0.2)
    time.sleep(1.5)  # a little longer, so that a second (wrong) row would show up too
    return {row.request_id: row for row in UsageRecord.objects.all()}


def test_it_bills_every_innocent_call_of_a_batch_with_hostile_ones_through_a_real_worker(world):
    env = env_for(settings.REDIS_URL, TOLLHOUSE_USAGE_DRAIN_SECONDS="1")
    with WorkerProcess(env=env, beat=True) as worker, GatewayProcess(env=env) as gateway:
        innocent: dict[str, tuple[int, int]] = {}
        for i in range(5):
            response = chat(gateway, world.key, ask(100 + i, 10 + i))
            assert response.status_code == 200, response.text
            innocent[response.headers["x-request-id"]] = (100 + i, 10 + i)
        # A forged client address with a key: the call is served; its row has the real peer.
        response = chat(gateway, world.key, ask(50, 5), **{"X-Forwarded-For": "not-an-ip"})
        assert response.status_code == 200
        innocent[response.headers["x-request-id"]] = (50, 5)
        forged = response.headers["x-request-id"]

        hostile = []
        for body in (
            ask(7, 3, user="alice\x00"),  # answered 200 or 400; a row either way
            b'{"model": "gpt-4.1", "user": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}',
            {"model": "gpt\x00-4.1", "messages": [{"role": "user", "content": "hi"}]},
        ):
            response = chat(gateway, world.key, body)
            assert response.status_code < 500, response.text
            hostile.append(response.headers["x-request-id"])
        # Without a key: refused before anyone is identified, so no row (DESIGN §3), and no harm.
        for _ in range(2):
            response = chat(gateway, None, ask(1, 1), **{"X-Forwarded-For": "not-an-ip"})
            assert response.status_code == 401

        # And a poisoned event straight into the stream, as a buggy or older gateway might write it.
        poisoned = {
            "request_id": "raw-poisoned",
            "created_at_us": 1_790_000_000_000_000,
            "tenant_id": world.acme.id,
            "end_user": "mallory\x00",
            "client_ip": "not-an-ip",
            "prompt_tokens": 321,
            "completion_tokens": 12,
            "cost_nanos": 738_000,
            "status": 200,
        }
        sync_client().xadd(stream_key(), {FIELD: orjson.dumps(poisoned)})

        expected = set(innocent) | set(hostile) | {"raw-poisoned"}
        rows = wait_for_rows(expected, alive=worker)
        assert worker.alive(), worker.log()

    assert set(rows) == expected, worker.log()  # exactly one row per call, none for the 401s
    for request_id, (prompt_tokens, completion_tokens) in innocent.items():
        row = rows[request_id]
        assert (row.status, row.error_type, row.tenant_id) == (200, "", world.acme.id)
        assert (row.prompt_tokens, row.completion_tokens) == (prompt_tokens, completion_tokens)
        assert row.cost == gpt41_cost(prompt_tokens, completion_tokens)
    assert rows[forged].client_ip == "127.0.0.1"
    for request_id in hostile:
        row = rows[request_id]
        assert row.tenant_id == world.acme.id and row.status < 500
        assert "\x00" not in row.end_user + row.requested_model
    raw = rows["raw-poisoned"]
    assert (raw.tenant_id, raw.prompt_tokens, raw.completion_tokens) == (world.acme.id, 321, 12)
    assert (raw.cost, raw.end_user, raw.client_ip, raw.error_type) == (
        Decimal("0.000738"),
        "mallory",
        None,
        "sanitised",
    )
    assert sync_client().xlen(stream_key()) == 0
    assert sync_client().xlen(dead_letter_key()) == 0


def timed_calls(
    gateway: GatewayProcess, world: Any, count: int
) -> tuple[dict[str, tuple[int, int]], list[float]]:
    billed: dict[str, tuple[int, int]] = {}
    took = []
    for i in range(count):
        for key in (world.key, "th-notakey-" + "x" * 40):
            started = time.monotonic()
            response = chat(gateway, key, ask(30 + i, 3 + i))
            took.append(time.monotonic() - started)
            if key == world.key:
                assert response.status_code == 200, response.text
                billed[response.headers["x-request-id"]] = (30 + i, 3 + i)
            else:
                assert response.status_code == 401
    return billed, took


def assert_billed(rows: dict[str, UsageRecord], billed: dict[str, tuple[int, int]]) -> None:
    for request_id, (prompt_tokens, completion_tokens) in billed.items():
        row = rows[request_id]
        assert (row.prompt_tokens, row.completion_tokens) == (prompt_tokens, completion_tokens)
        assert row.cost == gpt41_cost(prompt_tokens, completion_tokens)


def usage_stream_warnings(log: str) -> list[str]:
    return [line for line in log.splitlines() if "usage stream unreachable" in line]


def test_it_starts_and_answers_within_a_second_when_redis_hangs_and_loses_no_usage(world):
    with SilentServer() as hung, GatewayProcess(env=env_for(hung.url), startup_timeout=15) as gateway:
        billed, took = timed_calls(gateway, world, 6)
        rows = wait_for_rows(set(billed), timeout=15)
        log = gateway.log()
    # A hung Redis may cost the call that notices it one Redis timeout (0.25 s), no call more.
    assert max(took) < 1.0, took
    assert set(billed) <= set(rows)
    assert_billed(rows, billed)
    assert len(usage_stream_warnings(log)) == 1, log


def test_it_serves_and_bills_with_redis_refusing_and_warns_once(world):
    refused = f"redis://127.0.0.1:{free_port()}/0"
    with GatewayProcess(env=env_for(refused), startup_timeout=15) as gateway:
        billed, took = timed_calls(gateway, world, 8)
        rows = wait_for_rows(set(billed), timeout=15)
        log = gateway.log()
    assert max(took) < 1.0, took
    assert set(billed) <= set(rows)
    assert_billed(rows, billed)
    assert len(usage_stream_warnings(log)) == 1, log

"""The usage pipeline survives its worker and its database (DESIGN §6): real Celery worker processes,
a real gateway process, PostgreSQL and Redis.

- A worker killed (SIGKILL) in the middle of a large backlog: another worker claims what it left
  pending, and every call is recorded exactly once, in the raw rows and in the hourly rollups.
- PostgreSQL unreachable from the worker: the gateway keeps answering, the events wait in Redis,
  and a worker that reaches the database again records every one of them exactly once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from django.conf import settings
from django.db import connection

from billing.events import UsageEvent
from billing.models import UsageHourly, UsageRecord
from billing.rollups import KEY_COLUMNS, SUM_COLUMNS, cells_of
from billing.tasks import usage_drain
from billing.usage import FIELD, GROUP, dead_letter_key, stream_key
from config.redis import sync_client
from tests.support.process import GatewayProcess, WorkerProcess, free_port, subprocess_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
    ),
]


def env_for(**extra: str) -> dict[str, str]:
    return subprocess_env(settings_dict=connection.settings_dict, redis_url=settings.REDIS_URL, **extra)


def pending() -> int:
    try:
        return int(sync_client().xpending(stream_key(), GROUP)["pending"])
    except Exception:  # no group yet: nothing was ever read
        return 0


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, poke: Callable[[], Any]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        poke()
        time.sleep(0.05)


def assert_rollups_agree_with_the_rows() -> None:
    """Each stored hourly cell holds exactly the sums of the raw rows in it (and no other cell exists)."""
    expected = {key: cell.values() for key, cell in cells_of(UsageRecord.objects.all()).items()}
    stored = {
        tuple(row[name] for name in KEY_COLUMNS): tuple(row[name] for name in SUM_COLUMNS)
        for row in UsageHourly.objects.values(*KEY_COLUMNS, *SUM_COLUMNS)
    }
    assert stored.keys() == expected.keys()
    for key, sums in expected.items():
        assert stored[key] == sums, key


def assert_stream_emptied() -> None:
    client = sync_client()
    assert client.xlen(stream_key()) == 0
    assert pending() == 0
    assert client.xlen(dead_letter_key()) == 0


def backlog_event(i: int, base: datetime) -> UsageEvent:
    """A well-formed call, spread over 4 tenants × 3 keys × 5 end users × 2 models × 6 hours."""
    return UsageEvent(
        request_id=f"backlog-{i:05d}",
        client_request_id="",
        created_at_us=int((base + timedelta(seconds=i)).timestamp() * 1_000_000),
        tenant_id=1 + i % 4,
        api_key_id=1 + i % 3,
        end_user=f"user-{i % 5}",
        endpoint="chat.completions",
        requested_model=("gpt-4.1", "claude-sonnet")[i % 2],
        served_model=("gpt-4.1", "claude-sonnet")[i % 2],
        provider="mock",
        deployment_id=1,
        prompt_tokens=100 + i % 97,
        cached_tokens=i % 7,
        completion_tokens=10 + i % 31,
        usage_estimated=i % 13 == 0,
        cost_nanos=1_000 + i * 7,
        status=(200, 200, 200, 429, 500)[i % 5],
        error_type="",
        streamed=i % 2 == 0,
        cache_hit=i % 11 == 0,
        attempts=1,
        latency_us=5_000 + i * 37,
        ttft_us=None if i % 3 else 1_000 + i,
        upstream_latency_us=4_000 + i * 30,
        overhead_us=500 + i % 100,
        client_ip="203.0.113.7",
        credits=False,
    )


@pytest.mark.timeout(90)
def test_a_worker_killed_mid_batch_loses_no_event_and_counts_none_twice():
    total = 20_000
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    events = [backlog_event(i, base) for i in range(total)]
    client = sync_client()
    pipe = client.pipeline(transaction=False)
    for item in events:
        pipe.xadd(stream_key(), {FIELD: orjson.dumps(item.wire())})
    pipe.execute()
    assert client.xlen(stream_key()) == total

    # Claim what the dead worker left after 1 s idle, not the default minute.
    env = env_for(TOLLHOUSE_USAGE_CLAIM_IDLE_SECONDS="1")
    first = WorkerProcess(env=env).start()
    try:
        usage_drain.delay()
        wait_until(
            # Rows written and a batch read but not acknowledged: the worker is mid-batch.
            lambda: UsageRecord.objects.count() > 1_000 and pending() > 0,
            timeout=45,
            what="the first worker writing rows",
            poke=lambda: None if first.alive() else pytest.fail(first.log()),
        )
        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        written_at_kill = UsageRecord.objects.count()
        left_pending = pending()
    finally:
        first.stop()
    assert 0 < written_at_kill < total, written_at_kill

    with WorkerProcess(env=env) as second:
        # The killed worker took its task message with it: ask again until the stream is empty.
        wait_until(
            lambda: (
                UsageRecord.objects.count() >= total and pending() == 0 and client.xlen(stream_key()) == 0
            ),
            timeout=60,
            what="the second worker draining the rest",
            poke=lambda: (
                (time.sleep(0.5), usage_drain.delay()) if second.alive() else pytest.fail(second.log())
            ),
        )
        time.sleep(1.0)  # a little longer, so that a second (wrong) row would show up too
        assert "Traceback" not in second.log(), second.log()

    rows = list(UsageRecord.objects.all())
    assert len(rows) == total, f"{len(rows)} rows for {total} events (killed at {written_at_kill})"
    assert {row.request_id for row in rows} == {item.request_id for item in events}
    assert sum(row.cost for row in rows) == Decimal(sum(item.cost_nanos for item in events)) / 10**9
    assert sum(row.prompt_tokens + row.completion_tokens for row in rows) == sum(
        item.prompt_tokens + item.completion_tokens for item in events
    )
    assert_rollups_agree_with_the_rows()
    assert sum(UsageHourly.objects.values_list("requests", flat=True)) == total
    assert_stream_emptied()
    print(f"killed with {written_at_kill} of {total} rows written and {left_pending} entries pending")


def chat(gateway: GatewayProcess, key: str, i: int) -> httpx.Response:
    prompt = f"Hi [mock prompt_tokens={20 + i} tokens={3 + i % 5}]"
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": prompt}], "user": f"u{i % 3}"}
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=15,
    )


def outage_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "usage drain: the database is unreachable" in line]


@pytest.mark.timeout(90)
def test_the_gateway_answers_while_the_database_is_unreachable_and_every_call_lands_once_after(world):
    refusing = f"postgres://postgres@127.0.0.1:{free_port()}/unreachable"
    cut_off = env_for(
        DATABASE_URL=refusing, TOLLHOUSE_USAGE_DRAIN_SECONDS="1", TOLLHOUSE_USAGE_CLAIM_IDLE_SECONDS="1"
    )
    answered: list[str] = []
    client = sync_client()
    with GatewayProcess(env=env_for()) as gateway:
        with WorkerProcess(env=cut_off, beat=True) as worker:
            outage_started = time.monotonic()
            for i in range(15):
                response = chat(gateway, world.key, i)
                assert response.status_code == 200, response.text
                answered.append(response.headers["x-request-id"])
            # The worker's drains run every second and fail (it says so once a minute, not once a
            # drain); calls keep being answered meanwhile, and the failing drains leave events pending.
            wait_until(
                lambda: len(outage_lines(worker.log())) >= 1 and pending() > 0,
                timeout=30,
                what="the worker meeting the outage",
                poke=lambda: None if worker.alive() else pytest.fail(worker.log()),
            )
            for i in range(15, 30):
                response = chat(gateway, world.key, i)
                assert response.status_code == 200, response.text
                answered.append(response.headers["x-request-id"])
            time.sleep(1.5)  # another failing drain or two, with the later calls in the stream
            assert worker.alive(), worker.log()
            log = worker.log()
            outage_seconds = time.monotonic() - outage_started
            waiting, read = client.xlen(stream_key()), pending()
        assert UsageRecord.objects.count() == 0
        assert waiting == len(answered)  # every call's event waits in Redis
        assert 0 < read <= waiting  # some were read (and left pending) by the failing drains
        assert client.xlen(dead_letter_key()) == 0  # an outage sets nothing aside

        # The database is reachable again (a worker with the right address): everything lands.
        restored = env_for(TOLLHOUSE_USAGE_DRAIN_SECONDS="1", TOLLHOUSE_USAGE_CLAIM_IDLE_SECONDS="1")
        with WorkerProcess(env=restored, beat=True) as healed:
            wait_until(
                lambda: UsageRecord.objects.count() >= len(answered) and pending() == 0,
                timeout=45,
                what="the healed worker recording the backlog",
                poke=lambda: None if healed.alive() else pytest.fail(healed.log()),
            )
            time.sleep(2.5)  # two more drains: a second (wrong) row would show up now
            assert "Traceback" not in healed.log(), healed.log()

    rows = {row.request_id: row for row in UsageRecord.objects.all()}
    assert len(rows) == len(answered) == 30 and set(rows) == set(answered)
    for i, request_id in enumerate(answered):
        row = rows[request_id]
        assert (row.status, row.tenant_id, row.prompt_tokens) == (200, world.acme.id, 20 + i), request_id
    assert_rollups_agree_with_the_rows()
    assert_stream_emptied()
    # The outage is in the worker's log: one line a minute however many drains failed (one a
    # second here), no traceback, no secret.
    failures = outage_lines(log)
    assert failures and "refused" in failures[0], log
    assert len(failures) <= outage_seconds / 60 + 1, log
    assert "Traceback" not in log, log
    assert world.key not in log
    print(f"{len(failures)} outage lines in the worker's log; {read} of {waiting} events were pending")

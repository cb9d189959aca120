"""`/metrics` of a real gateway serving with two worker processes: it parses as Prometheus text, and
its request, token and cost counters equal the usage rows the calls left in the ledger (issue 7,
item 4). Both workers' counts are in it: every worker writes its own file, /metrics sums them."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from django.conf import settings
from django.db import connection
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from accounts.services import api_key_issue
from billing.models import UsageRecord
from tests.support.process import GatewayProcess, subprocess_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
    ),
]

TOKEN = "e2e-metrics-token-" + "k" * 32


@pytest.fixture
def served(world: Any) -> Any:
    with tempfile.TemporaryDirectory(prefix="tollhouse-metrics-test-") as directory:
        env = subprocess_env(
            settings_dict=connection.settings_dict,
            redis_url=settings.REDIS_URL,
            TOLLHOUSE_METRICS_TOKEN=TOKEN,
            PROMETHEUS_MULTIPROC_DIR=directory,  # so the test can look at each worker's file
        )
        with GatewayProcess(env=env, workers=2) as gateway:
            gateway.metrics_dir = Path(directory)
            yield gateway
            assert "Traceback" not in gateway.log(), gateway.log()


def chat(model: str = "gpt-4.1", **extra: Any) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": "Hello there"}], **extra})


async def calls(url: str, plan: list[tuple[str, bytes]]) -> list[httpx.Response]:
    """All at once, each on its own connection, so that both workers take some."""

    async def one(key: str, body: bytes) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                url + "/v1/chat/completions",
                content=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            await response.aread()
            return response

    return list(await asyncio.gather(*(one(key, body) for key, body in plan)))


def scrape(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url + "/metrics", headers=headers, timeout=10)


def totals(text: str) -> dict[str, Any]:
    found: dict[str, Any] = {
        "requests": Counter(),
        "prompt": 0.0,
        "completion": 0.0,
        "cached": 0.0,
        "nanos": 0.0,
        "dollars": 0.0,
        "refusals": Counter(),
        "unidentified": Counter(),
        "drain_batches": 0.0,
    }
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "tollhouse_requests_total":
                found["requests"][labels["status_class"]] += sample.value
            elif sample.name == "tollhouse_tokens_total":
                found[labels["type"]] += sample.value
            elif sample.name == "tollhouse_cached_tokens_total":
                found["cached"] += sample.value
            elif sample.name == "tollhouse_cost_nanodollars_total":
                found["nanos"] += sample.value
            elif sample.name == "tollhouse_cost_dollars_total":
                found["dollars"] += sample.value
            elif sample.name == "tollhouse_refusals_total":
                found["refusals"][labels["limit"]] += sample.value
            elif sample.name == "tollhouse_unidentified_requests_total":
                found["unidentified"][labels["status"]] += sample.value
            elif sample.name == "tollhouse_usage_drain_batch_events_count":
                found["drain_batches"] += sample.value
    found["names"] = names
    return found


def requests_per_worker(directory: Path) -> dict[str, float]:
    """Each worker's own count of calls, read from its own value file."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        total = 0.0
        for family in MultiProcessCollector.merge([str(path)]):
            total += sum(s.value for s in family.samples if s.name == "tollhouse_requests_total")
        counts[path.stem.split("_")[-1]] = total
    return counts


def test_metrics_of_two_workers_equal_the_ledger(world, served, usage_rows):
    limited = api_key_issue(tenant=world.acme, name="limited", rpm_limit=2).raw
    plan = [(world.key, chat()) for _ in range(6)]
    plan += [(world.key, chat(stream=True, stream_options={"include_usage": True})) for _ in range(3)]
    plan += [(world.key, chat(model=name)) for name in ("no-such-model", "\u00e9vil-model")]  # 404: "other"
    plan += [(world.globex_key, chat("gpt4")) for _ in range(2)]  # an alias of gpt-4.1
    plan += [(limited, chat()) for _ in range(4)]  # 2 answered, 2 refused (429)
    plan += [("th-not-a-real-key", chat())]  # 401 before any key: no usage row, not counted

    statuses: Counter[int] = Counter()
    rounds = 0
    while True:
        rounds += 1
        statuses.update(r.status_code for r in asyncio.run(calls(served.url, plan)))
        # Both workers must have taken calls; the kernel decides who accepts, and the second worker
        # may still be starting (the server counts as up once one answers): a few more rounds.
        if len([n for n in requests_per_worker(served.metrics_dir).values() if n > 0]) >= 2 or rounds == 20:
            break
        plan = [(world.key, chat()) for _ in range(8)]
        time.sleep(0.5)
    assert statuses[429] == 2 and statuses[404] == 2 and statuses[401] == 1, statuses

    expected = sum(statuses.values()) - statuses[401]
    rows = usage_rows(expected)
    assert len(rows) == expected

    assert scrape(served.url).status_code == 401
    assert scrape(served.url, Authorization="Bearer wrong-token").status_code == 401
    response = scrape(served.url, Authorization=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = totals(response.text)

    by_class = Counter(f"{row.status // 100}xx" for row in rows)
    assert found["requests"] == by_class
    assert found["prompt"] == sum(row.prompt_tokens for row in rows) > 0
    assert found["completion"] == sum(row.completion_tokens for row in rows) > 0
    assert found["cached"] == sum(row.cached_tokens for row in rows)
    cost = sum((row.cost for row in rows), Decimal(0))
    assert cost > 0
    assert Decimal(int(found["nanos"])) / 10**9 == cost  # exact
    assert abs(Decimal(repr(found["dollars"])) - cost) <= Decimal("1e-9") * len(rows)
    assert found["refusals"]["requests"] == 2
    assert found["unidentified"] == {"401": statuses[401]}  # the unknown key: counted, but no row

    assert {
        "tollhouse_request_duration_seconds",
        "tollhouse_time_to_first_token_seconds",
        "tollhouse_gateway_overhead_seconds",
        "tollhouse_upstream_duration_seconds",
        "tollhouse_usage_stream_length",
        "tollhouse_usage_stream_lag",
        "tollhouse_metrics_redis_up",
    } <= found["names"]
    assert found["drain_batches"] >= 1  # the in-test drain counted its batches in Redis
    text = response.text
    assert "\u00e9vil" not in text and "no-such-model" not in text
    assert world.key not in text and TOKEN not in text

    per_worker = requests_per_worker(served.metrics_dir)
    assert sum(per_worker.values()) == len(rows)
    assert len([n for n in per_worker.values() if n > 0]) == 2, per_worker
    assert UsageRecord.objects.filter(status=401).count() == 0

"""Property: whatever the usage stream holds, the drain stores every event once or sets it aside
with its reason, and every well-formed event of the same batch lands exactly (real Redis + PostgreSQL).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from billing import events
from billing.models import UsageHourly, UsageHourlySession, UsageRecord
from billing.rollups import (
    KEY_COLUMNS,
    SESSION_KEY_COLUMNS,
    SESSION_SUM_COLUMNS,
    SUM_COLUMNS,
    cells_of,
    session_cells_of,
)
from billing.usage import FIELD, GROUP, dead_letter_key, stream_key, usage_drain
from config.redis import sync_client

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL"),
]

FIELDS = [
    "request_id",
    "client_request_id",
    "created_at_us",
    "tenant_id",
    "api_key_id",
    "end_user",
    "endpoint",
    "requested_model",
    "served_model",
    "provider",
    "deployment_id",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "usage_estimated",
    "cost_nanos",
    "status",
    "error_type",
    "streamed",
    "cache_hit",
    "attempts",
    "latency_us",
    "ttft_us",
    "upstream_latency_us",
    "overhead_us",
    "client_ip",
    "ingress",
    "upstream_format",
    "session",
    "attempt_log",
    "cache_write_tokens",
    "reasoning_tokens",
]
V2_FIELDS = ["ingress", "upstream_format", "session", "attempt_log", "cache_write_tokens", "reasoning_tokens"]
MONEY_FACTS = ["tenant_id", "api_key_id", "prompt_tokens", "cached_tokens", "completion_tokens", "status"]
MEGABYTE = "x" * 1_000_000

special_values = st.sampled_from(
    [
        "\x00",
        "alice\x00",
        "\ud800",
        "x\udfffy",
        MEGABYTE,
        "\x00" * 70_000,
        "not-an-ip",
        "999.1.1.1",
        "fe80::1%eth0",
        "::ffff:10.1.2.3",
        "",
        " ",
        "-1",
        "1e400",
        2**63,
        2**80,
        -(2**80),
        float("nan"),
        float("inf"),
        1e300,
        -0.5,
        True,
    ]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(alphabet=st.characters(exclude_categories=()), max_size=300)
    | special_values
)
hostile_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def good_events(draw: Any, request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "client_request_id": draw(st.sampled_from(["", "trace-1"])),
        "created_at_us": draw(st.integers(1_600_000_000_000_000, 1_900_000_000_000_000)),
        "tenant_id": draw(st.none() | st.integers(1, 10**9)),
        "api_key_id": draw(st.none() | st.integers(1, 10**9)),
        "end_user": draw(st.text(alphabet="abcxyz-", max_size=20)),
        "endpoint": "chat.completions",
        "requested_model": "gpt-4.1",
        "served_model": "gpt-4.1",
        "provider": "mock",
        "deployment_id": draw(st.none() | st.integers(1, 10**6)),
        "prompt_tokens": draw(st.integers(0, 2**31 - 1)),
        "cached_tokens": draw(st.integers(0, 10**6)),
        "completion_tokens": draw(st.integers(0, 2**31 - 1)),
        "usage_estimated": draw(st.booleans()),
        # Up to 2**63 nano-dollars ($9.2 billion) a call: the gateway's JSON (orjson) carries 64-bit ints.
        "cost_nanos": draw(st.integers(0, 2**63 - 1)),
        "status": draw(st.sampled_from([200, 400, 401, 429, 499, 502, 504])),
        "error_type": draw(st.sampled_from(["", "upstream_timeout"])),
        "streamed": draw(st.booleans()),
        "cache_hit": False,
        "attempts": draw(st.integers(0, 5)),
        "latency_us": draw(st.integers(0, 10**9)),
        "ttft_us": draw(st.none() | st.integers(0, 10**9)),
        "upstream_latency_us": draw(st.none() | st.integers(0, 10**9)),
        "overhead_us": draw(st.integers(0, 10**6)),
        "client_ip": draw(st.none() | st.sampled_from(["127.0.0.1", "2001:db8::1"])),
        "ingress": draw(st.sampled_from(events.INGRESS_DIALECTS)),
        "upstream_format": draw(st.sampled_from(("", *events.UPSTREAM_FORMATS))),
        # Any session the gateway can emit: what session_clean makes of any text.
        "session": draw(st.text(max_size=200).map(events.session_clean)),
        "attempt_log": draw(st.lists(attempts, max_size=events.ATTEMPT_LOG_MAX)),
        "cache_write_tokens": draw(st.integers(0, 2**31 - 1)),
        "reasoning_tokens": draw(st.integers(0, 2**31 - 1)),
        "v": events.VERSION,
    }


attempts = st.fixed_dictionaries(
    {
        "deployment_id": st.none() | st.integers(1, 2**63 - 1),
        "status": st.sampled_from([0, 200, 408, 429, 500, 502, 503]),
        "duration_us": st.integers(0, 10**12 - 1),
        "error_type": st.sampled_from(["", "upstream_timeout", "upstream_error", "rate_limited"]),
    }
)


@st.composite
def batches(draw: Any) -> list[tuple[str, Any, set[str]]]:
    """Entries as (kind, event or raw bytes, fields left hostile): kinds good / hostile / raw."""
    batch: list[tuple[str, Any, set[str]]] = []
    for index in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["good", "good", "hostile", "hostile", "raw"]))
        if kind == "raw":
            batch.append(
                (kind, draw(st.binary(max_size=40) | st.just(b"[1, 2]") | st.just(b'{"a": 1')), set())
            )
            continue
        event = draw(good_events(f"{kind}-{index}"))
        if kind == "good":
            batch.append((kind, event, set()))
            continue
        changed = draw(st.dictionaries(st.sampled_from(FIELDS), hostile_values, min_size=1, max_size=6))
        removed = draw(st.sets(st.sampled_from(FIELDS), max_size=3))
        event.update(changed)
        for name in removed:
            event.pop(name, None)
        event.update(draw(st.dictionaries(st.text(max_size=8), hostile_values, max_size=2)))
        batch.append((kind, event, set(changed) | removed))
    return batch


def payload(item: Any) -> bytes:
    # Python's encoder writes what the gateway's never would: lone surrogates, NaN, huge ints.
    return item if isinstance(item, bytes) else json.dumps(item).encode()


def stored_cells() -> dict[tuple[Any, ...], tuple[Any, ...]]:
    width = len(KEY_COLUMNS)
    return {
        values[:width]: values[width:]
        for values in UsageHourly.objects.values_list(*KEY_COLUMNS, *SUM_COLUMNS)
    }


def stored_sessions() -> dict[tuple[Any, ...], tuple[Any, ...]]:
    width = len(SESSION_KEY_COLUMNS)
    return {
        values[:width]: values[width:]
        for values in UsageHourlySession.objects.values_list(*SESSION_KEY_COLUMNS, *SESSION_SUM_COLUMNS)
    }


def derived_sessions() -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {key: cell.values() for key, cell in session_cells_of(UsageRecord.objects.all()).items()}


def dead_letters() -> dict[bytes, bytes]:
    return {fields[b"id"]: fields[b"reason"] for _, fields in sync_client().xrange(dead_letter_key())}


@hypothesis_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=batches())
def test_it_stores_every_event_once_or_sets_it_aside_with_its_reason(batch):
    client = sync_client()
    UsageRecord.objects.all().delete()
    UsageHourly.objects.all().delete()
    UsageHourlySession.objects.all().delete()
    client.delete(stream_key(), dead_letter_key())

    entry_ids = [client.xadd(stream_key(), {FIELD: payload(item)}) for _, item, _ in batch]
    usage_drain(batch_size=5)
    assert stored_cells() == {key: cell.values() for key, cell in cells_of(UsageRecord.objects.all()).items()}
    assert stored_sessions() == derived_sessions()

    rows = {row.request_id: row for row in UsageRecord.objects.all()}
    dead = dead_letters()
    assert all(reason for reason in dead.values())
    assert set(dead) <= set(entry_ids)
    unkeyed = []  # entries whose request id was garbled: stored under some id, or set aside
    for entry_id, (kind, item, hostile) in zip(entry_ids, batch, strict=True):
        if kind == "raw" or "request_id" in hostile:
            if entry_id not in dead:
                unkeyed.append(entry_id)
            continue
        assert entry_id not in dead, dead[entry_id]
        row = rows[item["request_id"]]
        # (A "hostile" value may happen to be harmless: only a good event must stay unmarked.)
        if kind == "good":
            assert row.error_type == item["error_type"]
        for name in MONEY_FACTS:
            if name not in hostile:
                assert getattr(row, name) == item[name], name
        if "cost_nanos" not in hostile:
            assert row.cost == Decimal(item["cost_nanos"]).scaleb(-9)
        if kind == "good":
            # Every field of version 2 reads back as the gateway wrote it.
            assert {name: getattr(row, name) for name in V2_FIELDS} == {
                name: item[name] for name in V2_FIELDS
            }
        if kind == "good":
            assert row.end_user == item["end_user"] and row.created_at.timestamp() * 10**6 == pytest.approx(
                item["created_at_us"], abs=1
            )
    keyed = len(batch) - len(dead) - len(unkeyed)
    extra_rows = len(rows) - keyed
    assert 0 < extra_rows <= len(unkeyed) if unkeyed else extra_rows == 0
    assert client.xlen(stream_key()) == 0
    assert client.xpending(stream_key(), GROUP)["pending"] == 0

    # Delivered again (a worker crashed before acknowledging): not one row more.
    for _, item, _ in batch:
        client.xadd(stream_key(), {FIELD: payload(item)})
    usage_drain(batch_size=5)
    assert UsageRecord.objects.count() == len(rows)
    # ... and the hourly rollups hold exactly the stored rows, counted once, however hostile the batch.
    assert stored_cells() == {key: cell.values() for key, cell in cells_of(UsageRecord.objects.all()).items()}
    assert stored_sessions() == derived_sessions()

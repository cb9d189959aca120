"""The usage event is one definition: what the gateway writes is exactly what the writer reads."""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal

import orjson

from billing import events, services
from billing.events import UsageEvent
from billing.models import UsageRecord
from billing.services import usage_row_from_event


def full_event(**overrides) -> UsageEvent:
    values = dict(
        request_id="evt-1",
        client_request_id="client-7",
        created_at_us=1_790_000_000_123_456,
        tenant_id=11,
        api_key_id=22,
        end_user="user-9",
        endpoint="messages",
        requested_model="smart",
        served_model="gpt-4.1-mini",
        provider="mock-a",
        deployment_id=33,
        prompt_tokens=101,
        cached_tokens=7,
        completion_tokens=55,
        usage_estimated=True,
        cost_nanos=123_456_789,
        status=429,
        error_type="rate_limit_exceeded",
        streamed=True,
        cache_hit=True,
        attempts=2,
        latency_us=1_234_567,
        ttft_us=89_012,
        upstream_latency_us=1_200_000,
        overhead_us=34_567,
        client_ip="2001:db8::7",
        credits=True,
        refused_by_budget=44,
    )
    values.update(overrides)
    return UsageEvent(**values)


def test_the_writer_reads_exactly_the_fields_the_gateway_writes():
    assert set(services._READERS) == set(events.FIELD_NAMES)
    assert set(full_event().wire()) == set(events.FIELD_NAMES)


def test_every_field_reaches_the_row_and_none_is_lost_on_the_way():
    event = full_event()
    # As the stream carries it: orjson serialises the dataclass itself.
    row = usage_row_from_event(orjson.loads(orjson.dumps(event)))
    record = row.record
    assert row.problems == [] and row.charge_credits is True
    expected = {
        "request_id": "evt-1",
        "client_request_id": "client-7",
        "tenant_id": 11,
        "api_key_id": 22,
        "end_user": "user-9",
        "endpoint": "messages",
        "requested_model": "smart",
        "served_model": "gpt-4.1-mini",
        "provider": "mock-a",
        "deployment_id": 33,
        "prompt_tokens": 101,
        "cached_tokens": 7,
        "completion_tokens": 55,
        "usage_estimated": True,
        "status": 429,
        "error_type": "rate_limit_exceeded",
        "streamed": True,
        "cache_hit": True,
        "attempts": 2,
        "client_ip": "2001:db8::7",
        "credits": True,
        "refused_by_budget": 44,
    }
    assert {name: getattr(record, name) for name in expected} == expected
    assert str(record.cost) == "0.123456789"
    assert int(record.created_at.timestamp() * 1_000_000) == event.created_at_us
    assert (record.latency_ms, record.ttft_ms, record.upstream_latency_ms, record.overhead_ms) == (
        Decimal("1234.567"),
        Decimal("89.012"),
        Decimal("1200"),
        Decimal("34.567"),
    )
    # Every event field is accounted for: a column of the same name, or one of these.
    via = {
        "created_at_us": "created_at",
        "cost_nanos": "cost",
        "latency_us": "latency_ms",
        "ttft_us": "ttft_ms",
        "upstream_latency_us": "upstream_latency_ms",
        "overhead_us": "overhead_ms",
        "v": None,
    }
    columns = {column.name for column in UsageRecord._meta.concrete_fields} | {"tenant_id", "api_key_id"}
    for field in dataclasses.fields(UsageEvent):
        target = via.get(field.name, field.name)
        assert target is None or target in columns, f"event field {field.name} reaches no column"


def test_a_field_this_writer_does_not_know_is_named_in_a_warning_and_the_row_is_still_stored(caplog):
    services._warned.clear()
    wire = full_event().wire() | {"brand_new_field": 1, "v": events.VERSION + 1}
    with caplog.at_level(logging.WARNING, logger="billing.services"):
        row = usage_row_from_event(wire)
        usage_row_from_event(wire)
    assert row.record.prompt_tokens == 101 and row.problems == []
    messages = [record.getMessage() for record in caplog.records]
    assert sum("'brand_new_field'" in message for message in messages) == 1  # once, not per event
    assert sum(f"version {events.VERSION + 1}" in message for message in messages) == 1


def test_an_event_from_before_the_version_field_reads_the_same():
    wire = full_event().wire()
    del wire["v"]
    assert usage_row_from_event(wire).problems == []

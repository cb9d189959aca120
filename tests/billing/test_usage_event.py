"""The usage event is one definition: what the gateway writes is exactly what the writer reads."""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal

import orjson
import pytest

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
        ingress="anthropic_messages",
        upstream_format="gemini",
        session="sess-0f3a",
        attempt_log=(
            {"deployment_id": 33, "status": 503, "duration_us": 1_200, "error_type": "upstream_error"},
            {"deployment_id": None, "status": 0, "duration_us": 5_000_000, "error_type": "upstream_timeout"},
            {"deployment_id": 34, "status": 200, "duration_us": 80_000, "error_type": ""},
        ),
        cache_write_tokens=13,
        reasoning_tokens=21,
        saved_cost_nanos=987_654_321,
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
        "ingress": "anthropic_messages",
        "upstream_format": "gemini",
        "session": "sess-0f3a",
        "attempt_log": [dict(attempt) for attempt in event.attempt_log],
        "cache_write_tokens": 13,
        "reasoning_tokens": 21,
    }
    assert {name: getattr(record, name) for name in expected} == expected
    assert str(record.cost) == "0.123456789"
    assert str(record.saved_cost) == "0.987654321"
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
        "saved_cost_nanos": "saved_cost",
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


@pytest.mark.parametrize(
    ("endpoint", "ingress"),
    [
        ("chat.completions", "openai_chat"),
        ("embeddings", "openai_embeddings"),
        (None, "openai_chat"),
        ("something-new", "openai_chat"),
    ],
)
def test_a_version_1_event_reads_with_the_defaults_and_its_endpoint_s_dialect(endpoint, ingress):
    # What a gateway of the previous release emits, during a rolling upgrade.
    wire = full_event().wire()
    for name in (
        "ingress",
        "upstream_format",
        "session",
        "attempt_log",
        "cache_write_tokens",
        "reasoning_tokens",
    ):
        del wire[name]
    wire["v"] = 1
    if endpoint is None:
        del wire["endpoint"]
    else:
        wire["endpoint"] = endpoint
    row = usage_row_from_event(wire)
    assert row.problems == []
    record = row.record
    assert record.ingress == ingress
    assert (record.upstream_format, record.session, record.attempt_log) == ("", "", [])
    assert (record.cache_write_tokens, record.reasoning_tokens) == (0, 0)
    assert record.prompt_tokens == 101 and record.cost == Decimal("0.123456789")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("7d9c-uuid", "7d9c-uuid"),
        ("  padded\t", "padded"),
        ("a\x00b\x1bc\x7fd\x85e", "abcde"),
        ("s" * 500, "s" * events.SESSION_MAX),
        ("x\ud800y", "xy"),
        ("日本語-セッション", "日本語-セッション"),
    ],
)
def test_the_session_is_sanitised_and_capped_and_the_gateway_s_cleaning_is_the_writer_s(sent, stored):
    assert events.session_clean(sent) == stored
    assert events.session_clean(stored) == stored  # cleaned once, clean for good
    row = usage_row_from_event(full_event(session=sent).wire())
    assert row.record.session == stored
    assert (row.problems == []) == (sent == stored)
    assert row.record.prompt_tokens == 101  # the money facts are kept either way


def test_a_session_that_is_not_text_is_dropped_and_noted():
    row = usage_row_from_event(full_event().wire() | {"session": {"id": 1}})
    assert row.record.session == "" and row.problems == ["session not text"]


def test_a_long_attempt_log_keeps_its_first_and_last_attempts():
    log = [
        {"deployment_id": index + 1, "status": 500, "duration_us": index, "error_type": "upstream_error"}
        for index in range(40)
    ]
    row = usage_row_from_event(full_event(attempts=40).wire() | {"attempt_log": log})
    kept = row.record.attempt_log
    assert row.problems == [] and row.record.attempts == 40
    half = events.ATTEMPT_LOG_MAX // 2
    assert kept == log[:half] + log[-half:]


@pytest.mark.parametrize(
    "log",
    [
        "500,500,200",
        [1, 2],
        [{"deployment_id": "x", "status": 200, "duration_us": 1, "error_type": ""}],
        [{"deployment_id": 1, "status": 9999, "duration_us": -4, "error_type": 7}],
        [{"deployment_id": 1, "status": 200, "duration_us": 1, "error_type": "a\x00b", "secret": "k"}],
    ],
)
def test_an_unreadable_attempt_log_is_stored_as_far_as_readable_and_noted(log):
    row = usage_row_from_event(full_event().wire() | {"attempt_log": log})
    assert row.problems and all(problem.startswith("attempt_log") for problem in row.problems)
    for attempt in row.record.attempt_log:
        assert set(attempt) == {"deployment_id", "status", "duration_us", "error_type"}
        assert attempt["deployment_id"] is None or attempt["deployment_id"] >= 1
        assert 0 <= attempt["status"] <= 599 and attempt["duration_us"] >= 0
        assert isinstance(attempt["error_type"], str) and "\x00" not in attempt["error_type"]
    assert row.record.error_type.startswith("sanitised")

"""gateway.calllog.call_logged: the one line of each call, its fields, and what it costs."""

from __future__ import annotations

import logging
import time

from gateway.calllog import call_logged

EVENT = {
    "request_id": "4f1c0d9e8b7a6f5e4d3c2b1a09f8e7d6",
    "client_request_id": "client-77",
    "created_at_us": 1_700_000_000_000_000,
    "tenant_id": 7,
    "api_key_id": 9,
    "end_user": "customer-81",
    "endpoint": "chat.completions",
    "requested_model": "gpt4",
    "served_model": "gpt-4.1-2025-04-14",
    "provider": "mock",
    "deployment_id": 3,
    "prompt_tokens": 20,
    "cached_tokens": 4,
    "completion_tokens": 5,
    "usage_estimated": False,
    "cost_nanos": 123_456,
    "status": 200,
    "error_type": "",
    "streamed": True,
    "cache_hit": False,
    "attempts": 2,
    "latency_us": 12_345,
    "ttft_us": 2_500,
    "upstream_latency_us": 11_000,
    "overhead_us": 1_345,
    "client_ip": "10.0.0.8",
    "credits": False,
}


def test_it_logs_one_line_with_every_field(caplog):
    with caplog.at_level(logging.INFO, logger="tollhouse.calls"):
        call_logged(EVENT, key_prefix="abcdefgh1234", tenant="acme")
    [record] = caplog.records
    assert record.name == "tollhouse.calls" and record.levelno == logging.INFO
    expected = {
        "request_id": EVENT["request_id"],
        "client_request_id": "client-77",
        "tenant": "acme",
        "key_prefix": "abcdefgh1234",
        "end_user": "customer-81",
        "endpoint": "chat.completions",
        "model": "gpt4",
        "served_model": "gpt-4.1-2025-04-14",
        "provider": "mock",
        "status": 200,
        "error_type": "",
        "prompt_tokens": 20,
        "cached_tokens": 4,
        "completion_tokens": 5,
        "cost_usd": "0.000123456",  # exact, from the integer nano-dollars: never a float
        "latency_ms": 12.345,
        "ttft_ms": 2.5,
        "upstream_ms": 11.0,
        "overhead_ms": 1.345,
        "attempts": 2,
        "streamed": True,
    }
    assert {name: getattr(record, name) for name in expected} == expected
    message = record.getMessage()
    assert "chat.completions 200 acme th-abcdefgh1234… gpt4" in message and "cost=0.000123456" in message


def test_it_carries_nothing_the_event_does_not_name(caplog):
    # The event has the client's IP and ids, never a key, token or prompt; the line keeps it that way.
    with caplog.at_level(logging.INFO, logger="tollhouse.calls"):
        call_logged({**EVENT, "prompt": "secret words"}, key_prefix="", tenant="7")
    [record] = caplog.records
    assert not hasattr(record, "prompt") and "secret words" not in record.getMessage()
    assert record.key_prefix == "" and "th-" not in record.getMessage()


def test_a_call_that_never_reached_upstream_has_empty_timings(caplog):
    event = {**EVENT, "ttft_us": None, "upstream_latency_us": None, "status": 404, "cost_nanos": 0}
    with caplog.at_level(logging.INFO, logger="tollhouse.calls"):
        call_logged(event, key_prefix="abc", tenant="acme")
    [record] = caplog.records
    assert (record.ttft_ms, record.upstream_ms, record.cost_usd, record.status) == (
        None,
        None,
        "0.000000000",
        404,
    )


def test_it_costs_a_level_check_when_calls_are_not_logged(caplog):
    calls = logging.getLogger("tollhouse.calls")
    saved = calls.level
    calls.setLevel(logging.WARNING)
    try:
        started = time.perf_counter_ns()
        for _ in range(100_000):
            call_logged(EVENT, key_prefix="abc", tenant="acme")
        per_call_us = (time.perf_counter_ns() - started) / 100_000 / 1000
    finally:
        calls.setLevel(saved)
    assert not caplog.records
    print(f"call_logged, logger disabled: {per_call_us:.3f} µs per call")
    assert per_call_us < 5

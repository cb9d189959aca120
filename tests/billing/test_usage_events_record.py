"""billing.services.usage_events_record: no value in an event stops the ledger (real PostgreSQL)."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import UsageRecord
from billing.services import usage_events_record, usage_row_from_event
from tests.billing.test_usage_records_save import event

pytestmark = pytest.mark.django_db


def rows() -> dict[str, UsageRecord]:
    return {row.request_id: row for row in UsageRecord.objects.all()}


def test_it_stores_a_well_formed_event_as_it_is_and_unmarked():
    row = usage_row_from_event(
        event("fine", end_user="alice", client_ip="203.0.113.9", ttft_us=1500, streamed=True, tenant_id=7)
    )
    assert row.problems == []
    assert row.record.error_type == "" and row.record.client_ip == "203.0.113.9"
    assert row.record.ttft_ms == Decimal("1.500") and row.record.tenant_id == 7


def test_it_stores_a_row_with_nul_and_a_bad_ip_sanitised_and_the_rest_of_the_batch_exactly(caplog):
    batch = [
        event("good-1", prompt_tokens=11, cost_nanos=123_456_789),
        event(
            "poisoned",
            end_user="alice\x00",
            requested_model="gpt\x00-4.1",
            client_ip="not-an-ip",
            tenant_id=3,
            api_key_id=4,
            prompt_tokens=7,
            completion_tokens=9,
            cost_nanos=42,
            error_type="",
        ),
        event("good-2", completion_tokens=13, cost_nanos=1),
    ]
    with caplog.at_level(logging.WARNING, logger="billing.services"):
        outcome = usage_events_record(events=batch)
    assert (outcome.written, outcome.sanitised, outcome.rejected) == (3, ["poisoned"], {})
    stored = rows()
    assert stored["good-1"].cost == Decimal("0.123456789") and stored["good-1"].prompt_tokens == 11
    assert stored["good-2"].cost == Decimal("0.000000001") and stored["good-2"].completion_tokens == 13
    poisoned = stored["poisoned"]
    assert (poisoned.end_user, poisoned.requested_model, poisoned.client_ip) == ("alice", "gpt-4.1", None)
    assert (poisoned.tenant_id, poisoned.api_key_id) == (3, 4)
    assert (poisoned.prompt_tokens, poisoned.completion_tokens, poisoned.cost) == (7, 9, Decimal("4.2E-8"))
    assert poisoned.status == 200 and poisoned.error_type == "sanitised"
    assert "poisoned" in caplog.text and "end_user" in caplog.text and "client_ip" in caplog.text


def test_it_clamps_numbers_to_what_the_columns_hold_and_keeps_an_error_type():
    usage_events_record(
        events=[
            event(
                "huge",
                prompt_tokens=2**70,
                completion_tokens=-5,
                cached_tokens="12",
                cost_nanos=10**30,
                status=70_000,
                attempts=10**9,
                latency_us=10**20,
                tenant_id="abc",
                api_key_id=2**64,
                streamed="yes",
                error_type="upstream_timeout",
            )
        ]
    )
    row = UsageRecord.objects.get()
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (2**31 - 1, 0, 12)
    assert row.cost == Decimal("99999999999.999999999")
    assert (row.status, row.attempts, row.latency_ms) == (0, 2**15 - 1, Decimal("999999999.999"))
    assert (row.tenant_id, row.api_key_id, row.streamed) == (None, None, False)
    assert row.error_type == "sanitised:upstream_timeout"


def test_it_stores_text_of_any_size_or_type_bounded():
    usage_events_record(
        events=[
            event(
                "texts",
                end_user="x" * 1_000_000,
                provider={"nested": ["object"]},
                endpoint=5,
                served_model="\ud800",
            )
        ]
    )
    row = UsageRecord.objects.get()
    assert row.end_user == "x" * 200
    assert (row.provider, row.endpoint, row.served_model) == ("", "chat.completions", "")


def test_it_keys_an_overlong_request_id_by_its_digest_so_redelivery_still_counts_once():
    long_a, long_b = "a" * 64 + "-1", "a" * 64 + "-2"
    assert usage_events_record(events=[event(long_a), event(long_b)]).written == 2
    assert usage_events_record(events=[event(long_a)]).written == 0
    assert UsageRecord.objects.count() == 2
    assert all(len(request_id) <= 64 for request_id in rows())


def test_it_counts_a_sanitised_event_once_however_often_it_is_delivered():
    poisoned = event("again", end_user="\x00", client_ip="999.1.1.1")
    assert usage_events_record(events=[poisoned]).written == 1
    assert usage_events_record(events=[poisoned, poisoned]).written == 0
    assert UsageRecord.objects.count() == 1


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("a string", "not a usage event"),
        ([1, 2], "not a usage event"),
        ({"status": 200, "cost_nanos": 5}, "request_id"),
        ({"request_id": "\x00 "}, "request_id"),
        ({"request_id": {"nested": 1}}, "request_id"),
    ],
)
def test_it_rejects_only_what_has_no_request_id_with_the_reason(bad, reason):
    outcome = usage_events_record(events=[event("before"), bad, event("after")])
    assert outcome.written == 2
    assert list(outcome.rejected) == [1] and reason in outcome.rejected[1]
    assert set(rows()) == {"before", "after"}


def test_it_uses_the_time_received_when_the_event_has_no_usable_time():
    from datetime import UTC, datetime

    received = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    usage_events_record(
        events=[event("no-time", created_at_us="soon"), event("far", created_at_us=10**30)],
        received_at=[received, received],
    )
    assert {row.created_at for row in rows().values()} == {received}


@pytest.fixture
def refusing_table():
    """The database refuses some rows for a reason no reader can foresee (real CHECK constraints,
    rolled back with the test's transaction): what the writer does then is what is tested."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE billing_usagerecord ADD CONSTRAINT test_refuses_evil CHECK (end_user <> 'evil')"
        )
        cursor.execute(
            "ALTER TABLE billing_usagerecord ADD CONSTRAINT test_refuses_666 CHECK (prompt_tokens <> 666)"
        )


def test_it_retries_a_refused_batch_row_by_row_and_keeps_a_refused_rows_money_facts(refusing_table, caplog):
    batch = [
        event("innocent-1", prompt_tokens=1, cost_nanos=100),
        event(
            "evil-row", end_user="evil", tenant_id=5, prompt_tokens=21, completion_tokens=2, cost_nanos=777
        ),
        event("innocent-2", prompt_tokens=2, cost_nanos=200),
    ]
    with caplog.at_level(logging.WARNING, logger="billing.services"):
        outcome = usage_events_record(events=batch)
    assert (outcome.written, outcome.sanitised, outcome.rejected) == (3, ["evil-row"], {})
    stored = rows()
    assert (stored["innocent-1"].cost, stored["innocent-2"].cost) == (Decimal("1E-7"), Decimal("2E-7"))
    evil = stored["evil-row"]
    assert (evil.end_user, evil.tenant_id, evil.prompt_tokens, evil.completion_tokens) == ("", 5, 21, 2)
    assert evil.cost == Decimal("7.77E-7") and evil.error_type == "sanitised"
    assert "test_refuses_evil" in caplog.text


def test_it_rejects_with_the_databases_reason_a_row_refused_even_as_money_facts(refusing_table):
    outcome = usage_events_record(events=[event("ok", cost_nanos=5), event("beast", prompt_tokens=666)])
    assert outcome.written == 1 and list(outcome.rejected) == [1]
    assert "test_refuses_666" in outcome.rejected[1] and "IntegrityError" in outcome.rejected[1]
    assert set(rows()) == {"ok"}

"""billing.usage.BufferSink: bounded, never drops a call, never blocked by a bad event (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest

from billing.models import UsageRecord
from billing.usage import BufferSink
from tests.billing.test_usage_records_save import event
from tests.support.process import database_down

pytestmark = pytest.mark.django_db(transaction=True)


def count() -> int:
    return UsageRecord.objects.count()


def test_it_writes_through_to_the_database_when_full_instead_of_growing():
    async def scenario() -> list[tuple[int, int]]:
        sink = BufferSink(flush_seconds=3600, max_events=3)  # no background flush in this test
        seen = []
        for i in range(7):
            await sink.emit(event(f"b{i}"))
            seen.append((len(sink.events), await asyncio.to_thread(count)))
        await sink.stop()
        return seen

    seen = asyncio.run(scenario())
    assert max(buffered for buffered, _ in seen) == 3
    # The 4th and 7th calls found the buffer full: they waited for the three before them to be written.
    assert seen == [(1, 0), (2, 0), (3, 0), (1, 3), (2, 3), (3, 3), (1, 6)]
    assert count() == 7


def test_it_stores_bad_events_sanitised_or_logs_them_and_never_blocks(caplog):
    async def scenario() -> None:
        sink = BufferSink(flush_seconds=3600)
        await sink.emit(event("good-1", cost_nanos=123))
        await sink.emit(event("nul", end_user="a\x00b", client_ip="not-an-ip", prompt_tokens=2**40))
        await sink.emit(event("surrogate", end_user="\udc80", cached_tokens={"nested": object()}))
        await sink.emit({"status": 200, "cost_nanos": 9})  # nothing to key a row on
        await sink.emit(event("good-2", cost_nanos=456))
        await sink.flush()
        assert not sink.events

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    rows = {row.request_id: row for row in UsageRecord.objects.all()}
    assert set(rows) == {"good-1", "nul", "surrogate", "good-2"}
    assert (rows["good-1"].cost, rows["good-2"].cost) == (Decimal("1.23E-7"), Decimal("4.56E-7"))
    assert rows["nul"].end_user == "ab" and rows["nul"].client_ip is None
    assert rows["nul"].error_type == rows["surrogate"].error_type == "sanitised"
    [unrecorded] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "request_id" in unrecorded.getMessage() and "'cost_nanos': 9" in unrecorded.getMessage()


def test_it_keeps_every_event_while_the_database_is_down_and_says_so_once(caplog):
    sink = BufferSink(flush_seconds=3600, max_events=2)

    async def while_down() -> None:
        for i in range(5):
            await sink.emit(event(f"kept-{i}"))  # full, and nowhere to write: kept, not dropped
            await sink.flush()

    with caplog.at_level(logging.INFO, logger="billing.usage"):
        with database_down():
            asyncio.run(while_down())
        assert len(sink.events) == 5 and count() == 0
        assert asyncio.run(sink.flush()) == 5
    assert not sink.events and count() == 5
    messages = [r.getMessage() for r in caplog.records if r.name == "billing.usage"]
    assert len(messages) == 2, messages
    assert "refused a batch" in messages[0] and "backlog again" in messages[1]

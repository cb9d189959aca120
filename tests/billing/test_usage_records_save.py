from decimal import Decimal

import pytest

from billing.models import UsageRecord
from billing.services import usage_records_insert


def event(request_id: str, **overrides):
    return {
        "request_id": request_id,
        "created_at_us": 1_790_000_000_000_000,
        "tenant_id": None,
        "api_key_id": None,
        "requested_model": "gpt-4.1",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_nanos": 60_000,
        "status": 200,
        "latency_us": 12_345,
        "overhead_us": 678,
        **overrides,
    }


@pytest.mark.django_db
def test_it_writes_one_row_per_event_with_money_as_decimal():
    assert usage_records_insert(events=[event("a"), event("b", cost_nanos=1)]) == 2
    a, b = UsageRecord.objects.order_by("request_id")
    assert a.cost == Decimal("0.000060000") and b.cost == Decimal("0.000000001")
    assert a.latency_ms == Decimal("12.345") and a.overhead_ms == Decimal("0.678")


@pytest.mark.django_db
def test_it_counts_a_call_once_however_often_it_is_delivered():
    assert usage_records_insert(events=[event("a"), event("a")]) == 1
    assert usage_records_insert(events=[event("a"), event("b")]) == 1
    assert UsageRecord.objects.count() == 2

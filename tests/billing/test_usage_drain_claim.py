"""billing.usage.usage_drain claiming what another consumer read but never acknowledged (real Redis)."""

from __future__ import annotations

import time

import orjson
import pytest
from django.conf import settings

from billing.models import UsageRecord
from billing.usage import FIELD, GROUP, stream_key, usage_drain
from config.redis import sync_client
from tests.billing.test_usage_records_save import event

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL"),
]


def read_by_a_crashed_worker(count: int) -> None:
    client = sync_client()
    usage_drain()  # creates the consumer group
    for i in range(count):
        client.xadd(stream_key(), {FIELD: orjson.dumps(event(f"crashed-{i:03d}"))})
    read = client.xreadgroup(GROUP, "crashed-worker", {stream_key(): ">"}, count=count)
    assert len(read[0][1]) == count


def test_it_claims_after_the_idle_time_the_setting_gives(settings):
    settings.TOLLHOUSE_USAGE_CLAIM_IDLE_SECONDS = 1
    read_by_a_crashed_worker(3)
    assert usage_drain() == 0  # idle for less than a second: still the other worker's
    time.sleep(1.1)
    assert usage_drain() == 3
    assert sync_client().xpending(stream_key(), GROUP)["pending"] == 0


def test_it_waits_the_default_minute_before_claiming(settings):
    assert settings.TOLLHOUSE_USAGE_CLAIM_IDLE_SECONDS == 60
    read_by_a_crashed_worker(2)
    time.sleep(1.1)
    assert usage_drain() == 0
    assert sync_client().xpending(stream_key(), GROUP)["pending"] == 2


def test_it_claims_every_pending_batch_in_one_run():
    """After an outage the pending list holds many batches; one drain takes them all."""
    read_by_a_crashed_worker(25)
    assert usage_drain(batch_size=10, claim_idle_ms=0) == 25
    assert UsageRecord.objects.count() == 25
    assert sync_client().xpending(stream_key(), GROUP)["pending"] == 0
    assert sync_client().xlen(stream_key()) == 0


def test_it_stops_claiming_after_max_batches():
    read_by_a_crashed_worker(25)
    assert usage_drain(batch_size=10, claim_idle_ms=0, max_batches=2) == 20
    assert sync_client().xpending(stream_key(), GROUP)["pending"] == 5
    assert usage_drain(batch_size=10, claim_idle_ms=0) == 5

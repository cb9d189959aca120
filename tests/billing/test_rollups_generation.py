"""Output speed in the rollups: the completed streams' tokens and generation time (latency − time
to first token), summed per cell and tenant hour, filled by migration 0009 for the cells whose raw
rows are still kept, and compared by usage_reconcile like every other column."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime

import pytest
from django.apps import apps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import (
    GENERATION_COLUMNS,
    UsageHourly,
    UsageHourlyKey,
    UsageHourlyModel,
    UsageHourlyTenant,
)
from billing.reconcile import usage_reconcile
from billing.rollups import SUM_COLUMNS, cells_of
from billing.services import usage_events_record
from tests.billing.test_usage_records_save import event

HOUR = datetime(2026, 9, 21, 14, tzinfo=UTC)
AT = int(HOUR.timestamp() * 1_000_000)

pytestmark = pytest.mark.django_db


def generation(**filters) -> tuple[int, int, int]:
    row = UsageHourly.objects.filter(**filters).values_list(*GENERATION_COLUMNS).get()
    return tuple(row)  # type: ignore[return-value]


def streamed(request_id: str, **overrides):
    values = dict(
        tenant_id=7,
        api_key_id=1,
        created_at_us=AT,
        streamed=True,
        latency_us=2_500_000,
        ttft_us=500_000,
        completion_tokens=100,
    )
    values.update(overrides)
    return event(request_id, **values)


def test_only_completed_streams_count_toward_output_speed():
    batch = [
        streamed("fast"),  # 100 tokens in 2 s
        streamed("slow", completion_tokens=50, latency_us=5_500_000),  # 50 tokens in 5 s
        streamed("json", streamed=False, ttft_us=None),
        streamed("failed", status=502),
        streamed("broken", error_type="upstream_stream_broken"),
        streamed("estimated", usage_estimated=True),
        streamed("cached", cache_hit=True),
        streamed("empty", completion_tokens=0),
        streamed("instant", latency_us=500_000),  # no time after the first token
    ]
    assert usage_events_record(events=batch).written == len(batch)
    assert generation(api_key_id=1) == (2, 150, 7_000_000)
    tenant_hour = UsageHourlyTenant.objects.values_list(*GENERATION_COLUMNS).get(tenant_id=7)
    assert tenant_hour == (2, 150, 7_000_000)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 600_000_000),  # latency, µs (to the µs, as the rows keep it)
            st.integers(0, 600_000_000),  # ttft
            st.integers(0, 100_000),  # completion tokens
            st.booleans(),  # streamed
            st.sampled_from([200, 200, 429, 499, 500]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_writer_the_reconciler_and_the_migration_agree(calls):
    UsageHourly.objects.all().delete()
    UsageHourlyTenant.objects.all().delete()
    from billing.models import UsageRecord

    UsageRecord.objects.all().delete()
    batch = [
        streamed(
            f"h{index}",
            latency_us=latency,
            ttft_us=ttft,
            completion_tokens=tokens,
            streamed=flag,
            status=status,
        )
        for index, (latency, ttft, tokens, flag, status) in enumerate(calls)
    ]
    assert usage_events_record(events=batch).written == len(batch)
    written = generation(api_key_id=1)
    # The reconciler's arithmetic on the stored rows is the writer's.
    (cell,) = cells_of(UsageRecord.objects.all()).values()
    assert tuple(cell.counts[-3:]) == written  # the last counts (GENERATION_COLUMNS)
    expected = sum(
        1
        for latency, ttft, tokens, flag, status in calls
        if flag and status < 400 and tokens > 0 and latency > ttft
    )
    assert written[0] == expected
    # The migration, run over the same rows with the columns zeroed, fills in the same values.
    UsageHourly.objects.update(**dict.fromkeys(GENERATION_COLUMNS, 0))
    UsageHourlyTenant.objects.update(**dict.fromkeys(GENERATION_COLUMNS, 0))
    migration = importlib.import_module("billing.migrations.0009_console_rollups")
    migration.generation_from_usage_rows(apps, None)
    assert generation(api_key_id=1) == written
    assert UsageHourlyTenant.objects.values_list(*GENERATION_COLUMNS).get() == written


def test_the_migration_fills_cells_of_kept_rows_and_reconcile_then_agrees():
    batch = [
        streamed("a", api_key_id=1),
        streamed("b", api_key_id=2, created_at_us=AT + 3_600_000_000),
        streamed("c", api_key_id=2, end_user="u1", completion_tokens=7, latency_us=1_500_000),
        event("d", tenant_id=7, api_key_id=3, created_at_us=AT),
    ]
    assert usage_events_record(events=batch).written == 4
    before = {
        "cells": sorted(UsageHourly.objects.values_list("api_key_id", "end_user", *GENERATION_COLUMNS)),
        "tenant": sorted(UsageHourlyTenant.objects.values_list("hour", *GENERATION_COLUMNS)),
    }
    UsageHourly.objects.update(**dict.fromkeys(GENERATION_COLUMNS, 0))  # as before the columns existed
    UsageHourlyTenant.objects.update(**dict.fromkeys(GENERATION_COLUMNS, 0))
    since = HOUR.replace(hour=0)
    assert any("generation_tokens" in line for line in usage_reconcile(since=since))

    importlib.import_module("billing.migrations.0009_console_rollups").generation_from_usage_rows(apps, None)

    assert (
        sorted(UsageHourly.objects.values_list("api_key_id", "end_user", *GENERATION_COLUMNS))
        == before["cells"]
    )
    assert sorted(UsageHourlyTenant.objects.values_list("hour", *GENERATION_COLUMNS)) == before["tenant"]
    assert usage_reconcile(since=since) == []


def test_the_migration_fills_model_and_key_hours_from_cells_written_before_them():
    batch = [
        streamed("a", api_key_id=1, requested_model="m1"),
        streamed("b", api_key_id=2, requested_model="m1", status=500),
        streamed("c", api_key_id=2, requested_model="m2", end_user="u1", created_at_us=AT + 3_600_000_000),
    ]
    assert usage_events_record(events=batch).written == 3

    def tables():
        return (
            sorted(UsageHourlyModel.objects.values_list("hour", "requested_model", *SUM_COLUMNS)),
            sorted(UsageHourlyKey.objects.values_list("hour", "api_key_id", *SUM_COLUMNS)),
        )

    expected = tables()
    assert len(expected[0]) == 2 and len(expected[1]) == 3
    UsageHourlyModel.objects.all().delete()  # as before the tables existed
    UsageHourlyKey.objects.all().delete()
    assert any(line.startswith("model rollup") for line in usage_reconcile(since=HOUR.replace(hour=0)))

    importlib.import_module("billing.migrations.0009_console_rollups").model_and_key_hours_from_cells(
        apps, None
    )

    assert tables() == expected
    assert usage_reconcile(since=HOUR.replace(hour=0)) == []


def test_reconcile_fix_rederives_a_wrong_generation_sum():
    assert usage_events_record(events=[streamed("a")]).written == 1
    UsageHourly.objects.update(generation_us=1)
    since = HOUR.replace(hour=0)
    found = usage_reconcile(since=since, fix=True)
    assert any("generation_us raw 2000000 rollup 1" in line for line in found)
    assert generation(api_key_id=1) == (1, 100, 2_000_000)
    assert usage_reconcile(since=since) == []

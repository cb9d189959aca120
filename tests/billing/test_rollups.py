"""Hourly rollups: written with their raw rows, from exactly the rows that were new, so a call is
counted once however often (and by however many writers at once) its event is delivered."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection

from billing import histograms
from billing.models import UsageHourly, UsageHourlyTenant, UsageRecord
from billing.rollups import (
    KEY_COLUMNS,
    SUM_COLUMNS,
    TENANT_KEY_COLUMNS,
    cells_of,
    error_class,
    tenant_cells_of,
)
from billing.services import usage_events_record
from tests.billing.test_usage_records_save import event
from tests.support.process import ROOT, subprocess_env

HOUR = datetime(2026, 9, 21, 14, tzinfo=UTC)
AT = int(HOUR.timestamp() * 1_000_000)


def stored() -> dict[tuple, tuple]:
    width = len(KEY_COLUMNS)
    return {
        values[:width]: values[width:]
        for values in UsageHourly.objects.values_list(*KEY_COLUMNS, *SUM_COLUMNS)
    }


def stored_tenants() -> dict[tuple, tuple]:
    return {
        values[:2]: values[2:]
        for values in UsageHourlyTenant.objects.values_list(*TENANT_KEY_COLUMNS, *SUM_COLUMNS)
    }


def derived() -> dict[tuple, tuple]:
    return {key: cell.values() for key, cell in cells_of(UsageRecord.objects.all()).items()}


@pytest.mark.parametrize(
    ("status", "column"),
    [
        (200, None),
        (400, "errors_invalid_request"),
        (404, "errors_invalid_request"),
        (413, "errors_invalid_request"),
        (401, "errors_authentication"),
        (402, "errors_budget"),
        (403, "errors_permission"),
        (429, "errors_rate_limit"),
        (418, "errors_other_4xx"),
        (499, "errors_client_closed"),
        (500, "errors_5xx"),
        (504, "errors_5xx"),
        (0, None),
    ],
)
def test_each_status_counts_in_its_error_class(status, column):
    assert error_class(status) == column


@pytest.mark.parametrize(
    ("error_type", "column"),
    [
        ("upstream_stream_broken", "errors_5xx"),
        ("sanitised:upstream_stream_broken", "errors_5xx"),  # a sanitised row still counts
        ("sanitised", None),  # a good call whose event needed mending is no error
        ("", None),
    ],
)
def test_a_200_whose_stream_broke_counts_as_an_error(error_type, column):
    assert error_class(200, error_type) == column


@pytest.mark.django_db
def test_a_broken_stream_is_an_error_of_its_cell_and_of_its_tenant_hour():
    batch = [
        event("ok", tenant_id=7, api_key_id=3, created_at_us=AT + 1, streamed=True),
        event(
            "broken",
            tenant_id=7,
            api_key_id=3,
            created_at_us=AT + 2,
            streamed=True,
            status=200,
            error_type="upstream_stream_broken",
        ),
    ]
    assert usage_events_record(events=batch).written == 2
    cell = UsageHourly.objects.get(tenant_id=7, api_key_id=3, hour=HOUR)
    assert (cell.requests, cell.errors_5xx) == (2, 1)
    assert UsageHourlyTenant.objects.get(tenant_id=7, hour=HOUR).errors_5xx == 1
    assert stored() == derived()  # what usage_reconcile compares: re-derived from the raw rows alike


@pytest.mark.django_db
def test_an_hour_cell_sums_its_calls_and_a_redelivery_changes_neither_table():
    batch = [
        event(
            "r1",
            tenant_id=7,
            api_key_id=3,
            created_at_us=AT + 5,
            latency_us=2_000_000,
            ttft_us=150_000,
            upstream_latency_us=1_990_000,
            overhead_us=10_000,
            streamed=True,
            cached_tokens=4,
        ),
        event(
            "r2",
            tenant_id=7,
            api_key_id=3,
            created_at_us=AT + 3_599_999_999,
            status=429,
            error_type="rate_limit_exceeded",
            prompt_tokens=0,
            completion_tokens=0,
            cost_nanos=0,
        ),
        event(
            "r3",
            tenant_id=7,
            api_key_id=3,
            created_at_us=AT + 10,
            status=499,
            usage_estimated=True,
            cost_nanos=1,
        ),
        event("r4", tenant_id=7, api_key_id=None, end_user="u-1", created_at_us=AT + 3_600_000_000),
    ]
    assert usage_events_record(events=batch).written == 4
    cell = UsageHourly.objects.get(tenant_id=7, api_key_id=3, hour=HOUR)
    assert (cell.requests, cell.errors_rate_limit, cell.errors_client_closed, cell.errors_5xx) == (3, 1, 1, 0)
    assert (cell.prompt_tokens, cell.cached_tokens, cell.completion_tokens) == (20, 4, 10)
    assert cell.cost == Decimal("0.000060001") and (cell.estimated, cell.streamed) == (1, 1)
    assert getattr(cell, histograms.column("latency", histograms.bucket_of(2_000_000))) == 1
    assert getattr(cell, histograms.column("ttft", histograms.bucket_of(150_000))) == 1
    assert sum(getattr(cell, name) for name in histograms.COLUMNS["ttft"]) == 1  # only r1 had a first byte
    assert sum(getattr(cell, name) for name in histograms.COLUMNS["overhead"]) == 3
    # The next hour, and no key (an end-user token): a cell of its own, key 0.
    other = UsageHourly.objects.get(hour=datetime(2026, 9, 21, 15, tzinfo=UTC))
    assert (other.api_key_id, other.end_user, other.requests) == (0, "u-1", 1)
    # The tenant's hours: every key, end user and model of the hour summed.
    tenant_hour = UsageHourlyTenant.objects.get(tenant_id=7, hour=HOUR)
    assert (tenant_hour.requests, tenant_hour.cost, tenant_hour.errors_rate_limit) == (3, cell.cost, 1)
    assert UsageHourlyTenant.objects.count() == 2

    before = stored()
    assert (
        usage_events_record(events=[*batch, event("r5", tenant_id=7, created_at_us=AT), batch[0]]).written
        == 1
    )
    after = stored()
    assert UsageRecord.objects.count() == 5
    assert after == derived() and after != before
    assert usage_events_record(events=batch).written == 0
    assert stored() == after


WRITER = r"""
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
from billing.services import usage_events_record
batches = json.load(open(sys.argv[1]))
written = sum(usage_events_record(events=batch).written for batch in batches)
print(written)
"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_writers_in_separate_processes_given_the_same_events_count_each_call_once(tmp_path):
    rng = random.Random(7)
    events = [
        event(
            f"c{index:05d}",
            tenant_id=1 + index % 3,
            api_key_id=1 + index % 5,
            created_at_us=AT + rng.randrange(3 * 3_600_000_000),
            requested_model=rng.choice(["fast", "smart"]),
            prompt_tokens=rng.randrange(1, 500),
            completion_tokens=rng.randrange(0, 900),
            cost_nanos=rng.randrange(0, 10**7),
            status=rng.choice([200, 200, 200, 429, 500, 499]),
            latency_us=rng.randrange(100, 10**7),
        )
        for index in range(3000)
    ]
    processes, files = [], []
    for writer in range(4):
        shuffled = events[:]
        random.Random(writer).shuffle(shuffled)
        path = tmp_path / f"batches-{writer}.json"
        path.write_text(json.dumps([shuffled[start : start + 250] for start in range(0, len(shuffled), 250)]))
        files.append(path)
    env = subprocess_env(settings_dict=connection.settings_dict, redis_url=settings.REDIS_URL or "")
    for path in files:
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(path)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = [process.communicate(timeout=120) for process in processes]
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr[-2000:]
    assert sum(int(stdout.strip()) for stdout, _ in results) == 3000  # each call new to exactly one writer
    assert UsageRecord.objects.count() == 3000
    assert stored() == derived()
    assert stored_tenants() == {
        key: cell.values() for key, cell in tenant_cells_of(cells_of(UsageRecord.objects.all())).items()
    }
    totals = UsageHourly.objects.values_list("requests", "cost")
    assert sum(requests for requests, _ in totals) == 3000
    assert sum(cost for _, cost in totals) == sum(Decimal(e["cost_nanos"]).scaleb(-9) for e in events)


@pytest.mark.django_db
def test_the_migration_fills_tenant_hours_from_cells_written_before_it():
    import importlib

    from django.apps import apps

    migration = importlib.import_module("billing.migrations.0007_usage_hourly_tenant")
    batch = [
        event("m1", tenant_id=5, api_key_id=1, created_at_us=AT, latency_us=3_000),
        event("m2", tenant_id=5, api_key_id=2, created_at_us=AT + 60_000_000, status=500),
        event("m3", tenant_id=6, api_key_id=3, created_at_us=AT + 3_600_000_000),
    ]
    assert usage_events_record(events=batch).written == 3
    expected = stored_tenants()
    UsageHourlyTenant.objects.all().delete()  # as before the table existed

    migration.tenant_hours_from_cells(apps, None)

    assert stored_tenants() == expected
    assert stored_tenants()[(5, HOUR)][0] == 2  # two keys' cells, one tenant hour

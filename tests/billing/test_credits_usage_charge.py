"""Usage charges reach the credit ledger from the usage pipeline, exactly once per call: through the
real drain (Redis stream, consumer group) into real PostgreSQL."""

from __future__ import annotations

import logging
from decimal import Decimal

import orjson
import pytest
from django.conf import settings
from django.db import connection

from accounts.services import tenant_create
from billing.credits import credit_add, credit_balance
from billing.models import CreditEntry, UsageRecord
from billing.pots import credit_pot
from billing.services import usage_events_record
from billing.usage import FIELD, stream_key, usage_drain
from config.redis import sync_client
from tests.billing.test_usage_records_save import event

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL"),
]


@pytest.fixture
def acme():
    tenant = tenant_create(name="Acme", slug="acme")
    credit_add(tenant=tenant, kind="topup", usd=Decimal("10"))
    return tenant


def call(request_id: str, tenant, **overrides):
    return event(request_id, tenant_id=tenant.pk, credits=True, **overrides)


def publish(*events) -> None:
    for item in events:
        sync_client().xadd(stream_key(), {FIELD: orjson.dumps(item)})


def charges() -> dict[str, Decimal]:
    return dict(CreditEntry.objects.filter(kind="usage").values_list("request_id", "amount"))


def test_it_charges_a_credit_call_once_through_the_drain_however_often_it_is_delivered(acme):
    publish(call("c1", acme, cost_nanos=250_000_000), call("c2", acme, cost_nanos=1))
    assert usage_drain(claim_idle_ms=600_000) == 2
    assert charges() == {"c1": Decimal("-0.25"), "c2": Decimal("-0.000000001")}
    # Delivered again, in a later batch and twice within one batch.
    publish(call("c1", acme, cost_nanos=250_000_000))
    publish(call("c2", acme, cost_nanos=1), call("c2", acme, cost_nanos=1))
    assert usage_drain(claim_idle_ms=600_000) == 0
    assert charges() == {"c1": Decimal("-0.25"), "c2": Decimal("-0.000000001")}
    assert UsageRecord.objects.count() == 2
    assert credit_balance(acme) == Decimal("9.749999999")
    entry = CreditEntry.objects.get(request_id="c1")
    assert (entry.tenant, entry.kind, entry.redemption_code) == (acme, "usage", None)


def test_it_charges_only_calls_on_credits_with_a_cost(acme):
    publish(
        event("budget-call", tenant_id=acme.pk, cost_nanos=500),  # no credits field
        call("free-call", acme, cost_nanos=0),
        call("cache-hit", acme, cost_nanos=0, cache_hit=True),
        event("said-false", tenant_id=acme.pk, credits=False, cost_nanos=500),
        event("said-yes", tenant_id=acme.pk, credits="yes", cost_nanos=500),
        event("said-one", tenant_id=acme.pk, credits=1, cost_nanos=500),
        call("paid", acme, cost_nanos=700),
    )
    assert usage_drain(claim_idle_ms=600_000) == 7
    assert charges() == {"paid": Decimal("-7E-7")}
    # A value that is not true or false is not charged, and its row says it was sanitised.
    marked = dict(UsageRecord.objects.values_list("request_id", "error_type"))
    assert marked["said-yes"] == marked["said-one"] == "sanitised"
    assert marked["paid"] == marked["said-false"] == ""


def test_it_does_not_touch_the_gateways_counter_which_already_charged_the_call(acme):
    pot = credit_pot(acme.pk)
    sync_client().hset(pot, mapping={"credit": 10_000_000_000, "spent": 400})
    publish(call("c1", acme, cost_nanos=400))
    usage_drain(claim_idle_ms=600_000)
    assert charges() == {"c1": Decimal("-4E-7")}
    assert sync_client().hgetall(pot) == {b"credit": b"10000000000", b"spent": b"400"}


def test_it_still_charges_a_call_whose_row_had_to_be_sanitised(acme, caplog):
    publish(
        call("dirty", acme, cost_nanos=900, end_user="a\x00b", client_ip="nowhere", prompt_tokens="12"),
        call("clean", acme, cost_nanos=100),
    )
    with caplog.at_level(logging.WARNING, logger="billing.services"):
        usage_drain(claim_idle_ms=600_000)
    assert charges() == {"dirty": Decimal("-9E-7"), "clean": Decimal("-1E-7")}
    assert UsageRecord.objects.get(request_id="dirty").error_type == "sanitised"


@pytest.fixture
def refusing_table():
    """The database refuses some rows for a reason no reader can foresee (real CHECK constraints,
    dropped at the end): the writer then falls back to storing row by row."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE billing_usagerecord ADD CONSTRAINT test_refuses_evil CHECK (end_user <> 'evil')"
        )
        cursor.execute(
            "ALTER TABLE billing_usagerecord ADD CONSTRAINT test_refuses_666 CHECK (prompt_tokens <> 666)"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE billing_usagerecord DROP CONSTRAINT test_refuses_evil")
        cursor.execute("ALTER TABLE billing_usagerecord DROP CONSTRAINT test_refuses_666")


def test_the_row_by_row_fallback_charges_each_call_once_even_as_money_facts(acme, refusing_table):
    publish(
        call("innocent", acme, cost_nanos=100),
        call("evil", acme, end_user="evil", cost_nanos=2_000),
        event("evil-on-budget", tenant_id=acme.pk, end_user="evil", cost_nanos=5),
    )
    assert usage_drain(claim_idle_ms=600_000) == 3
    assert charges() == {"innocent": Decimal("-1E-7"), "evil": Decimal("-0.000002")}
    assert UsageRecord.objects.get(request_id="evil").end_user == ""  # its money facts only
    publish(call("evil", acme, end_user="evil", cost_nanos=2_000))  # delivered again
    usage_drain(claim_idle_ms=600_000)
    assert charges() == {"innocent": Decimal("-1E-7"), "evil": Decimal("-0.000002")}


def test_a_call_whose_row_the_database_refuses_outright_is_still_charged_and_set_aside(acme, refusing_table):
    outcome = usage_events_record(events=[call("beast", acme, prompt_tokens=666, cost_nanos=30)])
    assert outcome.written == 0 and "its credit charge was recorded" in outcome.rejected[0]
    assert not UsageRecord.objects.exists()
    assert charges() == {"beast": Decimal("-3E-8")}


def test_a_charge_for_a_tenant_that_no_longer_exists_holds_up_nothing(acme, caplog):
    with caplog.at_level(logging.ERROR, logger="billing.services"):
        outcome = usage_events_record(
            events=[
                event("gone", tenant_id=acme.pk + 1000, credits=True, cost_nanos=50),
                event("nobody", credits=True, cost_nanos=50),
                call("here", acme, cost_nanos=60),
            ]
        )
    assert outcome.written == 3 and outcome.rejected == {}
    assert charges() == {"here": Decimal("-6E-8")}
    assert (
        f"usage charge of request gone (0.000000050 USD) not recorded: tenant {acme.pk + 1000} does not exist"
        in caplog.text
    )
    assert "usage charge of request nobody (0.000000050 USD) not recorded: tenant (none named)" in caplog.text

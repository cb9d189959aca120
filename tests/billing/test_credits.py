"""billing.credits: credit_add and credit_balance (the prepaid-credit ledger), on real PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.services import tenant_create
from billing.credits import credit_add, credit_balance, usd_text
from billing.models import CreditEntry
from billing.pots import credit_pot
from config.redis import sync_client

pytestmark = pytest.mark.django_db
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")


@pytest.fixture
def acme():
    return tenant_create(name="Acme", slug="acme")


@pytest.fixture
def globex():
    return tenant_create(name="Globex", slug="globex")


def test_it_starts_every_tenant_at_zero(acme):
    assert credit_balance(acme) == 0


def test_it_sums_top_ups_refunds_and_adjustments_per_tenant(acme, globex, django_user_model):
    operator = django_user_model.objects.create_user("operator")
    credit_add(tenant=acme, kind="topup", usd=Decimal("25"), note="invoice 7", created_by=operator)
    credit_add(tenant=acme, kind="refund", usd=Decimal("0.000000001"))
    credit_add(tenant=acme, kind="adjustment", usd=Decimal("-5.5"))
    credit_add(tenant=globex, kind="topup", usd=Decimal("1000"))
    assert credit_balance(acme) == Decimal("19.500000001")
    assert credit_balance(globex) == Decimal("1000")
    first = CreditEntry.objects.filter(tenant=acme, kind="topup").get()
    assert (first.amount, first.note, first.created_by) == (Decimal("25"), "invoice 7", operator)


def test_it_counts_every_line_of_the_ledger_including_usage_and_redemptions(acme):
    credit_add(tenant=acme, kind="topup", usd=Decimal("10"))
    CreditEntry.objects.create(tenant=acme, kind="usage", amount=Decimal("-0.25"), request_id="r1")
    CreditEntry.objects.create(tenant=acme, kind="usage", amount=Decimal("-0.000000003"), request_id="r2")
    assert credit_balance(acme) == Decimal("9.749999997")


def test_it_refuses_to_change_a_line_once_written(acme):
    entry = credit_add(tenant=acme, kind="topup", usd=Decimal("10"))
    entry.amount = Decimal("1000")
    with pytest.raises(ValueError, match="append-only"):
        entry.save()
    assert CreditEntry.objects.get().amount == Decimal("10")


@pytest.mark.parametrize(
    ("kind", "usd", "sentence"),
    [
        ("topup", Decimal("-5"), "A top-up must be more than 0 USD, not -5."),
        ("topup", Decimal("0"), "A top-up must be more than 0 USD, not 0."),
        ("refund", Decimal("-0.01"), "A refund must be more than 0 USD, not -0.01."),
        ("adjustment", Decimal("0"), "An adjustment must be more or less than 0 USD, not 0."),
        ("adjustment", Decimal("-0"), "An adjustment must be more or less than 0 USD, not -0."),
        ("topup", Decimal("0.0000000001"), "The amount takes at most 9 decimal places."),
        ("topup", Decimal("1.1234567891"), "The amount takes at most 9 decimal places."),
        ("topup", Decimal("NaN"), "The amount must be a finite number."),
        ("adjustment", Decimal("-Infinity"), "The amount must be a finite number."),
        ("topup", Decimal("1000000000.01"), "The amount must be at most 1000000000 USD either way."),
        ("adjustment", Decimal("-1E10"), "at most 1000000000 USD either way."),
        ("topup", 2.5, "The amount must be a Decimal number of US dollars, not float."),
        ("topup", "10", "not str."),
        ("topup", True, "not bool."),
        ("usage", Decimal("1"), "A credit line added by hand is one of 'topup', 'refund', 'adjustment'"),
        ("redemption", Decimal("1"), "not 'redemption'."),
    ],
)
def test_it_refuses_bad_amounts_and_kinds_with_one_sentence_and_adds_nothing(acme, kind, usd, sentence):
    with pytest.raises(ValidationError) as failure:
        credit_add(tenant=acme, kind=kind, usd=usd)
    assert sentence in " ".join(failure.value.messages)
    assert len(failure.value.messages) == 1
    assert not CreditEntry.objects.exists()


def test_it_validates_the_whole_line_and_adds_nothing_on_a_bad_note(acme):
    with pytest.raises(ValidationError) as failure:
        credit_add(tenant=acme, kind="topup", usd=Decimal("1"), note="n" * 501)
    assert "note" in failure.value.message_dict
    assert not CreditEntry.objects.exists()


def test_it_takes_whole_dollars_as_int_and_stores_nine_places(acme):
    entry = credit_add(tenant=acme, kind="topup", usd=7)
    entry.refresh_from_db()
    assert entry.amount == Decimal("7") and str(entry.amount) == "7.000000000"


def test_it_writes_amounts_for_people():
    assert usd_text(Decimal("7.000000000")) == "7.00"
    assert usd_text(Decimal("-0.000000001")) == "-0.000000001"
    assert usd_text(Decimal("1E+3")) == "1000.00"
    assert usd_text(Decimal("12.5")) == "12.50"


@needs_redis
def test_it_tells_the_gateways_counter_after_commit_and_only_then(acme, django_capture_on_commit_callbacks):
    pot = credit_pot(acme.pk)
    sync_client().hset(pot, mapping={"credit": 1_000_000_000, "spent": 0})  # a gateway made this pot
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        credit_add(tenant=acme, kind="topup", usd=Decimal("2.5"))
        credit_add(tenant=acme, kind="adjustment", usd=Decimal("-0.000000007"))
    assert int(sync_client().hget(pot, "credit")) == 1_000_000_000  # nothing before commit
    for callback in callbacks:
        callback()
    assert int(sync_client().hget(pot, "credit")) == 3_499_999_993


@needs_redis
def test_it_creates_no_pot_a_gateway_has_not_made(acme, django_capture_on_commit_callbacks):
    # A pot that does not exist yet is made from the ledger, which already holds the top-up.
    with django_capture_on_commit_callbacks(execute=True):
        credit_add(tenant=acme, kind="topup", usd=Decimal("2.5"))
    assert not sync_client().exists(credit_pot(acme.pk))


def test_it_keeps_the_line_when_redis_cannot_be_told(
    acme, settings, django_capture_on_commit_callbacks, caplog
):
    from config.redis import sync_client as cached_client

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nobody listens
    cached_client.cache_clear()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            entry = credit_add(tenant=acme, kind="topup", usd=Decimal("3"))
    finally:
        cached_client.cache_clear()
    assert credit_balance(acme) == Decimal("3")
    assert (
        f"credit line {entry.pk} of tenant {acme.pk} committed, but the gateways' counter was not told"
        in (caplog.text)
    )


amounts = st.decimals(
    min_value=Decimal("-1000000000"), max_value=Decimal("1000000000"), places=9, allow_nan=False
)
lines = st.lists(
    st.one_of(
        st.tuples(st.just("topup"), amounts.filter(lambda d: d > 0)),
        st.tuples(st.just("refund"), amounts.filter(lambda d: d > 0)),
        st.tuples(st.just("adjustment"), amounts.filter(lambda d: d != 0)),
    ),
    max_size=15,
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(acme_lines=lines, globex_lines=lines)
def test_the_balance_is_exactly_the_decimal_sum_of_any_sequence_of_lines(
    acme, globex, acme_lines, globex_lines
):
    with transaction.atomic():  # each example rolls back what it wrote
        for tenant, sequence in ((acme, acme_lines), (globex, globex_lines)):
            for kind, usd in sequence:
                credit_add(tenant=tenant, kind=kind, usd=usd)
        assert credit_balance(acme) == sum((usd for _, usd in acme_lines), Decimal(0))
        assert credit_balance(globex) == sum((usd for _, usd in globex_lines), Decimal(0))
        transaction.set_rollback(True)

"""billing.budgets: budget_set (create or change, one per subject and period), budget_save, budget_delete."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from accounts.services import api_key_issue, tenant_create
from billing.budgets import budget_delete, budget_save, budget_set
from billing.models import Budget
from gateway.auth import tenant_policy
from tests.support.snapshot import db_snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():
    return tenant_create(name="Acme", slug="acme")


@pytest.fixture
def key(acme):
    return api_key_issue(tenant=acme, name="ci").api_key


def test_it_creates_a_tenant_budget_with_the_defaults(acme):
    budget = budget_set(tenant=acme, usd=Decimal("100.5"), period="month")
    stored = Budget.objects.get()
    assert stored.pk == budget.pk
    assert (stored.scope, stored.api_key, stored.end_user, stored.amount, stored.period) == (
        "tenant",
        None,
        "",
        Decimal("100.5"),
        "month",
    )
    assert (stored.hard, stored.thresholds, stored.emails, stored.webhook_url) == (
        True,
        [50, 80, 100],
        [],
        "",
    )


def test_setting_it_again_changes_the_same_budget_and_keeps_what_was_not_given(acme):
    first = budget_set(
        tenant=acme,
        usd=Decimal(100),
        period="month",
        thresholds=[90, 25],
        emails=["finance@acme.test"],
        webhook_url="https://hooks.acme.test/budget",
    )
    again = budget_set(tenant=acme, usd=Decimal(200), period="month", hard=False)
    assert again.pk == first.pk and Budget.objects.count() == 1
    stored = Budget.objects.get()
    assert (stored.amount, stored.hard) == (Decimal(200), False)
    assert stored.thresholds == [25, 90]  # sorted by the model
    assert stored.emails == ["finance@acme.test"]
    assert stored.webhook_url == "https://hooks.acme.test/budget"
    budget_set(tenant=acme, usd=Decimal(200), period="month", emails=[], webhook_url="")
    stored.refresh_from_db()
    assert (stored.emails, stored.webhook_url) == ([], "")


def test_each_subject_and_period_has_its_own_budget(acme, key):
    globex = tenant_create(name="Globex", slug="globex")
    budget_set(tenant=acme, usd=Decimal(10), period="day")
    budget_set(tenant=acme, usd=Decimal(50), period="month")
    budget_set(tenant=acme, api_key=key, usd=Decimal(5), period="day")
    budget_set(tenant=acme, end_user="", usd=Decimal(1), period="day")
    budget_set(tenant=acme, end_user="user-42", usd=Decimal(2), period="day")
    budget_set(tenant=globex, usd=Decimal(10), period="day")
    budget_set(tenant=acme, api_key=key, usd=Decimal(6), period="day")  # changes the key's
    rows = set(Budget.objects.values_list("tenant__slug", "scope", "api_key", "end_user", "period", "amount"))
    assert rows == {
        ("acme", "tenant", None, "", "day", Decimal(10)),
        ("acme", "tenant", None, "", "month", Decimal(50)),
        ("acme", "key", key.pk, "", "day", Decimal(6)),
        ("acme", "end_user", None, "", "day", Decimal(1)),
        ("acme", "end_user", None, "user-42", "day", Decimal(2)),
        ("globex", "tenant", None, "", "day", Decimal(10)),
    }


def test_the_gateway_applies_what_was_set(acme, key):
    budget_set(tenant=acme, api_key=key, usd=Decimal("0.000000001"), period="week", hard=False)
    (budget,) = tenant_policy(acme, api_key_id=key.pk)["budgets"]
    assert (budget.scope, budget.amount_nanos, budget.period, budget.hard) == ("key", 1, "week", False)
    assert tenant_policy(acme, api_key_id=None)["budgets"] == ()  # not an end-user token's


@pytest.mark.parametrize(
    ("kwargs", "field", "sentence"),
    [
        ({"usd": Decimal(-1)}, "amount", "A budget must be more than 0 USD"),
        ({"usd": Decimal(0)}, "amount", "A budget must be more than 0 USD"),
        ({"usd": Decimal("NaN")}, "amount", "The amount must be a finite number of USD."),
        ({"usd": Decimal("sNaN")}, "amount", "The amount must be a finite number of USD."),
        ({"usd": Decimal("Infinity")}, "amount", "The amount must be a finite number of USD."),
        ({"usd": 1.5}, "amount", "Enter the amount as a decimal number of USD"),
        ({"usd": True}, "amount", "Enter the amount as a decimal number of USD"),
        ({"usd": Decimal("0.0000000001")}, "amount", "no more than 9 decimal places"),
        ({"usd": Decimal("123456789012")}, "amount", "no more than 11 digits before the decimal point"),
        ({"period": "year"}, "period", "is not a valid choice"),
        ({"period": ""}, "period", "This field cannot be blank."),
        ({"thresholds": []}, "thresholds", "Enter whole percentages between 1 and 1000"),
        ({"thresholds": [0, 50]}, "thresholds", "Enter whole percentages between 1 and 1000"),
        ({"thresholds": [50, "80"]}, "thresholds", "Enter whole percentages between 1 and 1000"),
        ({"thresholds": [1001]}, "thresholds", "Enter whole percentages between 1 and 1000"),
        ({"thresholds": [50, 101]}, "thresholds", "A hard budget stops calls at 100 %, so its alerts go up"),
        ({"emails": ["finance@acme.test", "nobody"]}, "emails", "'nobody' is not an email address."),
        ({"webhook_url": "not a url"}, "webhook_url", "must be an http:// or https:// address"),
        ({"webhook_url": "https://"}, "webhook_url", "Enter a valid URL."),
        ({"webhook_url": "ftp://hooks.acme.test/x"}, "webhook_url", "must be an http:// or https:// address"),
        ({"webhook_url": "javascript:alert(1)"}, "webhook_url", "must be an http:// or https:// address"),
        ({"end_user": "x" * 201}, "end_user", "at most 200 characters"),
        ({"end_user": "eve\x00"}, "end_user", "An end user is named by printable text."),
    ],
)
def test_it_refuses_bad_input_and_changes_nothing(acme, kwargs, field, sentence):
    existing = budget_set(tenant=acme, usd=Decimal(100), period="day", emails=["a@acme.test"])
    if "end_user" in kwargs:
        budget_set(tenant=acme, end_user="", usd=Decimal(100), period="day")
    before = db_snapshot()
    # The same subject and period as `existing` (unless the period itself is the bad value):
    # a refused change must leave it as it was.
    with pytest.raises(ValidationError) as caught:
        budget_set(**{"tenant": acme, "usd": Decimal(7), "period": "day", **kwargs})
    assert any(sentence in message for message in caught.value.message_dict[field]), caught.value
    assert db_snapshot() == before
    existing.refresh_from_db()
    assert (existing.amount, existing.emails) == (Decimal(100), ["a@acme.test"])


def test_it_refuses_a_key_of_another_tenant(acme, key):
    globex = tenant_create(name="Globex", slug="globex")
    with pytest.raises(ValidationError) as caught:
        budget_set(tenant=globex, api_key=key, usd=Decimal(1), period="day")
    assert caught.value.message_dict == {"api_key": ["That key belongs to another tenant."]}
    assert not Budget.objects.exists()


def test_it_refuses_a_key_and_an_end_user_at_once(acme, key):
    with pytest.raises(ValidationError) as caught:
        budget_set(tenant=acme, api_key=key, end_user="u1", usd=Decimal(1), period="day")
    assert caught.value.messages == ["A budget is for one key or for end users, not both."]
    assert not Budget.objects.exists()


def test_budget_save_refuses_a_second_budget_for_the_same_subject_and_period(acme):
    budget_set(tenant=acme, usd=Decimal(1), period="day")
    with pytest.raises(ValidationError) as caught:
        budget_save(budget=Budget(tenant=acme, amount=Decimal(2), period="day"))
    assert caught.value.messages == [
        "That subject already has a budget for this period: change that one instead."
    ]
    assert list(Budget.objects.values_list("amount", flat=True)) == [Decimal(1)]


def test_budget_save_validates_an_edited_budget(acme, key):
    budget = budget_set(tenant=acme, usd=Decimal(1), period="day")
    budget.scope = Budget.Scope.KEY  # without its key
    with pytest.raises(ValidationError) as caught:
        budget_save(budget=budget)
    assert "api_key" in caught.value.message_dict
    assert Budget.objects.get().scope == "tenant"


def test_budget_delete(acme):
    budget = budget_set(tenant=acme, usd=Decimal(1), period="day")
    budget_delete(budget=budget)
    assert not Budget.objects.exists()

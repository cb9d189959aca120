"""The billing admin: budgets are edited through billing.budgets (a refused value is shown on the
form, never a 500); credit lines, redemption codes, alerts and webhook attempts are read-only, and a
redemption code is never shown, only its hint."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts.services import api_key_issue, tenant_create
from billing.budgets import budget_set
from billing.credits import credit_add, redeem_codes_create
from billing.models import Budget, BudgetAlert, CreditEntry, RedemptionCode, WebhookAttempt

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    # No password: force_login needs none, and hashing one costs a second per test.
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.com", None))
    return client


@pytest.fixture
def acme():
    return tenant_create(name="Acme", slug="acme")


def budget_form(tenant, **overrides):
    data = {
        "tenant": tenant.pk,
        "scope": "tenant",
        "api_key": "",
        "end_user": "",
        "amount": "100",
        "period": "month",
        "hard": "on",
        "thresholds": "[50, 80, 100]",
        "emails": '["cfo@acme.test"]',
        "webhook_url": "",
    }
    return {**data, **overrides}


def test_it_adds_a_budget_through_the_service(operator_client, acme):
    key = api_key_issue(tenant=acme, name="ci").api_key
    response = operator_client.post(
        "/admin/billing/budget/add/",
        budget_form(acme, scope="key", api_key=key.pk, amount="12.5", thresholds="[100, 50]"),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    budget = Budget.objects.get()
    assert (budget.scope, budget.api_key, budget.amount, budget.thresholds) == (
        "key",
        key,
        Decimal("12.5"),
        [50, 100],
    )


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"amount": "0"}, "A budget must be more than 0 USD"),
        ({"amount": "-3"}, "A budget must be more than 0 USD"),
        ({"amount": "1.0000000001"}, "Ensure that there are no more than 9 decimal places."),
        ({"webhook_url": "ftp://hooks.acme.test/x"}, "The webhook must be an http:// or https:// address."),
        (
            {"webhook_url": "http://169.254.169.254/latest/"},
            "169.254.169.254 is a link-local address: webhooks go",
        ),
        ({"thresholds": "[50, 120]"}, "A hard budget stops calls at 100 %"),
        ({"thresholds": "[0]"}, "Enter whole percentages between 1 and 1000"),
        ({"emails": '["nobody"]'}, "&#x27;nobody&#x27; is not an email address."),
        ({"scope": "key"}, "A key budget names its key."),
        ({"end_user": "u1"}, "Only an end-user budget names an end user."),
        ({"period": "year"}, "Select a valid choice."),
    ],
)
def test_it_refuses_a_bad_budget_on_the_form(operator_client, acme, overrides, error):
    response = operator_client.post("/admin/billing/budget/add/", budget_form(acme, **overrides))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Budget.objects.exists()


def test_it_refuses_a_key_of_another_tenant_and_a_second_budget_for_one_period(operator_client, acme):
    globex = tenant_create(name="Globex", slug="globex")
    key = api_key_issue(tenant=globex, name="ci").api_key
    response = operator_client.post(
        "/admin/billing/budget/add/", budget_form(acme, scope="key", api_key=key.pk)
    )
    assert response.status_code == 200
    assert "That key belongs to another tenant." in response.content.decode()
    budget_set(tenant=acme, usd=Decimal(1), period="month")
    response = operator_client.post("/admin/billing/budget/add/", budget_form(acme))
    assert response.status_code == 200
    assert "That subject already has a budget for this period: change that one instead." in (
        response.content.decode()
    )
    assert "is violated" not in response.content.decode()
    assert list(Budget.objects.values_list("amount", flat=True)) == [Decimal(1)]


def test_it_changes_and_deletes_a_budget(operator_client, acme):
    budget = budget_set(tenant=acme, usd=Decimal(1), period="month")
    url = reverse("admin:billing_budget_change", args=[budget.pk])
    assert operator_client.get(url).status_code == 200
    response = operator_client.post(url, budget_form(acme, amount="2", hard=""))
    assert response.status_code == 302, response.content.decode()[:3000]
    budget.refresh_from_db()
    assert (budget.amount, budget.hard) == (Decimal(2), False)
    listing = operator_client.get("/admin/billing/budget/").content.decode()
    assert "the whole tenant" in listing
    response = operator_client.post(reverse("admin:billing_budget_delete", args=[budget.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Budget.objects.exists()


def test_credit_lines_are_read_only(operator_client, acme):
    entry = credit_add(tenant=acme, kind="topup", usd=Decimal("9.5"), note="welcome")
    listing = operator_client.get("/admin/billing/creditentry/")
    assert listing.status_code == 200 and "welcome" in listing.content.decode()
    assert operator_client.get("/admin/billing/creditentry/add/").status_code == 403
    url = f"/admin/billing/creditentry/{entry.pk}/change/"
    page = operator_client.get(url)
    assert page.status_code == 200 and "9.5" in page.content.decode()
    assert (
        operator_client.post(url, {"amount": "1000", "kind": "topup", "tenant": acme.pk}).status_code == 403
    )
    assert (
        operator_client.post(f"/admin/billing/creditentry/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert CreditEntry.objects.get().amount == Decimal("9.5")


def test_redemption_codes_show_their_hint_never_the_code_or_its_digest(operator_client):
    (code,) = redeem_codes_create(usd=Decimal(5), count=1)
    stored = RedemptionCode.objects.get()
    body = code.replace("-", "")[2:]
    for url in ("/admin/billing/redemptioncode/", f"/admin/billing/redemptioncode/{stored.pk}/change/"):
        html = operator_client.get(url).content.decode()
        assert f"{stored.hint}…" in html
        assert stored.digest not in html
        assert code not in html and body not in html and body[4:] not in html
    assert operator_client.get("/admin/billing/redemptioncode/add/").status_code == 403


def test_alerts_and_webhook_attempts_are_read_only(operator_client, acme):
    budget = budget_set(tenant=acme, usd=Decimal(10), period="month")
    alert = BudgetAlert.objects.create(
        budget=budget,
        period_start=datetime(2026, 11, 1, tzinfo=UTC),
        kind="threshold",
        threshold=80,
        spend=Decimal("8.2"),
    )
    WebhookAttempt.objects.create(alert=alert, url="https://hooks.acme.test/b", attempt=1, status_code=500)
    page = operator_client.get(f"/admin/billing/budgetalert/{alert.pk}/change/")
    assert page.status_code == 200
    assert "https://hooks.acme.test/b" in page.content.decode()  # its attempts, inline
    assert operator_client.get("/admin/billing/budgetalert/add/").status_code == 403
    assert operator_client.get("/admin/billing/webhookattempt/").status_code == 200
    assert operator_client.get("/admin/billing/webhookattempt/add/").status_code == 403
    assert (
        operator_client.post(f"/admin/billing/budgetalert/{alert.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )

"""/api/v1/tenants/<slug>/budgets/: list with spend, set (create or change), retrieve, change,
delete; per way in; bad input is a 400 naming the field; another tenant's budget or key is 404/400;
every change audited with the token's user (billing.budgets services)."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry
from accounts.services import api_key_issue
from billing.budgets import budget_set
from billing.models import Budget
from tests.support.api import API_VISITORS

pytestmark = pytest.mark.django_db

BUDGETS = "/api/v1/tenants/acme/budgets/"
DENIED = {"outsider": 404, "operator": 404, "anonymous": 401, "expired": 401, "revoked": 401}


def post(client, url, body):
    return client.post(url, body, content_type="application/json")


@pytest.mark.parametrize("visitor", API_VISITORS)
def test_it_checks_who_reads_and_sets_budgets(api_client, roles, visitor):
    from decimal import Decimal

    budget_set(tenant=roles.other, usd=Decimal(9), period="day")
    client = api_client(visitor)
    listed = client.get(BUDGETS)
    assert listed.status_code == DENIED.get(visitor, 200)
    if listed.status_code == 200:
        assert listed.json()["results"] == []  # globex's budget is not acme's
    response = post(client, BUDGETS, {"amount": "100", "period": "month"})
    expected = DENIED.get(visitor) or (201 if visitor in ("owner", "admin") else 403)
    assert response.status_code == expected
    assert Budget.objects.filter(tenant=roles.tenant).count() == (1 if expected == 201 else 0)


def test_it_sets_changes_and_deletes_a_budget_with_its_status(api_client, roles):
    client = api_client("admin")
    key = api_key_issue(tenant=roles.tenant, name="app").api_key
    created = post(
        client,
        BUDGETS,
        {"scope": "key", "api_key": key.pk, "amount": "25.5", "period": "week", "thresholds": [50, 90]},
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["amount"], body["api_key"], body["thresholds"]) == ("25.500000000", key.pk, [50, 90])
    assert body["status"]["spent"] == "0.000000000" and body["status"]["label"]
    # The same subject and period: that budget changes (200), it is not a second one.
    again = post(client, BUDGETS, {"scope": "key", "api_key": key.pk, "amount": "30", "period": "week"})
    assert (again.status_code, again.json()["id"], again.json()["amount"]) == (
        200,
        body["id"],
        "30.000000000",
    )
    url = f"{BUDGETS}{body['id']}/"
    changed = client.patch(url, {"hard": False, "emails": ["fin@acme.test"]}, content_type="application/json")
    assert changed.status_code == 200
    assert (changed.json()["hard"], changed.json()["emails"]) == (False, ["fin@acme.test"])
    assert client.get(url).json()["emails"] == ["fin@acme.test"]
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404
    actions = list(
        AuditEntry.objects.filter(object_type="billing.budget")
        .order_by("id")
        .values_list("action", "actor_user")
    )
    assert actions == [
        (a, roles.admin.pk) for a in ("budget.create", "budget.change", "budget.change", "budget.delete")
    ]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": "1", "period": "year"}, "period"),
        ({"amount": "1", "thresholds": [0]}, "thresholds.0"),
        ({"amount": "1", "emails": ["not-an-address"]}, "emails.0"),
        ({"amount": "1", "webhook_url": "http://127.0.0.1:6379/"}, "webhook_url"),
        ({"amount": "1", "scope": "key"}, "api_key"),
        ({"amount": "1", "scope": "key", "api_key": 999999}, "api_key"),
        ({"amount": "1", "api_key": 1}, "api_key"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api_client, body, field):
    response = post(api_client("owner"), BUDGETS, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
    assert not Budget.objects.exists()


def test_another_tenants_budget_and_key_are_not_reachable(api_client, roles):
    from decimal import Decimal

    theirs = budget_set(tenant=roles.other, usd=Decimal(9), period="day")
    their_key = api_key_issue(tenant=roles.other, name="k").api_key
    client = api_client("owner")
    assert client.get(f"{BUDGETS}{theirs.pk}/").status_code == 404
    assert client.delete(f"{BUDGETS}{theirs.pk}/").status_code == 404
    response = post(client, BUDGETS, {"scope": "key", "api_key": their_key.pk, "amount": "5"})
    assert (response.status_code, response.json()["error"]["field"]) == (400, "api_key")
    assert Budget.objects.filter(pk=theirs.pk).exists()

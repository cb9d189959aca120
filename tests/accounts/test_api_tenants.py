"""Operator endpoints /api/v1/tenants/: list, create, retrieve, update (suspend / resume), top up;
per way in (an operator's token; each role's and another tenant's owner's token: 404; no, expired
or revoked token: 401); errors in the API's shape, nothing stored on bad input; every change
audited with the token's user."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail

from accounts.models import AuditEntry, Invitation, Membership, Plan, Tenant
from billing.credits import credit_balance
from billing.models import UsageHourlyTenant
from tests.support.api import API_VISITORS, client_with, operator_user, token_for
from tests.support.snapshot import db_snapshot

pytestmark = pytest.mark.django_db

NOT_OPERATOR = {v: 404 for v in ("owner", "admin", "member", "viewer", "outsider")} | {
    v: 401 for v in ("anonymous", "expired", "revoked")
}
JSON = "application/json"


def calls():
    return [
        ("get", "/api/v1/tenants/", None),
        ("post", "/api/v1/tenants/", {"name": "Initech", "slug": "initech", "owner_email": "p@initech.test"}),
        ("get", "/api/v1/tenants/acme/", None),
        ("patch", "/api/v1/tenants/acme/", {"status": "suspended"}),
        ("post", "/api/v1/tenants/acme/topup/", {"usd": "5", "start_prepaid": True}),
    ]


@pytest.mark.parametrize("visitor", API_VISITORS)
def test_only_operators_reach_the_tenant_endpoints(api_client, roles, visitor):
    client = api_client(visitor)
    for method, path, body in calls():
        before = db_snapshot()
        kwargs = {} if body is None else {"data": body, "content_type": JSON}
        response = getattr(client, method)(path, **kwargs)
        if visitor == "operator":
            assert response.status_code in (200, 201), (method, path, response.content)
            continue
        assert response.status_code == NOT_OPERATOR[visitor], (method, path, response.status_code)
        assert set(response.json()["error"]) == {"code", "message", "field"}
        assert "Globex" not in response.content.decode()
        after = db_snapshot()
        # A token's use may note its last use; nothing else changes.
        after.pop("accounts.PersonalAccessToken", None), before.pop("accounts.PersonalAccessToken", None)
        assert after == before


def test_a_staff_operator_in_the_group_has_a_token_that_works(roles):
    from tests.support.operators import make_operators

    staff = make_operators()
    assert client_with(token_for(staff.operator)).get("/api/v1/tenants/").status_code == 200
    assert client_with(token_for(staff.staff)).get("/api/v1/tenants/").status_code == 404


def test_the_list_filters_and_shows_this_months_spend(api_client, roles):
    from django.utils import timezone

    hour = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    UsageHourlyTenant.objects.create(tenant_id=roles.tenant.pk, hour=hour, requests=4, cost=Decimal("3.5"))
    Tenant.objects.filter(slug="globex").update(status="suspended")
    client = api_client("operator")
    body = client.get("/api/v1/tenants/").json()
    by_slug = {t["slug"]: t for t in body["results"]}
    assert by_slug["acme"]["this_month"] == {"spend": "3.500000000", "requests": 4}
    assert by_slug["globex"]["this_month"] == {"spend": "0.000000000", "requests": 0}
    assert [t["slug"] for t in client.get("/api/v1/tenants/?status=suspended").json()["results"]] == [
        "globex"
    ]
    assert [t["slug"] for t in client.get("/api/v1/tenants/?q=ACM").json()["results"]] == ["acme"]
    assert len(client.get("/api/v1/tenants/?plan=pro").json()["results"]) == 2
    bad = client.get("/api/v1/tenants/?plan=nope")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "plan"
    bad = client.get("/api/v1/tenants/?status=gone")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "status"


def test_the_list_pages_by_cursor(api_client, roles):
    from accounts.services import tenant_create

    for i in range(5):
        tenant_create(name=f"T{i}", slug=f"t{i}")
    client = api_client("operator")
    first = client.get("/api/v1/tenants/?limit=3").json()
    assert len(first["results"]) == 3 and first["next"]
    second = client.get(first["next"]).json()
    slugs = [t["slug"] for t in first["results"] + second["results"]]
    third = client.get(second["next"]).json() if second["next"] else {"results": []}
    slugs += [t["slug"] for t in third["results"]]
    assert sorted(slugs) == sorted(Tenant.objects.values_list("slug", flat=True)) and len(set(slugs)) == 7
    bad = client.get("/api/v1/tenants/?cursor=garbage")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "cursor"


def test_create_with_an_invited_owner_is_audited_with_the_tokens_user(api_client, roles):
    response = api_client("operator").post(
        "/api/v1/tenants/",
        {
            "name": "Initech",
            "slug": "initech",
            "plan": "pro",
            "timezone": "Europe/Paris",
            "owner_email": "p@initech.test",
        },
        content_type=JSON,
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["owner"] == {"email": "p@initech.test", "invited": True}
    assert body["tenant"]["plan"] == "pro" and body["tenant"]["timezone"] == "Europe/Paris"
    assert body["tenant"]["balance"] == "0.000000000"
    tenant = Tenant.objects.get(slug="initech")
    assert Invitation.objects.get(tenant=tenant).role == "owner" and len(mail.outbox) == 1
    entry = AuditEntry.objects.get(tenant=tenant, action="tenant.create")
    assert entry.actor_user == operator_user() and entry.actor.startswith("api:operator@ops.test (token thp_")


def test_create_with_an_existing_account(api_client, roles):
    response = api_client("operator").post(
        "/api/v1/tenants/",
        {"name": "Initech", "slug": "initech", "owner_email": "viewer@acme.test"},
        content_type=JSON,
    )
    assert response.status_code == 201
    assert response.json()["owner"] == {"email": "viewer@acme.test", "invited": False}
    assert Membership.objects.get(tenant__slug="initech").user == roles.viewer


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "acme"}, "slug"),
        ({"slug": "no spaces"}, "slug"),
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"plan": "nope"}, "plan"),
        ({"owner_email": "nobody"}, "owner_email"),
        ({"name": ""}, "name"),
        ({"name": "a\x00b"}, "name"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(api_client, roles, body, field):
    client = api_client("operator")
    before = db_snapshot()
    data = {"name": "Initech", "slug": "initech", "owner_email": "p@initech.test", **body}
    response = client.post("/api/v1/tenants/", data, content_type=JSON)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
    after = db_snapshot()
    after.pop("accounts.PersonalAccessToken"), before.pop("accounts.PersonalAccessToken")
    assert after == before and mail.outbox == []


def test_update_changes_only_what_is_sent_and_suspends(api_client, roles):
    Plan.objects.create(name="starter")
    client = api_client("operator")
    response = client.patch(
        "/api/v1/tenants/acme/",
        {"plan": "starter", "rpm_limit": 30, "body_logging": True, "status": "suspended"},
        content_type=JSON,
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["plan"], body["rpm_limit"], body["body_logging"], body["status"]) == (
        "starter",
        30,
        True,
        "suspended",
    )
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.timezone == "UTC" and tenant.tpm_limit is None and tenant.status == "suspended"
    actions = list(
        AuditEntry.objects.filter(tenant=tenant, actor_user=operator_user()).values_list("action", flat=True)
    )
    assert sorted(actions) == ["tenant.change", "tenant.suspend"]
    assert (
        client.patch("/api/v1/tenants/acme/", {"status": "active"}, content_type=JSON).json()["status"]
        == "active"
    )
    assert client.patch("/api/v1/tenants/acme/", {"plan": None}, content_type=JSON).json()["plan"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rpm_limit": 0}, "rpm_limit"),
        ({"tpm_limit": "many"}, "tpm_limit"),
        ({"status": "deleted"}, "status"),
        ({"timezone": "Nowhere"}, "timezone"),
        ({"plan": "nope"}, "plan"),
    ],
)
def test_a_bad_update_is_a_400_and_changes_nothing(api_client, roles, body, field):
    client = api_client("operator")
    before = db_snapshot()
    response = client.patch("/api/v1/tenants/acme/", body, content_type=JSON)
    assert response.status_code == 400 and response.json()["error"]["field"] == field
    after = db_snapshot()
    after.pop("accounts.PersonalAccessToken"), before.pop("accounts.PersonalAccessToken")
    assert after == before


def test_an_unknown_tenant_is_a_404(api_client, roles):
    client = api_client("operator")
    assert client.get("/api/v1/tenants/nope/").status_code == 404
    assert client.post("/api/v1/tenants/nope/topup/", {"usd": "1"}, content_type=JSON).status_code == 404


def test_topup(api_client, roles):
    client = api_client("operator")
    refused = client.post("/api/v1/tenants/acme/topup/", {"usd": "5"}, content_type=JSON)
    assert refused.status_code == 400 and "not on prepaid credits" in refused.json()["error"]["message"]
    response = client.post(
        "/api/v1/tenants/acme/topup/",
        {"usd": "7.125", "note": "po 9", "start_prepaid": True},
        content_type=JSON,
    )
    assert response.status_code == 201, response.content
    assert response.json()["balance"] == "7.125000000" and response.json()["kind"] == "topup"
    assert credit_balance(roles.tenant) == Decimal("7.125") and Tenant.objects.get(slug="acme").prepaid
    assert AuditEntry.objects.filter(action="credit.add", actor_user=operator_user()).exists()
    for usd in ("0", "-1", "1e400", "abc", "0.0000000001", "NaN"):
        bad = client.post("/api/v1/tenants/acme/topup/", {"usd": usd}, content_type=JSON)
        assert bad.status_code == 400, (usd, bad.content)
    assert credit_balance(roles.tenant) == Decimal("7.125")

"""/api/v1/tenants/<slug>/keys/: list, issue, retrieve, rotate, revoke, per way in (each role,
another tenant's owner, an operator, anonymous, expired and revoked tokens); the secret is in the
issuing answer only; bad input is a 400 naming the field and stores nothing; every change is
audited with the token's user."""

from __future__ import annotations

import pytest

from accounts.models import ApiKey, AuditEntry
from accounts.services import api_key_issue
from billing.models import Budget
from tests.support.api import API_VISITORS

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/tenants/acme/keys/"
ANSWERS = {"outsider": 404, "operator": 404, "anonymous": 401, "expired": 401, "revoked": 401}
MANAGERS = {"owner", "admin"}


def expected(visitor, *, managers_only):
    if visitor in ANSWERS:
        return ANSWERS[visitor]
    return 403 if managers_only and visitor not in MANAGERS else None


@pytest.mark.parametrize("visitor", API_VISITORS)
def test_it_checks_who_lists_keys(api_client, roles, visitor):
    api_key_issue(tenant=roles.tenant, name="acme-app")
    api_key_issue(tenant=roles.other, name="globex-app")
    response = api_client(visitor).get(KEYS)
    assert response.status_code == (expected(visitor, managers_only=False) or 200)
    body = response.json()
    if response.status_code == 200:
        assert [key["name"] for key in body["results"]] == ["acme-app"]
        assert body["results"][0]["usage"]["spend"] == "0.000000000"
        assert "digest" not in body["results"][0]
    else:
        assert set(body["error"]) == {"code", "message", "field"}
        assert "globex-app" not in response.content.decode()


@pytest.mark.parametrize("visitor", API_VISITORS)
def test_it_checks_who_issues_keys(api_client, roles, visitor):
    response = api_client(visitor).post(KEYS, {"name": "ci"}, content_type="application/json")
    status = expected(visitor, managers_only=True)
    assert response.status_code == (status or 201)
    if status is None:
        body = response.json()
        assert body["secret"].startswith("th-" + body["key"]["prefix"])
        assert response["Cache-Control"] == "no-store"
        entry = AuditEntry.objects.get(action="key.issue")
        assert entry.actor_user == roles.user(visitor)
        assert entry.actor.startswith(f"api:{roles.user(visitor).email} (token thp_")
        assert body["secret"] not in str(entry.after)
    else:
        assert not ApiKey.objects.filter(name="ci").exists()


def test_it_issues_a_key_with_limits_and_a_budget(api_client, roles):
    response = api_client("admin").post(
        KEYS,
        {
            "name": "batch",
            "allowed_ips": ["10.0.0.0/8", "203.0.113.7"],
            "rpm_limit": 5,
            "budget": "12.5",
            "budget_period": "week",
            "budget_hard": False,
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    key = ApiKey.objects.get(name="batch")
    assert key.allowed_ips == ["10.0.0.0/8", "203.0.113.7/32"] and key.rpm_limit == 5
    budget = Budget.objects.get(api_key=key)
    assert (str(budget.amount), budget.period, budget.hard) == ("12.500000000", "week", False)


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "name"),
        ({"name": "x", "rpm_limit": 0}, "rpm_limit"),
        ({"name": "x", "allowed_ips": ["not-an-ip"]}, "allowed_ips"),
        ({"name": "x", "allowed_models": ["no-such-model"]}, "allowed_models"),
        ({"name": "x", "budget": "5"}, "budget_period"),
        ({"name": "x", "budget": "-1", "budget_period": "day"}, "budget"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x\x00"}, "name"),
        ({"name": "x", "cache": True, "cache_ttl": 0}, "cache_ttl"),
        ({"name": "x", "cache": True, "cache_ttl": 10**8}, "cache_ttl"),
        ({"name": "x", "cache": "maybe"}, "cache"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(api_client, body, field):
    response = api_client("owner").post(KEYS, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
    assert not ApiKey.objects.exists()
    assert not AuditEntry.objects.filter(action="key.issue").exists()


def test_it_issues_a_key_with_the_response_cache(api_client, roles):
    response = api_client("owner").post(
        KEYS, {"name": "cached", "cache": True, "cache_ttl": 300}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    assert (response.json()["key"]["cache"], response.json()["key"]["cache_ttl"]) == (True, 300)
    key = ApiKey.objects.get(name="cached")
    assert (key.cache, key.cache_ttl) == (True, 300)
    listed = api_client("viewer").get(KEYS).json()["results"][0]
    assert (listed["cache"], listed["cache_ttl"]) == (True, 300)


def test_a_body_that_is_not_json_is_refused(api_client):
    client = api_client("owner")
    response = client.post(KEYS, "{nope", content_type="application/json")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")
    response = client.post(KEYS, {"name": "x"})  # a form post
    assert (response.status_code, response.json()["error"]["code"]) == (415, "unsupported_media_type")


def test_it_rotates_with_grace_and_revokes(api_client, roles):
    key = api_key_issue(tenant=roles.tenant, name="app").api_key
    client = api_client("owner")
    response = client.post(
        f"{KEYS}{key.pk}/rotate/", {"grace_seconds": 3600}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["key"]["in_grace"] is True and body["key"]["previous_prefix"] == key.prefix
    assert body["secret"].startswith("th-" + body["key"]["prefix"])
    response = client.post(
        f"{KEYS}{key.pk}/rotate/", {"grace_seconds": 31 * 86400}, content_type="application/json"
    )
    assert (response.status_code, response.json()["error"]["field"]) == (400, "grace_seconds")
    response = client.post(f"{KEYS}{key.pk}/revoke/")
    assert (response.status_code, response.json()["status"]) == (200, "revoked")
    assert client.post(f"{KEYS}{key.pk}/revoke/").status_code == 200  # again: no change
    response = client.post(f"{KEYS}{key.pk}/rotate/", {}, content_type="application/json")
    assert response.status_code == 400 and "revoked" in response.json()["error"]["message"]
    actions = list(
        AuditEntry.objects.filter(object_type="accounts.apikey").values_list("action", "actor_user")
    )
    assert sorted(actions) == [
        ("key.issue", None),
        ("key.revoke", roles.owner.pk),
        ("key.rotate", roles.owner.pk),
    ]


def test_another_tenants_key_is_a_404_everywhere(api_client, roles):
    theirs = api_key_issue(tenant=roles.other, name="theirs").api_key
    client = api_client("owner")
    for response in (
        client.get(f"{KEYS}{theirs.pk}/"),
        client.post(f"{KEYS}{theirs.pk}/rotate/", {}, content_type="application/json"),
        client.post(f"{KEYS}{theirs.pk}/revoke/"),
        client.get(f"/api/v1/tenants/globex/keys/{theirs.pk}/"),
        client.get(f"{KEYS}99999999999999999999/"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.status == "active" and theirs.rotated_at is None


def test_the_list_pages_by_cursor(api_client, roles):
    for index in range(5):
        api_key_issue(tenant=roles.tenant, name=f"k{index}")
    client = api_client("viewer")
    body = client.get(KEYS, {"limit": 2}).json()
    names = [key["name"] for key in body["results"]]
    while body["next"]:
        body = client.get(body["next"]).json()
        names += [key["name"] for key in body["results"]]
    assert names == ["k4", "k3", "k2", "k1", "k0"]
    for bad in ({"limit": 0}, {"limit": "x"}, {"limit": 201}, {"cursor": "garbage"}, {"cursor": "cD1ub3Q="}):
        response = client.get(KEYS, bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["field"] in ("limit", "cursor")

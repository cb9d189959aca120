"""The keys page (/t/<slug>/keys/): who may see and do what (the README's permission table), the
secret shown once, and bad input answered inline with nothing written."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import ApiKey, AuditEntry
from accounts.services import api_key_issue
from billing.models import Budget
from tests.support.console import ROLES

pytestmark = pytest.mark.django_db

MANAGERS = ("owner", "admin")
READ_ONLY = ("member", "viewer")


@pytest.fixture(autouse=True)
def routes(db):
    """A key may only be allowed models a route or alias serves (accounts.services.api_key_save)."""
    from gateway.services import route_upsert

    for name in ("gpt-4.1", "claude-sonnet-4.5"):
        route_upsert(name=name)


@pytest.fixture
def key(roles):
    return api_key_issue(tenant=roles.tenant, name="app-backend", rpm_limit=60).api_key


@pytest.fixture
def their_key(roles):
    return api_key_issue(tenant=roles.other, name="globex-secret-app").api_key


def issue(client, **fields):
    data = {"name": "ci", "budget_hard": "on", **fields}
    return client.post("/t/acme/keys/new/", data)


# --- list -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_it_lists_the_tenants_keys_to_every_role(console_client, key, their_key, role):
    response = console_client(role).get("/t/acme/keys/")
    assert response.status_code == 200
    assert b"app-backend" in response.content and f"th-{key.prefix}".encode() in response.content
    assert b"globex-secret-app" not in response.content
    assert (b"Issue a key" in response.content) == (role in MANAGERS)


def test_the_list_shows_spend_requests_and_last_use(console_client, roles, key):
    from datetime import UTC, datetime

    from billing.models import UsageHourly, UsageRecord

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    UsageHourly.objects.create(
        tenant_id=roles.tenant.pk, api_key_id=key.pk, hour=hour, requests=7, cost=Decimal("0.2345")
    )
    UsageRecord.objects.create(
        request_id="r-1",
        tenant=roles.tenant,
        api_key=key,
        created_at=hour.replace(minute=17),
        cost=Decimal("0.1"),
        status=200,
    )
    response = console_client("viewer").get("/t/acme/keys/")
    row = response.context["rows"][0]
    assert (row["usage"].spend, row["usage"].requests) == (Decimal("0.2345"), 7)
    assert row["usage"].last_used == hour.replace(minute=17)
    assert b"$0.2345" in response.content


def test_an_outsider_and_the_anonymous_cannot_list(console_client, key):
    assert console_client("outsider").get("/t/acme/keys/").status_code == 404
    assert console_client("anonymous").get("/t/acme/keys/").status_code == 302


# --- issue ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", MANAGERS)
def test_managers_issue_a_key_with_a_budget_and_see_the_secret_once(console_client, roles, role):
    client = console_client(role)
    response = issue(
        client,
        name="billing-worker",
        allowed_models="gpt-4.1, claude-sonnet-4.5",
        allowed_ips="10.0.0.0/8\n203.0.113.7",
        rpm_limit="30",
        tpm_limit="20000",
        concurrency_limit="4",
        budget="25.50",
        budget_period="month",
    )
    assert response.status_code == 200, response.context["form"].errors if response.context else response
    raw = response.context["raw_key"]
    assert raw.startswith("th-") and raw.encode() in response.content
    assert "no-store" in response["Cache-Control"]
    assert raw not in str(dict(client.session)) and raw not in str(response.cookies)
    key = ApiKey.objects.get(name="billing-worker")
    assert key.tenant == roles.tenant and key.created_by == roles.user(role)
    assert key.allowed_models == ["gpt-4.1", "claude-sonnet-4.5"]
    assert key.allowed_ips == ["10.0.0.0/8", "203.0.113.7/32"]
    assert (key.rpm_limit, key.tpm_limit, key.concurrency_limit) == (30, 20000, 4)
    budget = Budget.objects.get(api_key=key)
    assert (budget.amount, budget.period, budget.hard) == (Decimal("25.5"), "month", True)
    actions = set(
        AuditEntry.objects.filter(tenant=roles.tenant, actor=f"console:{role}@acme.test").values_list(
            "action", flat=True
        )
    )
    assert actions == {"key.issue", "budget.create"}
    # Never again: not on the list, not on the key's page.
    assert raw.encode() not in client.get("/t/acme/keys/").content
    assert raw.encode() not in client.get(f"/t/acme/keys/{key.pk}/").content


def test_a_key_issued_with_the_response_cache_says_so_on_its_page(console_client):
    client = console_client("admin")
    assert "Response cache" in client.get("/t/acme/keys/new/").content.decode()
    response = issue(client, name="cached", cache="on", cache_ttl="120")
    assert response.status_code == 200, response.context["form"].errors
    key = ApiKey.objects.get(name="cached")
    assert (key.cache, key.cache_ttl) == (True, 120)
    assert "on, answers kept 120 s" in client.get(f"/t/acme/keys/{key.pk}/").content.decode()
    audit = AuditEntry.objects.get(action="key.issue", object_id=str(key.pk))
    assert audit.after["cache"] is True and audit.after["cache_ttl"] == 120


def test_a_cache_ttl_past_the_maximum_is_an_inline_error(console_client, settings):
    settings.TOLLHOUSE_CACHE_MAX_TTL_SECONDS = 600
    response = issue(console_client("owner"), name="cached", cache="on", cache_ttl="601")
    assert response.status_code == 400
    assert "At most 600 seconds" in str(response.context["form"].errors["cache_ttl"])
    assert not ApiKey.objects.filter(name="cached").exists()


@pytest.mark.parametrize("role", READ_ONLY)
def test_members_and_viewers_may_not_issue(console_client, role):
    client = console_client(role)
    assert client.get("/t/acme/keys/new/").status_code == 403
    assert issue(client, name="sneaky").status_code == 403
    assert not ApiKey.objects.filter(name="sneaky").exists()


def test_an_outsider_cannot_issue_into_another_tenant(console_client):
    client = console_client("outsider")
    assert client.get("/t/acme/keys/new/").status_code == 404
    assert issue(client, name="sneaky").status_code == 404
    assert not ApiKey.objects.filter(name="sneaky").exists()


def test_the_anonymous_are_sent_to_sign_in(console_client):
    response = issue(console_client("anonymous"), name="sneaky")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not ApiKey.objects.filter(name="sneaky").exists()


def test_issuing_needs_the_csrf_token(roles):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(roles.owner)
    assert issue(client, name="forged").status_code == 403
    assert not ApiKey.objects.filter(name="forged").exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "bad\x00name"}, "name"),
        ({"name": "n" * 5000}, "name"),
        ({"name": "   "}, "name"),
        ({"rpm_limit": "-5"}, "rpm_limit"),
        ({"rpm_limit": "0"}, "rpm_limit"),
        ({"tpm_limit": "lots"}, "tpm_limit"),
        ({"concurrency_limit": "99999999999999"}, "concurrency_limit"),
        ({"rpm_limit": "5000"}, "rpm_limit"),  # the tenant allows 600
        ({"allowed_ips": "10.0.0.0/33"}, "allowed_ips"),
        ({"allowed_ips": "not-an-ip"}, "allowed_ips"),
        ({"allowed_models": "gpt\x00x"}, "allowed_models"),
        ({"allowed_models": "m" * 5000}, "allowed_models"),
        ({"budget": "1.0000000001", "budget_period": "month"}, "budget"),
        ({"budget": "-3", "budget_period": "month"}, "budget"),
        ({"budget": "0", "budget_period": "month"}, "budget"),
        ({"budget": "NaN", "budget_period": "month"}, "budget"),
        ({"budget": "10"}, "budget_period"),
        ({"budget_period": "month"}, "budget"),
        ({"budget": "10", "budget_period": "fortnight"}, "budget_period"),
        ({"expires_at": "2001-01-01T10:00"}, "expires_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_it_answers_bad_input_inline_and_writes_nothing(console_client, roles, fields, field):
    roles.tenant.rpm_limit = 600
    roles.tenant.save()
    before = (ApiKey.objects.count(), Budget.objects.count(), AuditEntry.objects.count())
    response = issue(console_client("owner"), **fields)
    assert response.status_code == 400
    form = response.context["form"]
    assert field in form.errors, form.errors
    assert b'class="error"' in response.content
    assert (ApiKey.objects.count(), Budget.objects.count(), AuditEntry.objects.count()) == before


def test_a_key_looser_than_its_tenant_says_so_next_to_the_field(console_client, roles):
    roles.tenant.tpm_limit = 1000
    roles.tenant.save()
    response = issue(console_client("admin"), tpm_limit="2000", budget="1", budget_period="day")
    assert response.status_code == 400
    assert "looser than its tenant" in response.context["form"].errors["tpm_limit"][0]
    assert not Budget.objects.exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(max_size=300),
    ips=st.text(max_size=80),
    rpm=st.one_of(st.text(max_size=12), st.integers(min_value=-(2**40), max_value=2**40).map(str)),
    budget=st.one_of(st.text(max_size=20), st.decimals(allow_nan=True, allow_infinity=True).map(str)),
)
def test_no_input_makes_a_500_or_a_partial_write(console_client, name, ips, rpm, budget):
    keys, budgets = ApiKey.objects.count(), Budget.objects.count()
    response = issue(
        console_client("owner"),
        name=name,
        allowed_ips=ips,
        rpm_limit=rpm,
        budget=budget,
        budget_period="week",
    )
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert ApiKey.objects.count() == keys + 1
        assert Budget.objects.count() == budgets + (1 if budget.strip() else 0)
    else:
        assert (ApiKey.objects.count(), Budget.objects.count()) == (keys, budgets)


# --- detail, rotate, revoke --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_role_sees_a_keys_page_but_only_managers_its_buttons(console_client, key, role):
    response = console_client(role).get(f"/t/acme/keys/{key.pk}/")
    assert response.status_code == 200
    assert (b"Rotate key" in response.content) == (role in MANAGERS)
    assert (b"Revoke key" in response.content) == (role in MANAGERS)


def test_another_tenants_key_is_404_by_every_way_in(console_client, their_key):
    client = console_client("owner")
    for path in (f"/t/acme/keys/{their_key.pk}/", f"/t/globex/keys/{their_key.pk}/"):
        assert client.get(path).status_code == 404
    for action in ("rotate", "revoke"):
        assert client.post(f"/t/acme/keys/{their_key.pk}/{action}/", {"grace": "0"}).status_code == 404
        assert client.post(f"/t/globex/keys/{their_key.pk}/{action}/", {"grace": "0"}).status_code == 404
    their_key.refresh_from_db()
    assert their_key.status == "active" and their_key.previous_prefix is None


@pytest.mark.parametrize("role", MANAGERS)
def test_managers_rotate_and_see_the_new_secret_once(console_client, roles, key, role):
    old_prefix = key.prefix
    client = console_client(role)
    response = client.post(f"/t/acme/keys/{key.pk}/rotate/", {"grace": "3600"})
    assert response.status_code == 200
    raw = response.context["raw_key"]
    key.refresh_from_db()
    assert raw.startswith(f"th-{key.prefix}") and key.previous_prefix == old_prefix
    assert "no-store" in response["Cache-Control"]
    assert b"keeps working until" in response.content
    entry = AuditEntry.objects.filter(action="key.rotate").get()
    assert (entry.before["prefix"], entry.after["prefix"], entry.after["grace_seconds"]) == (
        old_prefix,
        key.prefix,
        3600,
    )
    assert raw.encode() not in client.get(f"/t/acme/keys/{key.pk}/").content


@pytest.mark.parametrize("role", MANAGERS)
def test_managers_revoke(console_client, key, role):
    response = console_client(role).post(f"/t/acme/keys/{key.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == "/t/acme/keys/"
    key.refresh_from_db()
    assert key.status == "revoked"
    assert AuditEntry.objects.filter(action="key.revoke", object_id=str(key.pk)).count() == 1


@pytest.mark.parametrize("role", [*READ_ONLY, "outsider", "anonymous"])
@pytest.mark.parametrize("action", ["rotate", "revoke"])
def test_others_may_not_rotate_or_revoke(console_client, key, role, action):
    response = console_client(role).post(f"/t/acme/keys/{key.pk}/{action}/", {"grace": "0"})
    expected = {"member": 403, "viewer": 403, "outsider": 404, "anonymous": 302}[role]
    assert response.status_code == expected
    key.refresh_from_db()
    assert key.status == "active" and key.previous_prefix is None


def test_a_revoked_key_cannot_be_rotated(console_client, key):
    client = console_client("owner")
    client.post(f"/t/acme/keys/{key.pk}/revoke/")
    response = client.post(f"/t/acme/keys/{key.pk}/rotate/", {"grace": "0"})
    assert response.status_code == 400
    key.refresh_from_db()
    assert key.previous_prefix is None


def test_a_grace_period_outside_the_choices_is_refused(console_client, key):
    response = console_client("owner").post(f"/t/acme/keys/{key.pk}/rotate/", {"grace": "99999999"})
    assert response.status_code == 400
    key.refresh_from_db()
    assert key.previous_prefix is None


def test_rotate_and_revoke_want_post(console_client, key):
    client = console_client("owner")
    assert client.get(f"/t/acme/keys/{key.pk}/rotate/").status_code == 405
    assert client.get(f"/t/acme/keys/{key.pk}/revoke/").status_code == 405


def test_an_empty_post_is_answered_with_the_form_and_its_errors(console_client):
    response = console_client("owner").post("/t/acme/keys/new/", {})
    assert response.status_code == 400
    assert "name" in response.context["form"].errors
    assert not ApiKey.objects.exists()

"""The admin forms run the services' limit checks next to their fields: a limit of 0 and a key looser
than its tenant are refused on the form (never a 500), and lowering a tenant or plan below its keys
is saved with a warning that names them."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages

from accounts.models import ApiKey, Plan, Tenant
from accounts.services import api_key_issue, tenant_create, tenant_save

pytestmark = pytest.mark.django_db

ZERO = "Enter 1 or more, or leave it empty for no limit"


@pytest.fixture
def operator_client(client):
    # No password: force_login needs none, and hashing one costs a second per test.
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.com", None))
    return client


def plan_form(**overrides):
    data = {"name": "Team", "allowed_models": "[]", "rpm_limit": "", "tpm_limit": "", "concurrency_limit": ""}
    return {**data, "monthly_budget": "", **overrides}


def tenant_form(tenant=None, **overrides):
    data = {
        "name": tenant.name if tenant else "Globex",
        "slug": tenant.slug if tenant else "globex",
        "plan": tenant.plan_id or "" if tenant else "",
        "status": "active",
        "timezone": "UTC",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    return {**data, **overrides}


def key_form(tenant, **overrides):
    data = {
        "tenant": tenant.pk,
        "name": "ci",
        "status": "active",
        "expires_at_0": "",
        "expires_at_1": "",
        "allowed_models": "[]",
        "allowed_ips": "[]",
        "rpm_limit": "",
        "tpm_limit": "",
        "concurrency_limit": "",
    }
    return {**data, **overrides}


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("rpm_limit", "0", ZERO),
        ("concurrency_limit", "0", ZERO),
        ("monthly_budget", "0", "Enter more than 0, or leave it empty for no budget"),
    ],
)
def test_a_plan_with_a_zero_limit_is_refused_on_the_form(operator_client, field, value, error):
    response = operator_client.post("/admin/accounts/plan/add/", plan_form(**{field: value}))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Plan.objects.filter(name="Team").exists()


@pytest.mark.parametrize("field", ["tpm_limit", "end_user_rpm_limit", "end_user_concurrency_limit"])
def test_a_tenant_with_a_zero_limit_is_refused_on_the_form(operator_client, field):
    response = operator_client.post("/admin/accounts/tenant/add/", tenant_form(**{field: "0"}))
    assert response.status_code == 200
    assert ZERO in response.content.decode()
    assert not Tenant.objects.exists()


def test_the_tenant_form_saves_the_new_fields(operator_client):
    response = operator_client.post(
        "/admin/accounts/tenant/add/",
        tenant_form(prepaid="on", rpm_limit="30", end_user_rpm_limit="5", end_user_tpm_limit="1000"),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant = Tenant.objects.get()
    assert (tenant.prepaid, tenant.rpm_limit, tenant.end_user_rpm_limit, tenant.end_user_tpm_limit) == (
        True,
        30,
        5,
        1000,
    )


def test_a_key_looser_than_its_tenant_is_refused_on_the_form(operator_client):
    tenant = tenant_create(name="Acme", slug="acme", plan=Plan.objects.get(name="free"))  # rpm 20
    response = operator_client.post("/admin/accounts/apikey/add/", key_form(tenant, rpm_limit="21"))
    assert response.status_code == 200
    assert (
        "A key&#x27;s rpm limit cannot be looser than its tenant&#x27;s (21 &gt; 20)."
        in response.content.decode()
    )
    assert not ApiKey.objects.exists()


def test_a_key_with_a_zero_limit_is_refused_on_the_form(operator_client):
    tenant = tenant_create(name="Acme", slug="acme")
    response = operator_client.post("/admin/accounts/apikey/add/", key_form(tenant, tpm_limit="0"))
    assert response.status_code == 200
    assert ZERO in response.content.decode()
    assert not ApiKey.objects.exists()


def test_lowering_a_tenant_below_its_keys_saves_and_warns(operator_client):
    tenant = tenant_create(name="Acme", slug="acme")
    tenant.rpm_limit = 100
    tenant_save(tenant=tenant)
    key = api_key_issue(tenant=tenant, name="batch", rpm_limit=60).api_key
    response = operator_client.post(
        f"/admin/accounts/tenant/{tenant.pk}/change/", tenant_form(tenant, rpm_limit="10")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Tenant.objects.get().rpm_limit == 10
    warnings = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert warnings == [
        "1 active key(s) now have limits above their tenant's, and the gateway holds them to the "
        f"tenant's (saving one asks for limits within the tenant's): batch (th-{key.prefix}…)."
    ]
    # And the key's own form says why it cannot be saved as it is.
    response = operator_client.post(
        f"/admin/accounts/apikey/{key.pk}/change/", key_form(tenant, name="batch", rpm_limit="60")
    )
    assert response.status_code == 200
    assert (
        "A key&#x27;s rpm limit cannot be looser than its tenant&#x27;s (60 &gt; 10)."
        in response.content.decode()
    )


def test_lowering_a_plan_below_keys_saves_and_warns(operator_client):
    plan = Plan.objects.create(name="Team", concurrency_limit=10)
    tenant = tenant_create(name="Acme", slug="acme", plan=plan)
    api_key_issue(tenant=tenant, name="worker", concurrency_limit=8)
    response = operator_client.post(
        f"/admin/accounts/plan/{plan.pk}/change/", plan_form(concurrency_limit="4"), follow=True
    )
    assert response.status_code == 200
    assert Plan.objects.get(pk=plan.pk).concurrency_limit == 4
    assert "now have limits above their tenant&#x27;s" in response.content.decode()
    assert "worker (th-" in response.content.decode()


def test_no_warning_when_the_keys_are_within_the_tenant(operator_client):
    tenant = tenant_create(name="Acme", slug="acme")
    api_key_issue(tenant=tenant, name="ci", rpm_limit=5)
    response = operator_client.post(
        f"/admin/accounts/tenant/{tenant.pk}/change/", tenant_form(tenant, rpm_limit="10")
    )
    assert response.status_code == 302
    assert not [m for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]

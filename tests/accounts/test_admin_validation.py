"""The admin writes through the services: a value the gateway could not read is refused next to its
field, and nothing is stored (before, the admin saved the row as typed)."""

import pytest
from django.contrib.auth import get_user_model

from accounts.models import ApiKey, Membership, Plan, Tenant
from accounts.services import api_key_issue, tenant_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1"))
    return client


@pytest.fixture
def api_key():
    tenant = tenant_create(name="Acme", slug="acme")
    return api_key_issue(tenant=tenant, name="ci", allowed_ips=["10.0.0.0/8"], rpm_limit=10).api_key


def key_form(api_key, **overrides):
    data = {
        "tenant": api_key.tenant_id,
        "name": api_key.name,
        "status": "active",
        "expires_at_0": "",
        "expires_at_1": "",
        "allowed_models": "[]",
        "allowed_ips": '["10.0.0.0/8"]',
        "rpm_limit": "10",
        "tpm_limit": "",
        "concurrency_limit": "",
    }
    return {**data, **overrides}


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        (
            "allowed_ips",
            '["10.0.0.0/8", "10.0.0.300"]',
            "Not an IP address or CIDR range: &#x27;10.0.0.300&#x27;",
        ),
        ("allowed_ips", '"10.0.0.0/8"', "Enter a list of IP addresses or CIDR ranges"),
        ("allowed_ips", "[1, 2]", "Enter a list of IP addresses or CIDR ranges"),
        ("allowed_models", '["gpt-4.1", ""]', "Model names cannot be empty."),
        ("allowed_models", '{"gpt-4.1": true}', "Enter a list of model names"),
        ("allowed_models", '["gpt\\u0000"]', "is not a model name"),
        ("rpm_limit", "-1", "Ensure this value is greater than or equal to 0."),
        ("rpm_limit", "ten", "Enter a whole number."),
    ],
)
def test_it_refuses_a_key_the_gateway_could_not_read(operator_client, api_key, field, value, error):
    response = operator_client.post(
        f"/admin/accounts/apikey/{api_key.pk}/change/", key_form(api_key, **{field: value})
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    stored = ApiKey.objects.get()
    assert stored.allowed_ips == ["10.0.0.0/8"] and stored.allowed_models == []
    assert stored.rpm_limit == 10


def test_it_saves_a_good_key_normalised(operator_client, api_key):
    response = operator_client.post(
        f"/admin/accounts/apikey/{api_key.pk}/change/",
        key_form(api_key, allowed_ips='[" 192.168.1.0/24 ", "::1"]', allowed_models=""),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = ApiKey.objects.get()
    assert stored.allowed_ips == ["192.168.1.0/24", "::1/128"]
    assert stored.allowed_models == []  # an emptied box means "the plan's models", not NULL


def test_it_refuses_a_bad_plan(operator_client):
    response = operator_client.post(
        "/admin/accounts/plan/add/",
        {"name": "Team", "allowed_models": '["gpt-4.1", 7]', "monthly_budget": "-5"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "Enter a list of model names" in body and "Must be zero or more." in body
    assert not Plan.objects.filter(name="Team").exists()


def tenant_form(**overrides):
    data = {
        "name": "Globex",
        "slug": "globex",
        "plan": "",
        "status": "active",
        "timezone": "Europe/Paris",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    return {**data, **overrides}


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("timezone", "Mars/Olympus", "is not an IANA time zone name"),
        ("timezone", "", "This field is required."),
        ("slug", "no spaces", "Enter a valid “slug”"),
    ],
)
def test_it_refuses_a_bad_tenant(operator_client, field, value, error):
    response = operator_client.post("/admin/accounts/tenant/add/", tenant_form(**{field: value}))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Tenant.objects.exists()


def test_it_saves_a_tenant_and_its_members_through_the_services(operator_client):
    user = get_user_model().objects.create_user("bob", "bob@globex.test", "pw-bob-1234")
    response = operator_client.post(
        "/admin/accounts/tenant/add/",
        tenant_form(
            **{
                "memberships-TOTAL_FORMS": "1",
                "memberships-0-user": str(user.pk),
                "memberships-0-role": "admin",
            }
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant = Tenant.objects.get()
    assert tenant.timezone == "Europe/Paris"
    assert Membership.objects.get().role == "admin"

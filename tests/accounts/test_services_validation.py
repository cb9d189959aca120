"""Services validate the whole row (full_clean) whoever calls them, and store nothing when refused."""


import pytest
from django.core.exceptions import ValidationError

from accounts.models import ApiKey, Plan, Tenant
from accounts.services import api_key_issue, api_key_save, plan_save, tenant_create, tenant_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant():
    return tenant_create(name="Acme", slug="acme")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"slug": "has space"}, "slug"),
        ({"slug": ""}, "slug"),
        ({"name": ""}, "name"),
        ({"timezone_name": "Not/AZone"}, "timezone"),
        ({"timezone_name": "../../etc/passwd"}, "timezone"),
    ],
)
def test_tenant_create_refuses_bad_input(kwargs, field):
    with pytest.raises(ValidationError) as caught:
        tenant_create(**{"name": "Globex", "slug": "globex", **kwargs})
    assert field in caught.value.message_dict
    assert not Tenant.objects.exists()


def test_tenant_create_refuses_a_slug_taken(tenant):
    with pytest.raises(ValidationError) as caught:
        tenant_create(name="Other", slug="acme")
    assert "slug" in caught.value.message_dict
    assert Tenant.objects.count() == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"allowed_ips": ["10.0.0.0/8", "garbage"]}, "allowed_ips"),
        ({"allowed_ips": "10.0.0.0/8"}, "allowed_ips"),
        ({"allowed_models": ["gpt-4.1", " "]}, "allowed_models"),
        ({"allowed_models": ["x" * 201]}, "allowed_models"),
        ({"rpm_limit": -1}, "rpm_limit"),
        ({"name": ""}, "name"),
    ],
)
def test_api_key_issue_refuses_bad_input(tenant, kwargs, field):
    with pytest.raises(ValidationError) as caught:
        api_key_issue(**{"tenant": tenant, "name": "ci", **kwargs})
    assert field in caught.value.message_dict
    assert not ApiKey.objects.exists()


def test_api_key_save_refuses_what_the_gateway_could_not_read(tenant):
    api_key = api_key_issue(tenant=tenant, name="ci").api_key
    api_key.allowed_ips = ["10.0.0.0/33"]
    with pytest.raises(ValidationError):
        api_key_save(api_key=api_key)
    assert ApiKey.objects.get().allowed_ips == []


def test_plan_and_tenant_saves_validate(tenant):
    with pytest.raises(ValidationError):
        plan_save(plan=Plan(name="Team", allowed_models="gpt-4.1"))
    assert not Plan.objects.filter(name="Team").exists()
    tenant.timezone = "Europe/Nowhere"
    with pytest.raises(ValidationError):
        tenant_save(tenant=tenant)
    assert Tenant.objects.get().timezone == "UTC"

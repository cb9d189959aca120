"""Services validate the whole row (full_clean) whoever calls them, and store nothing when refused."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from accounts.models import ApiKey, Plan, Tenant
from accounts.services import (
    api_key_issue,
    api_key_revoke,
    api_key_save,
    api_keys_looser_than_tenant,
    looser_keys_sentence,
    plan_save,
    tenant_create,
    tenant_save,
)

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


# --- limits (issue 6): empty or at least 1; a key never looser than its tenant ---------------------------
#
# Decision: a limit of 0 is refused, not read as "blocked" (the gateway would answer every call with
# a rate-limit error no waiting clears). Suspending the tenant or revoking the key stops calls.

ZERO = "Enter 1 or more, or leave it empty for no limit"


@pytest.mark.parametrize("field", ["rpm_limit", "tpm_limit", "concurrency_limit"])
def test_plan_save_refuses_a_zero_limit(field):
    with pytest.raises(ValidationError) as caught:
        plan_save(plan=Plan(name="Team", **{field: 0}))
    assert ZERO in caught.value.message_dict[field][0]
    assert not Plan.objects.filter(name="Team").exists()


def test_plan_save_refuses_a_zero_monthly_budget_and_takes_a_small_one():
    with pytest.raises(ValidationError) as caught:
        plan_save(plan=Plan(name="Team", monthly_budget=Decimal(0)))
    assert (
        "Enter more than 0, or leave it empty for no budget" in caught.value.message_dict["monthly_budget"][0]
    )
    with pytest.raises(ValidationError) as caught:
        plan_save(plan=Plan(name="Team", monthly_budget=Decimal(-1)))
    assert caught.value.message_dict["monthly_budget"] == ["Must be zero or more."]
    plan_save(plan=Plan(name="Team", monthly_budget=Decimal("0.5"), rpm_limit=1))
    assert Plan.objects.get(name="Team").monthly_budget == Decimal("0.5")


def test_plan_save_reports_every_bad_field_at_once():
    with pytest.raises(ValidationError) as caught:
        plan_save(plan=Plan(name="Team", rpm_limit=0, tpm_limit=-1, allowed_models="gpt-4.1"))
    assert set(caught.value.message_dict) == {"rpm_limit", "tpm_limit", "allowed_models"}


@pytest.mark.parametrize(
    "field",
    [
        "rpm_limit",
        "tpm_limit",
        "concurrency_limit",
        "end_user_rpm_limit",
        "end_user_tpm_limit",
        "end_user_concurrency_limit",
    ],
)
def test_tenant_save_refuses_a_zero_limit(tenant, field):
    setattr(tenant, field, 0)
    with pytest.raises(ValidationError) as caught:
        tenant_save(tenant=tenant)
    assert ZERO in caught.value.message_dict[field][0]
    tenant.refresh_from_db()
    assert getattr(tenant, field) is None
    setattr(tenant, field, 1)
    tenant_save(tenant=tenant)
    assert getattr(Tenant.objects.get(), field) == 1


@pytest.mark.parametrize("field", ["rpm_limit", "tpm_limit", "concurrency_limit"])
def test_api_key_issue_refuses_a_zero_limit(tenant, field):
    with pytest.raises(ValidationError) as caught:
        api_key_issue(tenant=tenant, name="ci", **{field: 0})
    assert ZERO in caught.value.message_dict[field][0]
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    ("tenant_fields", "key_fields", "error"),
    [
        ({"rpm_limit": 10}, {"rpm_limit": 11}, "A key's rpm limit cannot be looser than its tenant's (11 > 10)."),
        ({"tpm_limit": 500}, {"tpm_limit": 501}, "A key's tpm limit cannot be looser than its tenant's (501 > 500)."),
        ({"concurrency_limit": 1}, {"concurrency_limit": 2}, "A key's concurrency limit cannot be looser"),
    ],
)  # fmt: skip
def test_api_key_issue_refuses_a_key_looser_than_its_tenant(tenant, tenant_fields, key_fields, error):
    for name, value in tenant_fields.items():
        setattr(tenant, name, value)
    tenant_save(tenant=tenant)
    with pytest.raises(ValidationError) as caught:
        api_key_issue(tenant=tenant, name="ci", **key_fields)
    (field,) = key_fields
    assert caught.value.message_dict[field][0].startswith(error)
    assert not ApiKey.objects.exists()
    # As tight as the tenant (or tighter) is fine.
    api_key_issue(tenant=tenant, name="ci", **tenant_fields)
    assert ApiKey.objects.count() == 1


def test_a_key_is_held_to_its_tenants_plan_when_the_tenant_has_no_override(tenant):
    tenant.plan = Plan.objects.get(name="free")  # rpm 20
    tenant_save(tenant=tenant)
    with pytest.raises(ValidationError) as caught:
        api_key_issue(tenant=tenant, name="ci", rpm_limit=21)
    assert caught.value.message_dict["rpm_limit"] == [
        "A key's rpm limit cannot be looser than its tenant's (21 > 20)."
    ]
    tenant.rpm_limit = 50  # the tenant's override wins over its plan's
    tenant_save(tenant=tenant)
    assert api_key_issue(tenant=tenant, name="ci", rpm_limit=50).api_key.rpm_limit == 50


def test_lowering_a_tenant_below_its_keys_is_allowed_and_the_gateway_narrows_them(tenant):
    from gateway.auth import _read_key

    tenant.rpm_limit = 100
    tenant_save(tenant=tenant)
    loose = api_key_issue(tenant=tenant, name="loose", rpm_limit=80).api_key
    tight = api_key_issue(tenant=tenant, name="tight", rpm_limit=5).api_key
    assert looser_keys_sentence(tenant=tenant) is None

    tenant.rpm_limit = 10
    tenant_save(tenant=tenant)  # not refused

    assert Tenant.objects.get().rpm_limit == 10
    assert list(api_keys_looser_than_tenant(tenant=tenant)) == [loose]
    assert looser_keys_sentence(tenant=tenant) == (
        "1 active key(s) now have limits above their tenant's, and the gateway holds them to the "
        f"tenant's (saving one asks for limits within the tenant's): loose (th-{loose.prefix}…)."
    )
    assert _read_key(loose.prefix).key_limits.rpm == 10
    assert _read_key(tight.prefix).key_limits.rpm == 5
    # Saving the loose key as it is now asks for a limit within the tenant's.
    loose.name = "renamed"
    with pytest.raises(ValidationError) as caught:
        api_key_save(api_key=loose)
    assert caught.value.message_dict["rpm_limit"] == [
        "A key's rpm limit cannot be looser than its tenant's (80 > 10)."
    ]
    assert ApiKey.objects.get(pk=loose.pk).name == "loose"


def test_looser_keys_are_found_through_a_plan_and_revoked_keys_are_left_out(tenant):
    plan = Plan.objects.create(name="Team", tpm_limit=1000)
    tenant.plan = plan
    tenant_save(tenant=tenant)
    keys_ = [api_key_issue(tenant=tenant, name=f"k{i}", tpm_limit=900).api_key for i in range(7)]
    api_key_revoke(api_key=keys_[0])
    plan.tpm_limit = 100
    plan_save(plan=plan)
    assert list(api_keys_looser_than_tenant(plan=plan)) == keys_[1:]
    sentence = looser_keys_sentence(plan=plan)
    assert sentence is not None and sentence.startswith("6 active key(s) now have limits above")
    assert sentence.endswith(f"k5 (th-{keys_[5].prefix}…) and 1 more.")
    # (Not "k0" alone: a random key prefix may contain it.)
    assert f"k0 (th-{keys_[0].prefix}" not in sentence and "\n" not in sentence

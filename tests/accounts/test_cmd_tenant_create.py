"""`manage.py tenant_create SLUG [--name] [--plan] [--timezone] [--credits]`."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from accounts.models import Plan, Tenant
from billing.credits import credit_balance
from billing.models import CreditEntry
from tests.support.manage import call, one_sentence_error, run
from tests.support.snapshot import db_snapshot


@pytest.mark.django_db
def test_it_creates_a_tenant_and_prints_its_slug_and_id():
    plan = Plan.objects.get(name="pro")
    output = call(
        "tenant_create", "acme", "--name", "Acme Inc.", "--plan", "pro", "--timezone", "Europe/Paris"
    )
    tenant = Tenant.objects.get()
    assert (tenant.slug, tenant.name, tenant.plan, tenant.timezone) == (
        "acme",
        "Acme Inc.",
        plan,
        "Europe/Paris",
    )
    assert output.stdout.strip() == f"Created tenant acme (id {tenant.pk})."


@pytest.mark.django_db
def test_it_defaults_the_name_to_the_slug_and_the_time_zone_to_utc():
    call("tenant_create", "globex")
    tenant = Tenant.objects.get()
    assert (tenant.name, tenant.plan, tenant.timezone) == ("globex", None, "UTC")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["a b"], "'a b' is not a valid slug"),
        (["acme/../x"], "is not a valid slug"),
        (["x" * 101], "longer than 100 characters"),
        (["newco", "--plan", "gold"], "There is no plan named 'gold' (plans: enterprise, free, pro)."),
        (["newco", "--timezone", "Mars/Olympus"], "'Mars/Olympus' is not a known time zone"),
        (["newco", "--timezone", "../../etc/passwd"], "is not a known time zone"),
        (["newco", "--name", "  "], "--name must not be empty."),
        (["acme"], "A tenant with the slug 'acme' already exists."),
    ],
)
def test_it_refuses_bad_arguments_and_changes_nothing(args, sentence):
    Plan.objects.get(name="pro")
    call("tenant_create", "acme")
    with pytest.raises(CommandError) as failure:
        call("tenant_create", *args)
    assert sentence in str(failure.value)
    assert "\n" not in str(failure.value)
    assert list(Tenant.objects.values_list("slug", flat=True)) == ["acme"]


def test_it_exits_1_with_one_sentence_on_stderr(transactional_db):
    Tenant.objects.create(name="Acme", slug="acme")
    result = run("tenant_create", "acme")
    assert one_sentence_error(result) == "A tenant with the slug 'acme' already exists."
    assert Tenant.objects.count() == 1
    result = run("tenant_create", "newco", "--timezone", "Nowhere/Special")
    assert "is not a known time zone" in one_sentence_error(result)
    assert Tenant.objects.count() == 1


def test_it_works_from_the_command_line(transactional_db):
    result = run("tenant_create", "acme", "--name", "Acme")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Created tenant acme (id {Tenant.objects.get(slug='acme').pk})."


# --- prepaid credits (issue 6) ------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_puts_the_tenant_on_prepaid_credits_with_an_opening_top_up():
    output = call("tenant_create", "acme", "--plan", "pro", "--credits", "25.5")
    tenant = Tenant.objects.get()
    assert tenant.prepaid is True
    entry = CreditEntry.objects.get()
    assert (entry.tenant, entry.kind, entry.amount, entry.note) == (
        tenant,
        "topup",
        Decimal("25.5"),
        "initial credits",
    )
    assert credit_balance(tenant) == Decimal("25.5")
    assert output.stdout.strip().splitlines() == [
        f"Created tenant acme (id {tenant.pk}).",
        "On prepaid credits, balance 25.50 USD.",
    ]


@pytest.mark.django_db
def test_without_credits_the_tenant_is_not_prepaid():
    call("tenant_create", "acme")
    assert Tenant.objects.get().prepaid is False
    assert not CreditEntry.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("credits", "sentence"),
    [
        ("-5", "--credits must be a number greater than 0 and at most 1000000000, not '-5'."),
        ("0", "--credits must be a number greater than 0"),
        ("five", "--credits must be a number greater than 0"),
        ("NaN", "--credits must be a number greater than 0"),
        ("Infinity", "--credits must be a number greater than 0"),
        ("1e12", "--credits must be a number greater than 0 and at most 1000000000"),
        ("0.0000000001", "--credits takes at most 9 decimal places, not '0.0000000001'."),
    ],
)
def test_bad_credits_create_no_tenant(credits, sentence):
    before = db_snapshot()
    with pytest.raises(CommandError) as failure:
        call("tenant_create", "acme", f"--credits={credits}")
    assert sentence in str(failure.value)
    assert db_snapshot() == before


@pytest.mark.django_db
def test_the_tenant_and_its_credits_are_one_transaction(monkeypatch):
    from accounts.management.commands import tenant_create

    def refuse(**kwargs):
        assert Tenant.objects.filter(pk=kwargs["tenant"].pk).exists()  # the tenant was written first
        raise ValidationError("Refused by the credits service.")

    monkeypatch.setattr(tenant_create, "credit_add", refuse)
    before = db_snapshot()
    with pytest.raises(CommandError) as failure:
        call("tenant_create", "acme", "--credits", "5")
    assert str(failure.value) == "Refused by the credits service."
    assert db_snapshot() == before

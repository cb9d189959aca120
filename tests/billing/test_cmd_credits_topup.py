"""`manage.py credits_topup --tenant SLUG --usd AMOUNT [--note TEXT]`."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management.base import CommandError

from accounts.services import tenant_create
from billing.credits import credit_balance
from billing.models import CreditEntry
from tests.support.manage import call, one_sentence_error, run
from tests.support.snapshot import db_snapshot


@pytest.fixture
def acme(db):
    return tenant_create(name="Acme", slug="acme", prepaid=True)


def test_it_tops_up_and_prints_the_new_balance(acme):
    output = call("credits_topup", "--tenant", "acme", "--usd", "25", "--note", "invoice 2030-001")
    assert output.stdout == "Added 25.00 USD to the credits of acme; balance 25.00 USD.\n"
    output = call("credits_topup", "--tenant", "acme", "--usd", "0.000000001")
    assert output.stdout == "Added 0.000000001 USD to the credits of acme; balance 25.000000001 USD.\n"
    first, second = CreditEntry.objects.order_by("pk")
    assert (first.kind, first.amount, first.note) == ("topup", Decimal("25"), "invoice 2030-001")
    assert (second.kind, second.amount, second.note) == ("topup", Decimal("1E-9"), "")
    assert credit_balance(acme) == Decimal("25.000000001")


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--tenant", "nope", "--usd", "5"], "There is no tenant with the slug 'nope'."),
        (["--tenant", "acme", "--usd", "-5"], "--usd must be a number greater than 0 and at most 1000000000, not '-5'."),
        (["--tenant", "acme", "--usd", "0"], "--usd must be a number greater than 0"),
        (["--tenant", "acme", "--usd", "ten"], "--usd must be a number greater than 0 and at most 1000000000, not 'ten'."),
        (["--tenant", "acme", "--usd", "NaN"], "--usd must be a number greater than 0"),
        (["--tenant", "acme", "--usd", "Infinity"], "--usd must be a number greater than 0"),
        (["--tenant", "acme", "--usd", "1000000000.5"], "at most 1000000000, not '1000000000.5'."),
        (["--tenant", "acme", "--usd", "1.0000000001"], "--usd takes at most 9 decimal places, not '1.0000000001'."),
        (["--tenant", "acme", "--usd", "5", "--note", "n" * 501], "note: Ensure this value has at most 500 characters"),
    ],
)  # fmt: skip
def test_it_refuses_bad_arguments_with_one_sentence_and_adds_nothing(acme, args, sentence):
    with pytest.raises(CommandError) as failure:
        call("credits_topup", *args)
    assert sentence in str(failure.value)
    assert "\n" not in str(failure.value)
    assert not CreditEntry.objects.exists()


def test_it_exits_1_with_one_sentence_on_stderr_and_adds_nothing(transactional_db):
    tenant_create(name="Acme", slug="acme", prepaid=True)
    result = run("credits_topup", "--tenant", "acme", "--usd", "12.3456789012")
    assert one_sentence_error(result) == "--usd takes at most 9 decimal places, not '12.3456789012'."
    assert result.stdout == ""
    assert not CreditEntry.objects.exists()


def test_it_tops_up_from_the_command_line(transactional_db):
    acme = tenant_create(name="Acme", slug="acme", prepaid=True)
    result = run("credits_topup", "--tenant", "acme", "--usd", "12.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Added 12.50 USD to the credits of acme; balance 12.50 USD.\n"
    assert credit_balance(acme) == Decimal("12.5")


def test_it_refuses_a_tenant_not_on_prepaid_credits_and_changes_nothing(transactional_db):
    tenant_create(name="Acme", slug="acme")
    before = db_snapshot()
    result = run("credits_topup", "--tenant", "acme", "--usd", "25")
    assert one_sentence_error(result) == (
        "Tenant acme is not on prepaid credits: its calls are not charged to a balance, so a top-up would "
        "change nothing it can spend. Put it on prepaid credits first (credits_topup --start-prepaid, or "
        "Prepaid in the admin's tenant page)."
    )
    assert result.stdout == ""
    assert db_snapshot() == before


def test_start_prepaid_puts_the_tenant_on_credits_with_the_top_up(db):
    acme = tenant_create(name="Acme", slug="acme")
    output = call("credits_topup", "--tenant", "acme", "--usd", "5", "--start-prepaid")
    assert output.stdout == (
        "Tenant acme now runs on prepaid credits.\nAdded 5.00 USD to the credits of acme; balance 5.00 USD.\n"
    )
    acme.refresh_from_db()
    assert acme.prepaid and credit_balance(acme) == Decimal(5)


def test_start_prepaid_is_undone_when_the_top_up_is_refused(db):
    tenant_create(name="Acme", slug="acme")
    before = db_snapshot()
    with pytest.raises(CommandError):
        call("credits_topup", "--tenant", "acme", "--usd", "5", "--start-prepaid", "--note", "n" * 501)
    assert db_snapshot() == before

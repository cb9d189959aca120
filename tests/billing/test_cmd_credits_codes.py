"""`manage.py redeem_codes_create --usd AMOUNT --count N [--expires ISO]`."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management.base import CommandError

from accounts.services import tenant_create
from billing.credits import code_redeem
from billing.models import RedemptionCode
from tests.support.manage import call, one_sentence_error, run

CODE = re.compile(r"TH(-[2-9A-HJ-NP-Z]{4}){4}")


def test_it_prints_only_the_codes_on_stdout_and_a_summary_on_stderr(db):
    output = call("redeem_codes_create", "--usd", "20", "--count", "3", "--expires", "2099-01-31")
    codes = output.stdout.splitlines()
    assert len(codes) == 3 and all(CODE.fullmatch(code) for code in codes), output.stdout
    assert output.stderr == (
        "Created 3 redemption code(s) worth 20.00 USD each, valid until 2099-01-31T00:00:00+00:00. "
        "Shown once; only their digests are stored.\n"
    )
    assert not any(code in output.stderr for code in codes)
    rows = list(RedemptionCode.objects.all())
    assert {(row.amount, row.expires_at) for row in rows} == {
        (Decimal("20"), datetime(2099, 1, 31, tzinfo=UTC))
    }
    acme = tenant_create(name="Acme", slug="acme")
    assert code_redeem(tenant=acme, code=codes[1]).amount == Decimal("20")


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--usd", "-5", "--count", "1"], "--usd must be a number greater than 0 and at most 1000000000, not '-5'."),
        (["--usd", "five", "--count", "1"], "--usd must be a number greater than 0"),
        (["--usd", "0.0000000001", "--count", "1"], "--usd takes at most 9 decimal places"),
        (["--usd", "1.1234567891", "--count", "1"], "--usd takes at most 9 decimal places, not '1.1234567891'."),
        (["--usd", "5", "--count", "0"], "--count must be a whole number greater than 0, not '0'."),
        (["--usd", "5", "--count", "-3"], "--count must be a whole number greater than 0"),
        (["--usd", "5", "--count", "many"], "--count must be a whole number greater than 0"),
        (["--usd", "5", "--count", "10001"], "--count must be at most 10000, not '10001'."),
        (["--usd", "5", "--count", "1", "--expires", "soon"], "--expires must be an ISO 8601 date"),
        (["--usd", "5", "--count", "1", "--expires", "2001-01-01"], "--expires 2001-01-01 is in the past."),
    ],
)  # fmt: skip
def test_it_refuses_bad_arguments_with_one_sentence_and_creates_nothing(db, args, sentence):
    with pytest.raises(CommandError) as failure:
        call("redeem_codes_create", *args)
    assert sentence in str(failure.value)
    assert "\n" not in str(failure.value)
    assert not RedemptionCode.objects.exists()


def test_it_exits_1_with_one_sentence_and_prints_no_code(transactional_db):
    result = run("redeem_codes_create", "--usd", "1.0000000001", "--count", "5")
    assert one_sentence_error(result) == "--usd takes at most 9 decimal places, not '1.0000000001'."
    assert result.stdout == ""
    assert not RedemptionCode.objects.exists()


def test_it_writes_codes_a_script_can_redirect(transactional_db):
    result = run("redeem_codes_create", "--usd", "2.5", "--count", "4")
    assert result.returncode == 0, result.stderr
    codes = result.stdout.splitlines()
    assert len(codes) == len(set(codes)) == 4 and all(CODE.fullmatch(code) for code in codes)
    assert result.stdout.endswith("\n") and "Created 4 redemption code(s)" in result.stderr
    assert RedemptionCode.objects.count() == 4

"""`manage.py credits_redeem --tenant SLUG CODE`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.management.base import CommandError

from accounts.services import tenant_create
from billing.credits import credit_add, credit_balance, redeem_codes_create
from billing.models import CreditEntry, RedemptionCode
from tests.support.manage import call, one_sentence_error, run


@pytest.fixture
def acme(db):
    tenant = tenant_create(name="Acme", slug="acme")
    credit_add(tenant=tenant, kind="topup", usd=Decimal("1"))
    return tenant


def ledger() -> list[tuple[object, ...]]:
    return list(CreditEntry.objects.order_by("pk").values_list("pk", "tenant", "kind", "amount"))


def test_it_redeems_a_code_and_prints_the_new_balance(acme):
    (code,) = redeem_codes_create(usd=Decimal("9.99"), count=1)
    output = call("credits_redeem", "--tenant", "acme", code.lower())
    assert output.stdout == "Redeemed a code worth 9.99 USD for acme; balance 10.99 USD.\n"
    assert code not in output.stdout + output.stderr
    assert credit_balance(acme) == Decimal("10.99")
    assert RedemptionCode.objects.get().redeemed_by == acme


def test_it_refuses_a_code_used_already_expired_unknown_or_malformed_and_changes_nothing(acme):
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False):
        used, expired, fresh = (
            redeem_codes_create(usd=Decimal("5"), count=1, expires_at=datetime(2030, 6, 1, tzinfo=UTC))[0]
            for _ in range(3)
        )
        call("credits_redeem", "--tenant", "acme", used)
    unknown = fresh[:-1] + ("A" if fresh[-1] != "A" else "B")
    before = (ledger(), list(RedemptionCode.objects.order_by("pk").values_list("redeemed_at", flat=True)))
    cases = [
        (["--tenant", "acme", used], "That redemption code has already been redeemed."),
        (["--tenant", "acme", expired], "That redemption code expired on 2030-06-01 00:00 UTC."),
        (["--tenant", "acme", unknown], "That redemption code is not known."),
        (["--tenant", "acme", "TH-1234"], "That is not a redemption code: a code reads TH- and then 16"),
        (["--tenant", "nope", fresh], "There is no tenant with the slug 'nope'."),
    ]
    with time_machine.travel(datetime(2030, 7, 1, tzinfo=UTC), tick=False):
        for args, sentence in cases:
            with pytest.raises(CommandError) as failure:
                call("credits_redeem", *args)
            message = str(failure.value)
            assert sentence in message and "\n" not in message
            assert args[-1] not in message  # the code is never repeated
    assert (
        ledger(),
        list(RedemptionCode.objects.order_by("pk").values_list("redeemed_at", flat=True)),
    ) == before


def test_it_exits_1_with_one_sentence_on_stderr_when_the_code_is_used(transactional_db):
    acme = tenant_create(name="Acme", slug="acme")
    tenant_create(name="Globex", slug="globex")
    (code,) = redeem_codes_create(usd=Decimal("3"), count=1)
    first = run("credits_redeem", "--tenant", "acme", code)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "Redeemed a code worth 3.00 USD for acme; balance 3.00 USD.\n"
    second = run("credits_redeem", "--tenant", "globex", code)
    assert one_sentence_error(second) == "That redemption code has already been redeemed."
    assert second.stdout == "" and code not in second.stderr
    assert list(CreditEntry.objects.values_list("tenant", "amount")) == [(acme.pk, Decimal("3"))]

"""billing.credits: redeem_codes_create and code_redeem (single-use redemption codes)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.services import tenant_create
from billing.credits import code_redeem, credit_balance, redeem_codes_create
from billing.models import CreditEntry, RedemptionCode

pytestmark = pytest.mark.django_db
CODE = re.compile(r"TH(-[2-9A-HJ-NP-Z]{4}){4}")


@pytest.fixture
def acme():
    return tenant_create(name="Acme", slug="acme")


@pytest.fixture
def globex():
    return tenant_create(name="Globex", slug="globex")


def state() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Everything a redemption could change."""
    codes = list(RedemptionCode.objects.order_by("pk").values_list("pk", "redeemed_at", "redeemed_by"))
    entries = list(CreditEntry.objects.order_by("pk").values_list("pk", "tenant", "kind", "amount"))
    return codes, entries


def test_it_creates_a_batch_of_distinct_codes_and_stores_only_digests(django_user_model):
    operator = django_user_model.objects.create_user("operator")
    expires = timezone.now() + timedelta(days=30)
    codes = redeem_codes_create(usd=Decimal("12.5"), count=50, expires_at=expires, created_by=operator)
    assert len(codes) == len(set(codes)) == 50
    assert all(CODE.fullmatch(code) for code in codes), codes[:3]
    rows = list(RedemptionCode.objects.all())
    assert len(rows) == 50 and len({row.batch for row in rows}) == 1
    assert {row.amount for row in rows} == {Decimal("12.5")}
    assert {row.expires_at for row in rows} == {expires} and {row.created_by for row in rows} == {operator}
    assert {row.hint for row in rows} == {code[:7] for code in codes}
    stored = " ".join(f"{row.digest} {row.hint} {row.batch}" for row in rows)
    for code in codes:  # neither the code nor its significant characters are stored
        assert code not in stored and code.replace("-", "")[2:] not in stored
    assert {len(row.digest) for row in rows} == {64}


def test_its_codes_carry_eighty_bits_from_a_32_character_alphabet():
    codes = redeem_codes_create(usd=Decimal("1"), count=400)
    characters = {c for code in codes for c in code[3:].replace("-", "")}
    assert len(characters) == 32  # every one of the 32 appears in 6,400 draws, nothing else
    assert not characters & set("01IO")
    assert {len(code.replace("-", "")) - 2 for code in codes} == {16}  # 16 x 5 bits


@pytest.mark.parametrize(
    ("kwargs", "sentence"),
    [
        ({"usd": Decimal("0"), "count": 1}, "The value of a code must be greater than 0, not 0."),
        ({"usd": Decimal("-1"), "count": 1}, "The value of a code must be greater than 0"),
        ({"usd": Decimal("1.0000000001"), "count": 1}, "The value of a code takes at most 9 decimal places."),
        ({"usd": Decimal("sNaN"), "count": 1}, "The value of a code must be a finite number."),
        ({"usd": 1.5, "count": 1}, "not float."),
        ({"usd": Decimal("1"), "count": 0}, "A batch holds from 1 to 10000 codes, not 0."),
        ({"usd": Decimal("1"), "count": 10_001}, "not 10001."),
        ({"usd": Decimal("1"), "count": True}, "not True."),
        ({"usd": Decimal("1"), "count": 1, "expires_at": datetime(2099, 1, 1)}, "must carry a time zone"),
        ({"usd": Decimal("1"), "count": 1, "expires_at": datetime(2001, 1, 1, tzinfo=UTC)}, "in the past"),
    ],
)
def test_it_refuses_a_bad_batch_and_creates_nothing(kwargs, sentence):
    with pytest.raises(ValidationError) as failure:
        redeem_codes_create(**kwargs)
    assert failure.value.messages == [failure.value.messages[0]] and sentence in failure.value.messages[0]
    assert not RedemptionCode.objects.exists()


def test_it_redeems_a_code_once_into_the_ledger(acme):
    (code,) = redeem_codes_create(usd=Decimal("7.25"), count=1)
    entry = code_redeem(tenant=acme, code=code)
    assert (entry.tenant, entry.kind, entry.amount) == (acme, "redemption", Decimal("7.25"))
    row = RedemptionCode.objects.get()
    assert entry.redemption_code == row and row.redeemed_by == acme and row.redeemed_at is not None
    assert code[:7] in entry.note and code not in entry.note
    assert credit_balance(acme) == Decimal("7.25")


@pytest.mark.parametrize(
    "typed",
    [
        lambda code: code.lower(),
        lambda code: code.replace("-", ""),
        lambda code: code[3:],  # without the TH- tag
        lambda code: "  " + code.replace("-", " ").lower() + "\n",
        lambda code: code[3:].replace("-", "")[:8] + "-" + code[3:].replace("-", "")[8:],
    ],
)
def test_it_reads_a_code_however_it_is_typed(acme, typed):
    (code,) = redeem_codes_create(usd=Decimal("1"), count=1)
    code_redeem(tenant=acme, code=typed(code))
    assert credit_balance(acme) == Decimal("1")


def test_it_refuses_a_second_redemption_by_anyone_and_changes_nothing(acme, globex):
    (code,) = redeem_codes_create(usd=Decimal("5"), count=1)
    code_redeem(tenant=acme, code=code)
    before = state()
    for tenant in (acme, globex):
        with pytest.raises(ValidationError) as failure:
            code_redeem(tenant=tenant, code=code.lower())
        assert failure.value.messages == ["That redemption code has already been redeemed."]
    assert state() == before
    assert (credit_balance(acme), credit_balance(globex)) == (Decimal("5"), Decimal("0"))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "TH-",
        "TH-AAAA-BBBB-CCCC",  # too short
        "TH-AAAA-BBBB-CCCC-DDDD-E",  # too long
        "TH-AAAA-BBBB-CCCC-DDD0",  # 0 is not in the alphabet
        "TH-AAAA-BBBB-CCCC-DDDI",  # nor is I
        "TH-AAAA-BBBB-CCCC-DDD$",
        "XX-AAAA-BBBB-CCCC-DDDD",
        "TH-ÄAAA-BBBB-CCCC-DDDD",
        "A" * 10_000,
    ],
)
def test_it_refuses_a_malformed_code_and_changes_nothing(acme, bad):
    redeem_codes_create(usd=Decimal("1"), count=3)
    before = state()
    with pytest.raises(ValidationError) as failure:
        code_redeem(tenant=acme, code=bad)
    (sentence,) = failure.value.messages
    assert sentence.startswith("That is not a redemption code: a code reads TH- and then 16 letters")
    assert state() == before


def test_it_refuses_an_unknown_code_and_changes_nothing(acme):
    (code,) = redeem_codes_create(usd=Decimal("1"), count=1)
    other = code[:-1] + ("A" if code[-1] != "A" else "B")
    before = state()
    with pytest.raises(ValidationError) as failure:
        code_redeem(tenant=acme, code=other)
    assert failure.value.messages == ["That redemption code is not known."]
    assert state() == before


def test_it_refuses_an_expired_code_and_changes_nothing(acme):
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False):
        (code,) = redeem_codes_create(
            usd=Decimal("1"), count=1, expires_at=datetime(2030, 1, 31, 12, tzinfo=UTC)
        )
    before = state()
    at_expiry = time_machine.travel(datetime(2030, 1, 31, 12, tzinfo=UTC), tick=False)
    with at_expiry, pytest.raises(ValidationError) as failure:
        code_redeem(tenant=acme, code=code)
    assert failure.value.messages == ["That redemption code expired on 2030-01-31 12:00 UTC."]
    assert state() == before
    # Until its last moment it is good.
    with time_machine.travel(datetime(2030, 1, 31, 11, 59, 59, tzinfo=UTC), tick=False):
        code_redeem(tenant=acme, code=code)
    assert credit_balance(acme) == Decimal("1")


def test_it_says_redeemed_rather_than_expired_for_a_code_that_is_both(acme):
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False):
        (code,) = redeem_codes_create(usd=Decimal("1"), count=1, expires_at=datetime(2030, 2, 1, tzinfo=UTC))
        code_redeem(tenant=acme, code=code)
    with pytest.raises(ValidationError, match="already been redeemed"):
        code_redeem(tenant=acme, code=code)


def test_it_tells_the_gateways_counter_after_commit(acme, django_capture_on_commit_callbacks):
    from django.conf import settings

    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    from billing.pots import credit_pot
    from config.redis import sync_client

    (code,) = redeem_codes_create(usd=Decimal("0.5"), count=1)
    sync_client().hset(credit_pot(acme.pk), mapping={"credit": 0, "spent": 0})
    with django_capture_on_commit_callbacks(execute=True):
        code_redeem(tenant=acme, code=code)
    assert int(sync_client().hget(credit_pot(acme.pk), "credit")) == 500_000_000

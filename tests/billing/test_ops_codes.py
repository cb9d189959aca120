"""The operator's redemption code batches (/ops/codes/): operators only (404 for everyone else);
create a batch (codes shown once, in that response only, or downloaded as text from it), list
batches with their counts, void a batch (its open codes are refused like an unknown code)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import AuditEntry, Tenant
from billing.credits import code_batch_create, code_redeem, credit_balance
from billing.models import RedemptionCode
from tests.support import operators as ops_fixtures
from tests.support.operators import NOT_OPERATORS, OPERATORS
from tests.support.snapshot import db_snapshot

pytestmark = pytest.mark.django_db

operators, ops_client, fast_passwords = (
    ops_fixtures.operators,
    ops_fixtures.ops_client,
    ops_fixtures.fast_passwords,
)

CODE = re.compile(r"TH-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}")


@pytest.fixture(autouse=True)
def _fast(fast_passwords):
    """Many users per test: a cheap hasher (tests/support/operators.py)."""


@pytest.fixture
def batch(db):
    return code_batch_create(usd=Decimal("5"), count=3)


def actions(batch):
    return [
        ("get", "/ops/codes/", {}),
        ("post", "/ops/codes/", {"count": "2", "amount": "1"}),
        ("post", f"/ops/codes/{batch.batch}/void/", {}),
    ]


@pytest.mark.parametrize("way", NOT_OPERATORS)
def test_it_is_a_404_for_everyone_but_operators(ops_client, batch, way):
    client = ops_client(way)
    for method, path, data in actions(batch):
        before = db_snapshot()
        response = getattr(client, method)(path, data)
        assert response.status_code == 404, (method, path)
        assert not CODE.search(response.content.decode())
        assert db_snapshot() == before


@pytest.mark.parametrize("way", OPERATORS)
def test_operators_reach_every_page_and_action(ops_client, batch, way):
    client = ops_client(way)
    for method, path, data in actions(batch):
        assert getattr(client, method)(path, data).status_code == (
            200 if method == "get" else 302 if "void" in path else 200
        )


def test_codes_are_shown_once_in_the_creating_response_only(ops_client, roles, operators):
    client = ops_client("operator")
    response = client.post("/ops/codes/", {"count": "4", "amount": "2.5", "expires_at": ""})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    codes = CODE.findall(response.content.decode())
    assert len(set(codes)) == 4
    assert b"shown this once" in response.content
    # Nowhere else: not in the session, a cookie, or the list page after.
    assert not any(code in str(dict(client.session)) for code in codes)
    assert not any(code in str(response.cookies) for code in codes)
    listed = client.get("/ops/codes/").content.decode()
    assert not CODE.search(listed)
    row = RedemptionCode.objects.first()
    assert row.batch in listed and "$2.50" in listed
    # Only digests are stored.
    assert not RedemptionCode.objects.filter(digest__in=codes).exists()
    entry = AuditEntry.objects.get(action="codes.create")
    assert entry.tenant is None and entry.actor_user == operators.operator
    assert entry.after["count"] == 4 and entry.after["amount"] == "2.50"
    assert not any(code in str(entry.after) for code in codes)
    # And they work.
    Tenant.objects.filter(pk=roles.tenant.pk).update(prepaid=True)
    code_redeem(tenant=roles.tenant, code=codes[0])
    assert credit_balance(roles.tenant) == Decimal("2.5")


def test_codes_download_as_text_from_the_same_post(ops_client, roles):
    response = ops_client("operator").post("/ops/codes/", {"count": "3", "amount": "1", "download": "1"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response["Content-Disposition"].startswith('attachment; filename="codes-')
    assert "no-store" in response["Cache-Control"]
    lines = response.content.decode().splitlines()
    assert len(lines) == 3 and all(CODE.fullmatch(line) for line in lines)
    assert RedemptionCode.objects.count() == 3


def test_the_list_counts_redeemed_and_voided(ops_client, roles, batch):
    Tenant.objects.filter(pk=roles.tenant.pk).update(prepaid=True)
    code_redeem(tenant=roles.tenant, code=batch.codes[0])
    client = ops_client("operator")
    assert client.post(f"/ops/codes/{batch.batch}/void/").status_code == 302
    html = client.get("/ops/codes/").content.decode()
    row = html[html.index(f">{batch.batch}<") :]
    row = row[: row.index("</tr>")]
    cells = re.findall(r'<td class="num">(\d+)</td>', row)
    assert cells == ["3", "1", "2"]  # codes, redeemed, voided
    assert "nothing open" in row


def test_a_voided_code_is_refused_like_an_unknown_one(ops_client, console_client, roles, batch, operators):
    Tenant.objects.filter(pk=roles.tenant.pk).update(prepaid=True)
    code_redeem(tenant=roles.tenant, code=batch.codes[0])
    assert ops_client("superuser").post(f"/ops/codes/{batch.batch}/void/").status_code == 302
    assert RedemptionCode.objects.filter(voided_at__isnull=False).count() == 2
    entry = AuditEntry.objects.get(action="codes.void")
    assert entry.after == {"batch": batch.batch, "voided": 2} and entry.actor_user == operators.superuser
    with pytest.raises(Exception) as voided:
        code_redeem(tenant=roles.tenant, code=batch.codes[1])
    with pytest.raises(Exception) as unknown:
        code_redeem(tenant=roles.tenant, code="TH-2222-3333-4444-5555")
    assert voided.value.messages == unknown.value.messages == ["That redemption code is not known."]
    # On the tenant's credits page, it reads as every wrong code does; the balance is unchanged.
    before = credit_balance(roles.tenant)
    page = console_client("owner").post("/t/acme/credits/", {"code": batch.codes[2]})
    wrong = console_client("owner").post("/t/acme/credits/", {"code": "TH-2222-3333-4444-6666"})
    assert page.status_code == wrong.status_code == 400
    error = re.compile(r'<p class="error"[^>]*>([^<]+)</p>')
    assert error.findall(page.content.decode()) == error.findall(wrong.content.decode())
    assert credit_balance(roles.tenant) == before == Decimal(5)
    # The redeemed code keeps its ledger line.
    assert RedemptionCode.objects.filter(redeemed_at__isnull=False, voided_at__isnull=True).count() == 1


def test_voiding_twice_voids_nothing_more(ops_client, batch):
    client = ops_client("operator")
    client.post(f"/ops/codes/{batch.batch}/void/")
    before = db_snapshot()
    response = client.post(f"/ops/codes/{batch.batch}/void/", follow=True)
    assert b"has no code left to void" in response.content
    assert db_snapshot() == before


def test_an_unknown_batch_is_a_404(ops_client, batch):
    before = db_snapshot()
    assert ops_client("operator").post("/ops/codes/20990101-000000-deadbeef/void/").status_code == 404
    assert db_snapshot() == before


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"count": "0"}, "count"),
        ({"count": "10001"}, "count"),
        ({"count": "many"}, "count"),
        ({"amount": "0"}, "amount"),
        ({"amount": "-3"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "0.0000000001"}, "amount"),
        ({"amount": "2000000000"}, "amount"),
        ({"expires_at": "2001-01-01T00:00"}, "expires_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_bad_input_is_refused_inline_and_creates_nothing(ops_client, roles, fields, field):
    before = db_snapshot()
    response = ops_client("operator").post("/ops/codes/", {"count": "2", "amount": "1", **fields})
    assert response.status_code == 400
    assert f'id="id_{field}_error"' in response.content.decode()
    assert db_snapshot() == before


def test_an_expiry_is_kept(ops_client, roles):
    when = (timezone.now() + timedelta(days=30)).replace(second=0, microsecond=0)
    response = ops_client("operator").post(
        "/ops/codes/", {"count": "1", "amount": "1", "expires_at": when.strftime("%Y-%m-%dT%H:%M")}
    )
    assert response.status_code == 200
    assert RedemptionCode.objects.get().expires_at == when


def test_pages_are_keyset(ops_client, roles):
    for _ in range(3):
        code_batch_create(usd=Decimal(1), count=1)
    client = ops_client("operator")
    assert client.get("/ops/codes/?cursor=../../etc").status_code == 400
    names = sorted(RedemptionCode.objects.values_list("batch", flat=True), reverse=True)
    older = client.get(f"/ops/codes/?cursor={names[0]}").content.decode()
    assert names[0] not in older and names[1] in older and names[2] in older


def test_the_empty_state_teaches(ops_client, roles):
    assert b"No batches yet" in ops_client("operator").get("/ops/codes/").content


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.one_of(st.text(max_size=10), st.integers(min_value=-(2**40), max_value=2**40).map(str)),
    amount=st.one_of(st.text(max_size=24), st.decimals(allow_nan=True, allow_infinity=True).map(str)),
    expires=st.text(max_size=30),
)
def test_hostile_input_is_a_4xx_or_a_valid_batch(ops_client, roles, count, amount, expires):
    before = db_snapshot()
    try:
        response = ops_client("operator").post(
            "/ops/codes/", {"count": count, "amount": amount, "expires_at": expires}
        )
    except ValueError:
        return  # a NUL: the test client refuses to encode it
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert db_snapshot() == before
    else:
        assert 1 <= RedemptionCode.objects.count() - len(before["billing.RedemptionCode"]) <= 10_000
        assert RedemptionCode.objects.filter(amount__lte=0).count() == 0

"""/api/v1/tenants/<slug>/credits/: balance, ledger (keyset pages), redeem a code (the console's
limit on wrong codes; one answer for every code that cannot be redeemed); per way in."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import AuditEntry
from billing.credits import credit_topup, redeem_codes_create
from tests.support.api import API_VISITORS

pytestmark = pytest.mark.django_db

CREDITS = "/api/v1/tenants/acme/credits/"
DENIED = {"outsider": 404, "operator": 404, "anonymous": 401, "expired": 401, "revoked": 401}


@pytest.mark.parametrize("visitor", API_VISITORS)
def test_it_checks_who_reads_the_balance_and_redeems(api_client, roles, visitor):
    roles.tenant.prepaid = True
    roles.tenant.save()
    credit_topup(tenant=roles.tenant, usd=Decimal("12.5"))
    client = api_client(visitor)
    response = client.get(CREDITS)
    assert response.status_code == DENIED.get(visitor, 200)
    if response.status_code == 200:
        assert response.json() == {"balance": "12.500000000", "prepaid": True}
    code = redeem_codes_create(usd=Decimal(5), count=1)[0]
    response = client.post(f"{CREDITS}redeem/", {"code": code}, content_type="application/json")
    assert response.status_code == DENIED.get(visitor) or (201 if visitor in ("owner", "admin") else 403)


def test_it_redeems_once_and_lists_the_ledger_by_keyset(api_client, roles):
    roles.tenant.prepaid = True
    roles.tenant.save()
    for amount in ("1", "2", "3"):
        credit_topup(tenant=roles.tenant, usd=Decimal(amount))
    code = redeem_codes_create(usd=Decimal(5), count=1)[0]
    client = api_client("owner")
    redeemed = client.post(f"{CREDITS}redeem/", {"code": code}, content_type="application/json")
    assert (redeemed.status_code, redeemed.json()["amount"]) == (201, "5.000000000")
    again = client.post(f"{CREDITS}redeem/", {"code": code}, content_type="application/json")
    assert (again.status_code, again.json()["error"]["field"]) == (400, "code")
    assert client.get(CREDITS).json()["balance"] == "11.000000000"
    page = client.get(f"{CREDITS}ledger/", {"limit": 3}).json()
    amounts = [entry["amount"] for entry in page["results"]]
    page = client.get(page["next"]).json()
    amounts += [entry["amount"] for entry in page["results"]]
    assert amounts == ["5.000000000", "3.000000000", "2.000000000", "1.000000000"] and page["next"] is None
    entry = AuditEntry.objects.get(object_type="billing.creditentry", actor_user=roles.owner)
    assert entry.actor.startswith("api:")
    bad = client.get(f"{CREDITS}ledger/", {"cursor": "nope"})
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "cursor")


def test_wrong_codes_are_limited_like_the_console(api_client, roles):
    client = api_client("admin")
    for _ in range(10):
        response = client.post(
            f"{CREDITS}redeem/", {"code": "TH-AAAA-BBBB-CCCC-DDDD"}, content_type="application/json"
        )
        assert response.status_code == 400
    response = client.post(
        f"{CREDITS}redeem/", {"code": "TH-AAAA-BBBB-CCCC-DDDD"}, content_type="application/json"
    )
    assert response.status_code == 429 and int(response["Retry-After"]) > 0

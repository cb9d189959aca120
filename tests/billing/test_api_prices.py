"""/api/v1/prices/: operator endpoints per way in, on the same services as /ops/prices/: never
retroactive, prices in force immutable, scheduled ones changed or withdrawn until their date, each
change audited with the token's user."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine

from accounts.models import AuditEntry
from billing.models import ModelPrice
from billing.services import model_price_schedule, model_price_set
from tests.support.api import API_VISITORS, operator_user
from tests.support.snapshot import db_snapshot

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
JSON = "application/json"
REFUSED = {"anonymous": 401, "expired": 401, "revoked": 401}
BODY = {
    "model": "gpt-4.1",
    "effective_from": "2026-07-01T00:00:00Z",
    "input_per_mtok": "1.5",
    "cached_input_per_mtok": "0.375",
    "output_per_mtok": "6",
}


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def prices() -> dict[str, ModelPrice]:
    current = model_price_set(
        model="gpt-4.1",
        input_per_mtok=Decimal(2),
        cached_input_per_mtok=Decimal("0.5"),
        output_per_mtok=Decimal(8),
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
    )
    scheduled = model_price_schedule(
        model="gpt-4.1",
        input_per_mtok=Decimal(1),
        cached_input_per_mtok=Decimal(0),
        output_per_mtok=Decimal(4),
        effective_from=datetime(2026, 9, 1, tzinfo=UTC),
    )
    return {"current": current, "scheduled": scheduled}


@pytest.mark.parametrize("visitor", API_VISITORS)
def test_only_an_operators_token_gets_in(api_client, roles, frozen, prices, visitor):
    client = api_client(visitor)
    scheduled = prices["scheduled"]
    calls = [
        ("get", "/api/v1/prices/", None, 200),
        ("post", "/api/v1/prices/", BODY, 201),
        ("get", f"/api/v1/prices/{scheduled.pk}/", None, 200),
        ("put", f"/api/v1/prices/{scheduled.pk}/", {**BODY, "effective_from": "2026-10-01T00:00:00Z"}, 200),
        ("delete", f"/api/v1/prices/{scheduled.pk}/", None, 204),
    ]
    before = db_snapshot()["billing.ModelPrice"]
    for method, url, body, ok in calls:
        kwargs = {"data": body, "content_type": JSON} if body is not None else {}
        response = getattr(client, method)(url, **kwargs)
        wanted = ok if visitor == "operator" else REFUSED.get(visitor, 404)
        assert response.status_code == wanted, (visitor, method, url, response.content[:300])
    if visitor != "operator":
        assert db_snapshot()["billing.ModelPrice"] == before
    else:
        entries = AuditEntry.objects.filter(action__startswith="price.", actor_user=operator_user())
        assert list(entries.order_by("id").values_list("action", flat=True)) == [
            "price.create",
            "price.update",
            "price.delete",
        ]


def test_the_states_and_the_list_filter(api_client, roles, frozen, prices):
    model_price_set(model="other", input_per_mtok=Decimal(1), cached_input_per_mtok=Decimal(1),
                    output_per_mtok=Decimal(1), effective_from=datetime(2025, 1, 1, tzinfo=UTC))  # fmt: skip
    old = model_price_set(model="gpt-4.1", input_per_mtok=Decimal(3), cached_input_per_mtok=Decimal(1),
                          output_per_mtok=Decimal(9), effective_from=datetime(2024, 1, 1, tzinfo=UTC))  # fmt: skip
    body = api_client("operator").get("/api/v1/prices/?model=gpt-4.1").json()
    states = {row["id"]: row["state"] for row in body["results"]}
    assert states == {prices["current"].pk: "in_force", prices["scheduled"].pk: "scheduled", old.pk: "past"}
    row = next(row for row in body["results"] if row["id"] == prices["current"].pk)
    assert row["input_per_mtok"] == "2.000000000" and row["cache_write_per_mtok"] is None


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({**BODY, "effective_from": "2026-06-01T11:59:59Z"}, "effective_from", "never retroactive"),
        ({**BODY, "input_per_mtok": "-1"}, "input_per_mtok", "greater than or equal to 0"),
        (
            {**BODY, "output_per_mtok": "1000000.000000001"},
            "output_per_mtok",
            "less than or equal to 1000000",
        ),
        ({**BODY, "output_per_mtok": "NaN"}, "output_per_mtok", "valid number"),
        ({**BODY, "cached_input_per_mtok": "0.0000000001"}, "cached_input_per_mtok", "9 decimal places"),
        ({**BODY, "model": ""}, "model", "blank"),
        ({**BODY, "effective_from": "soon"}, "effective_from", "Datetime has wrong format"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(
    api_client, roles, frozen, prices, body, field, message
):
    before = db_snapshot()["billing.ModelPrice"]
    response = api_client("operator").post("/api/v1/prices/", body, content_type=JSON)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == field and message in error["message"], error
    assert db_snapshot()["billing.ModelPrice"] == before


def test_a_price_in_force_never_changes(api_client, roles, frozen, prices):
    client = api_client("operator")
    current = prices["current"]
    changed = client.put(f"/api/v1/prices/{current.pk}/", {**BODY, "effective_from": None}, content_type=JSON)
    assert changed.status_code == 400 and "in force" in changed.json()["error"]["message"]
    deleted = client.delete(f"/api/v1/prices/{current.pk}/")
    assert deleted.status_code == 400 and "cannot be deleted" in deleted.json()["error"]["message"]
    current.refresh_from_db()
    assert current.input_per_mtok == Decimal(2)
    # Omitted date: from now, and it is then the price in force.
    made = client.post("/api/v1/prices/", {**BODY, "effective_from": None}, content_type=JSON).json()
    assert made["effective_from"] == "2026-06-01T12:00:00Z" and made["state"] == "in_force"

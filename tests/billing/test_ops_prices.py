"""/ops/prices/: the price in force and the next one per upstream model, a model's history, and price
changes that are never retroactive (billing.services.model_price_schedule, model_price_delete)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.audit import Actor
from accounts.models import AuditEntry
from billing.models import ModelPrice
from billing.selectors import price_in_force, price_schedule, prices_for_models
from billing.services import model_price_delete, model_price_schedule, model_price_set
from tests.support.manage import call
from tests.support.operators import NOT_OPERATORS, OPERATORS, fast_passwords, operator_clients
from tests.support.snapshot import db_snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]
__all__ = ["fast_passwords"]  # a fixture, used by name
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clients(roles: Any) -> dict[str, Any]:
    return operator_clients(roles)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def old_price(model: str = "gpt-4.1", **prices: str) -> ModelPrice:
    return model_price_set(
        model=model,
        input_per_mtok=Decimal(prices.get("input", "2")),
        cached_input_per_mtok=Decimal("0.5"),
        output_per_mtok=Decimal(prices.get("output", "8")),
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
    )


def price_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "model": "gpt-4.1",
        "effective_from": "2026-07-01T00:00",
        "input_per_mtok": "1.5",
        "cached_input_per_mtok": "0.375",
        "output_per_mtok": "6",
        "cache_write_per_mtok": "",
        "cache_write_1h_per_mtok": "",
    }
    data.update(overrides)
    return data


# -- access -------------------------------------------------------------------------------------------


def _actions(price: ModelPrice) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("get", "/ops/prices/", {}),
        ("get", "/ops/prices/?model=gpt-4.1", {}),
        ("post", "/ops/prices/", price_form()),
        ("get", f"/ops/prices/{price.pk}/edit/", {}),
        ("post", f"/ops/prices/{price.pk}/edit/", price_form(effective_from="2026-08-01T00:00")),
        ("post", f"/ops/prices/{price.pk}/delete/", {}),
    ]


@pytest.mark.parametrize("way", NOT_OPERATORS)
def test_it_is_a_404_for_everyone_but_operators_and_changes_nothing(clients, frozen, way):
    old_price()
    scheduled = model_price_schedule(
        model="gpt-4.1", input_per_mtok=Decimal(1), cached_input_per_mtok=Decimal(0), output_per_mtok=Decimal(4),
        effective_from=NOW + timedelta(days=10),
    )  # fmt: skip
    before = db_snapshot()
    for method, url, data in _actions(scheduled):
        assert getattr(clients[way], method)(url, data).status_code == 404, (way, method, url)
    assert db_snapshot() == before


@pytest.mark.parametrize("way", OPERATORS)
def test_operators_reach_every_page_and_action(clients, frozen, way):
    old_price()
    scheduled = model_price_schedule(
        model="gpt-4.1", input_per_mtok=Decimal(1), cached_input_per_mtok=Decimal(0), output_per_mtok=Decimal(4),
        effective_from=NOW + timedelta(days=10),
    )  # fmt: skip
    got = [getattr(clients[way], m)(url, data).status_code for m, url, data in _actions(scheduled)]
    assert got == [200, 200, 302, 200, 302, 302]


# -- the page -----------------------------------------------------------------------------------------


def test_a_future_price_is_shown_as_next_and_takes_effect_at_its_date(clients, frozen):
    old_price()
    client = clients["operator"]
    response = client.post("/ops/prices/", price_form())
    assert response.status_code == 302 and response.url == "/ops/prices/?model=gpt-4.1"
    page = client.get("/ops/prices/").content.decode()
    assert '$2 in</span> · <span class="nowrap">$0.5 cached</span> · <span class="nowrap">$8 out' in page
    assert "from 2026-07-01 00:00" in page
    history = client.get(response.url).content.decode()
    assert history.count('<span class="badge">scheduled</span>') == 1 and "in force</span>" in history
    schedule = price_schedule()["gpt-4.1"]
    assert price_in_force(schedule, NOW).input == 2_000_000_000  # unchanged until its date
    assert price_in_force(schedule, datetime(2026, 7, 1, tzinfo=UTC)).input == 1_500_000_000
    frozen.move_to(datetime(2026, 7, 1, 0, 0, 1, tzinfo=UTC))
    view = prices_for_models(["gpt-4.1"], at=datetime.now(UTC))["gpt-4.1"]
    assert view.in_force.input_per_mtok == Decimal("1.5") and view.next is None
    entry = AuditEntry.objects.get(action="price.create", actor="console:oona@ops.test")
    assert entry.tenant is None and entry.after["input_per_mtok"] == "1.500000000"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"effective_from": "2026-06-01T11:59"}, "effective_from", "Must be now or later"),
        ({"effective_from": "2020-01-01T00:00"}, "effective_from", "never retroactive"),
        ({"input_per_mtok": "-1"}, "input_per_mtok", "greater than or equal to 0"),
        ({"output_per_mtok": "1000001"}, "output_per_mtok", "less than or equal to 1000000"),
        ({"output_per_mtok": "NaN"}, "output_per_mtok", "Enter a number"),
        ({"cached_input_per_mtok": "0.0000000001"}, "cached_input_per_mtok", "no more than 9 decimal places"),
        ({"model": ""}, "model", "This field is required"),
        ({"model": "a\x00b"}, "model", "Null characters are not allowed"),
        ({"effective_from": "tomorrow"}, "effective_from", "Enter a valid date/time"),
    ],
)
def test_bad_input_is_an_inline_error_and_changes_nothing(clients, frozen, overrides, field, message):
    old_price()
    before = db_snapshot()
    response = clients["operator"].post("/ops/prices/", price_form(**overrides))
    assert response.status_code == 400
    assert any(message in error for error in response.context["form"].errors[field]), response.context[
        "form"
    ].errors
    assert db_snapshot() == before


def test_an_empty_date_means_now(clients, frozen):
    old_price()
    assert clients["operator"].post("/ops/prices/", price_form(effective_from="")).status_code == 302
    assert ModelPrice.objects.filter(effective_from=NOW).get().input_per_mtok == Decimal("1.5")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    model=st.text(st.characters(exclude_categories=("Cs",)), max_size=210),
    amount=st.one_of(st.decimals(allow_nan=True, allow_infinity=True).map(str), st.text(max_size=12)),
    when=st.one_of(st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M")), st.text(max_size=20)),
)
def test_hostile_price_input_never_500s_and_never_backdates(clients, model, amount, when):
    with time_machine.travel(NOW, tick=False):
        response = clients["operator"].post(
            "/ops/prices/", price_form(model=model, input_per_mtok=amount, effective_from=when)
        )
        assert response.status_code in (302, 400)
        for price in ModelPrice.objects.all():
            assert price.effective_from >= NOW and 0 <= price.input_per_mtok <= 1_000_000
        ModelPrice.objects.all().delete()


# -- immutability -------------------------------------------------------------------------------------


def test_a_price_in_force_is_immutable_and_a_scheduled_one_may_change_until_its_date(clients, frozen):
    current = old_price()
    client = clients["superuser"]
    # In force: no edit page, no delete, no service path.
    assert client.get(f"/ops/prices/{current.pk}/edit/").status_code == 302
    assert client.post(f"/ops/prices/{current.pk}/edit/", price_form(effective_from="")).status_code == 302
    assert client.post(f"/ops/prices/{current.pk}/delete/").status_code == 302
    with pytest.raises(ValidationError, match="in force"):
        model_price_schedule(model="gpt-4.1", input_per_mtok=Decimal(9), cached_input_per_mtok=Decimal(0),
                             output_per_mtok=Decimal(9), price=current, effective_from=NOW + timedelta(days=1))  # fmt: skip
    with pytest.raises(ValidationError, match="in force"):
        model_price_delete(price=current)
    current.refresh_from_db()
    assert current.input_per_mtok == Decimal(2)

    client.post("/ops/prices/", price_form())
    scheduled = ModelPrice.objects.get(effective_from=datetime(2026, 7, 1, tzinfo=UTC))
    response = client.post(f"/ops/prices/{scheduled.pk}/edit/", price_form(input_per_mtok="1.25"))
    assert response.status_code == 302
    scheduled.refresh_from_db()
    assert scheduled.input_per_mtok == Decimal("1.25")
    # Moving it into the past is refused inline.
    refused = client.post(f"/ops/prices/{scheduled.pk}/edit/", price_form(effective_from="2026-05-01T00:00"))
    assert refused.status_code == 400 and "Must be now or later" in refused.content.decode()
    # Once its date has come, it is in force too.
    frozen.move_to(datetime(2026, 7, 2, tzinfo=UTC))
    assert client.post(f"/ops/prices/{scheduled.pk}/delete/").status_code == 302
    assert ModelPrice.objects.filter(pk=scheduled.pk).exists()
    frozen.move_to(NOW)
    assert client.post(f"/ops/prices/{scheduled.pk}/delete/").status_code == 302
    assert not ModelPrice.objects.filter(pk=scheduled.pk).exists()
    actions = list(AuditEntry.objects.filter(tenant=None).order_by("id").values_list("action", flat=True))
    assert actions == ["price.create", "price.create", "price.update", "price.delete"]


def test_the_service_refuses_a_past_date_whoever_calls_it(frozen):
    with pytest.raises(ValidationError) as caught:
        model_price_schedule(model="m", input_per_mtok=Decimal(1), cached_input_per_mtok=Decimal(0),
                             output_per_mtok=Decimal(1), effective_from=NOW - timedelta(seconds=1),
                             actor=Actor.command("test"))  # fmt: skip
    assert "never retroactive" in caught.value.message_dict["effective_from"][0]
    assert not ModelPrice.objects.exists() and not AuditEntry.objects.exists()


def test_the_command_refuses_a_past_date_unless_backdating(frozen):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="never retroactive"):
        call(
            "model_price_set",
            "m",
            "--input",
            "1",
            "--cached-input",
            "0",
            "--output",
            "1",
            "--from",
            "2026-01-01",
        )
    assert not ModelPrice.objects.exists()
    call(
        "model_price_set", "m", "--input", "1", "--cached-input", "0", "--output", "1", "--from", "2026-07-01"
    )
    call("model_price_set", "m", "--input", "1", "--cached-input", "0", "--output", "1", "--from", "2026-01-01",
         "--backdate")  # fmt: skip
    assert sorted(ModelPrice.objects.values_list("effective_from", flat=True)) == [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 7, 1, tzinfo=UTC),
    ]
    assert set(AuditEntry.objects.values_list("actor", flat=True)) == {"command:model_price_set"}


def test_the_admin_never_backdates_nor_changes_a_price_in_force(client, frozen):
    from django.contrib.auth import get_user_model

    client.force_login(
        get_user_model().objects.create_superuser("admin-op", "admin@ops.test", "pw-admin-op-1")
    )
    current = old_price()
    form = {"model": "gpt-4.1", "input_per_mtok": "1", "cached_input_per_mtok": "0", "output_per_mtok": "1",
            "effective_from_0": "2026-05-01", "effective_from_1": "00:00:00"}  # fmt: skip
    before = db_snapshot()
    added = client.post("/admin/billing/modelprice/add/", form)
    assert added.status_code == 200 and "never retroactive" in added.content.decode()
    changed = client.post(
        f"/admin/billing/modelprice/{current.pk}/change/", {**form, "effective_from_0": "2027-01-01"}
    )
    assert changed.status_code == 200 and "in force and cannot change" in changed.content.decode()
    assert client.post(f"/admin/billing/modelprice/{current.pk}/delete/", {"post": "yes"}).status_code == 403
    assert db_snapshot() == before
    ok = client.post("/admin/billing/modelprice/add/", {**form, "effective_from_0": "2026-07-01"})
    assert ok.status_code == 302
    assert (
        AuditEntry.objects.get(action="price.create", actor="admin:admin@ops.test").after["model"]
        == "gpt-4.1"
    )

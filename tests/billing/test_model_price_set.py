"""Prices are validated wherever they are written (service and admin): zero or more, at most nine
decimal places; nothing is stored when refused."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from billing.models import ModelPrice
from billing.selectors import price_schedule
from billing.services import model_price_set

pytestmark = pytest.mark.django_db
FROM = datetime(2025, 1, 1, tzinfo=UTC)


def price(**overrides):
    values = {
        "model": "gpt-4.1",
        "input_per_mtok": Decimal("2"),
        "cached_input_per_mtok": Decimal("0.5"),
        "output_per_mtok": Decimal("8"),
        "effective_from": FROM,
    }
    return model_price_set(**{**values, **overrides})


def test_it_sets_and_replaces_a_price():
    price()
    price(output_per_mtok=Decimal("9.123456789"))
    assert ModelPrice.objects.get().output_per_mtok == Decimal("9.123456789")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"input_per_mtok": Decimal("-1")}, "input_per_mtok"),
        ({"cached_input_per_mtok": Decimal("-0.000000001")}, "cached_input_per_mtok"),
        ({"output_per_mtok": Decimal("0.0000000001")}, "output_per_mtok"),
        ({"model": ""}, "model"),
        ({"cache_write_per_mtok": Decimal("-3.75")}, "cache_write_per_mtok"),
        ({"cache_write_1h_per_mtok": Decimal("6.0000000001")}, "cache_write_1h_per_mtok"),
    ],
)
def test_it_refuses_a_bad_price(overrides, field):
    with pytest.raises(ValidationError) as caught:
        price(**overrides)
    assert field in caught.value.message_dict
    assert not ModelPrice.objects.exists()


def test_the_admin_refuses_a_bad_price(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1"))
    form = {
        "model": "gpt-4.1",
        "input_per_mtok": "-2",
        "cached_input_per_mtok": "0.5",
        "output_per_mtok": "8.0000000001",
        "effective_from_0": "2099-01-01",
        "effective_from_1": "00:00:00",
    }
    response = client.post("/admin/billing/modelprice/add/", form)
    body = response.content.decode()
    assert response.status_code == 200
    assert "Must be zero or more." in body and "no more than 9 decimal places" in body
    assert not ModelPrice.objects.exists()

    response = client.post(
        "/admin/billing/modelprice/add/", {**form, "input_per_mtok": "2", "output_per_mtok": "8"}
    )
    assert response.status_code == 302
    assert ModelPrice.objects.get().input_per_mtok == Decimal("2")


def test_cache_write_prices_are_stored_and_reach_the_gateway_s_schedule():
    price(
        model="claude-sonnet-4.5", cache_write_per_mtok=Decimal("3.75"), cache_write_1h_per_mtok=Decimal("6")
    )
    price(model="gpt-4.1")
    schedule = price_schedule()
    (_, claude), (_, gpt) = schedule["claude-sonnet-4.5"][0], schedule["gpt-4.1"][0]
    assert (claude.cache_write, claude.cache_write_1h) == (3_750_000_000, 6_000_000_000)
    # No cache-write price: writes cost what input costs.
    assert (gpt.cache_write, gpt.cache_write_rate, gpt.cache_write_1h_rate) == (
        None,
        2_000_000_000,
        2_000_000_000,
    )
    # Replacing the price without them clears them.
    price(model="claude-sonnet-4.5")
    assert ModelPrice.objects.get(model="claude-sonnet-4.5").cache_write_per_mtok is None


def test_the_admin_sets_a_cache_write_price_and_refuses_a_negative_one(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1"))
    form = {
        "model": "claude-sonnet-4.5",
        "input_per_mtok": "3",
        "cached_input_per_mtok": "0.3",
        "output_per_mtok": "15",
        "cache_write_per_mtok": "-1",
        "cache_write_1h_per_mtok": "",
        "effective_from_0": "2099-01-01",
        "effective_from_1": "00:00:00",
    }
    response = client.post("/admin/billing/modelprice/add/", form)
    assert response.status_code == 200 and "Must be zero or more." in response.content.decode()
    assert not ModelPrice.objects.exists()
    assert (
        client.post("/admin/billing/modelprice/add/", {**form, "cache_write_per_mtok": "3.75"}).status_code
        == 302
    )
    stored = ModelPrice.objects.get()
    assert (stored.cache_write_per_mtok, stored.cache_write_1h_per_mtok) == (Decimal("3.75"), None)

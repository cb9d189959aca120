"""`manage.py model_price_set MODEL --input --cached-input --output [--cache-write] [--cache-write-1h]
[--from]`: prices per million tokens, cache-write rates included, written through the service."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management.base import CommandError

from billing.models import ModelPrice
from billing.pricing import cost_nanos
from billing.selectors import price_in_force, price_schedule
from tests.support.manage import call, one_sentence_error, run

pytestmark = pytest.mark.django_db
PRICES = ["--input", "3", "--cached-input", "0.3", "--output", "15"]


def test_it_sets_a_price_with_cache_write_rates_that_the_gateway_prices_calls_with():
    output = call(
        "model_price_set", "claude-sonnet-4.5", *PRICES, "--cache-write", "3.75", "--cache-write-1h", "6",
        "--from", "2026-01-01", "--backdate",
    )  # fmt: skip
    assert output.stdout == (
        "claude-sonnet-4.5 from 2026-01-01 00:00Z: input 3, cached input 0.3, output 15; cache writes "
        "3.75, one-hour cache writes 6 (USD per million tokens).\n"
    )
    stored = ModelPrice.objects.get()
    assert (stored.cache_write_per_mtok, stored.cache_write_1h_per_mtok) == (Decimal("3.75"), Decimal("6"))
    price = price_in_force(price_schedule()["claude-sonnet-4.5"], datetime(2026, 6, 1, tzinfo=UTC))
    assert price is not None
    # 1000 in: 200 read from the cache, 500 written (100 for an hour), 300 plain; 10 out.
    assert cost_nanos(
        price=price, prompt_tokens=1000, cached_tokens=200, cache_write_tokens=500, cache_write_1h_tokens=100,
        completion_tokens=10,
    ) == 300 * 3000 + 200 * 300 + 400 * 3750 + 100 * 6000 + 10 * 15000  # fmt: skip


def test_without_cache_write_rates_writes_cost_what_input_costs_and_a_new_date_keeps_the_old_price():
    call(
        "model_price_set",
        "gpt-4.1",
        "--input",
        "2",
        "--cached-input",
        "0.5",
        "--output",
        "8",
        "--from",
        "2026-01-01",
        "--backdate",
    )
    output = call("model_price_set", "gpt-4.1", "--input", "1", "--cached-input", "0.25", "--output", "4",
                  "--from", "2026-03-01T12:00Z", "--backdate")  # fmt: skip
    assert output.stdout.endswith("; cache writes as input (USD per million tokens).\n")
    assert ModelPrice.objects.count() == 2
    schedule = price_schedule()["gpt-4.1"]
    assert price_in_force(schedule, datetime(2026, 2, 1, tzinfo=UTC)).input == 2_000_000_000
    assert price_in_force(schedule, datetime(2026, 3, 2, tzinfo=UTC)).cache_write_rate == 1_000_000_000
    # The same moment again replaces that price, not adds one.
    call("model_price_set", "gpt-4.1", "--input", "1.5", "--cached-input", "0.25", "--output", "4",
         "--from", "2026-03-01T12:00:00+00:00", "--backdate")  # fmt: skip
    assert ModelPrice.objects.count() == 2


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["m", "--input", "-1", "--cached-input", "0", "--output", "0"], "--input must be USD per million tokens, from 0 to 1000000, not '-1'."),
        (["m", *PRICES, "--cache-write", "NaN"], "--cache-write must be USD per million tokens"),
        (["m", *PRICES, "--cache-write-1h", "1e9"], "--cache-write-1h must be USD per million tokens"),
        (["m", *PRICES, "--cache-write", "0.0000000001"], "--cache-write takes at most 9 decimal places"),
        (["m", *PRICES, "--from", "yesterday"], "--from must be an ISO 8601 date or time"),
        (["", *PRICES], "MODEL: This field cannot be blank."),
        (["m" * 201, *PRICES], "MODEL: Ensure this value has at most 200 characters"),
    ],
)  # fmt: skip
def test_it_refuses_bad_arguments_with_one_sentence_and_stores_nothing(args, sentence):
    with pytest.raises(CommandError) as failure:
        call("model_price_set", *args)
    assert sentence in str(failure.value) and "\n" not in str(failure.value)
    assert not ModelPrice.objects.exists()


def test_it_exits_1_with_one_sentence_on_stderr(transactional_db):
    result = run("model_price_set", "gpt-4.1", *PRICES, "--cache-write", "-3")
    assert (
        one_sentence_error(result)
        == "--cache-write must be USD per million tokens, from 0 to 1000000, not '-3'."
    )
    assert result.stdout == "" and not ModelPrice.objects.exists()

from decimal import Decimal

import pytest

from billing.pricing import PriceNanos, cost_nanos, dollars_to_nanos, nanos_to_dollars

GPT41 = PriceNanos.from_decimals(
    input_per_mtok=Decimal("2.00"), cached_input_per_mtok=Decimal("0.50"), output_per_mtok=Decimal("8.00")
)


def test_it_prices_uncached_cached_and_output_tokens_separately():
    # 800 uncached × $2 + 200 cached × $0.50 + 50 × $8, per million
    assert cost_nanos(price=GPT41, prompt_tokens=1000, cached_tokens=200, completion_tokens=50) == 2_100_000


def test_it_is_exact_to_the_nano_dollar_where_a_float_is_not():
    price = PriceNanos.from_decimals(
        input_per_mtok=Decimal("0.28"),
        cached_input_per_mtok=Decimal("0.028"),
        output_per_mtok=Decimal("0.42"),
    )
    nanos = cost_nanos(price=price, prompt_tokens=123_457, cached_tokens=3, completion_tokens=99_999)
    exact = (Decimal(123_454) * Decimal("0.28") + 3 * Decimal("0.028") + 99_999 * Decimal("0.42")) / 1_000_000
    assert nanos_to_dollars(nanos) == exact.quantize(Decimal("1e-9"))


def test_it_rounds_half_up_once_per_call():
    price = PriceNanos(input=1_500, cached_input=0, output=0)  # $0.0000015 per million: 0.0015 nano a token
    assert cost_nanos(price=price, prompt_tokens=333, cached_tokens=0, completion_tokens=0) == 0  # 0.4995
    assert cost_nanos(price=price, prompt_tokens=334, cached_tokens=0, completion_tokens=0) == 1  # 0.501


def test_it_never_counts_more_cached_tokens_than_prompt_tokens():
    assert cost_nanos(price=GPT41, prompt_tokens=10, cached_tokens=50, completion_tokens=0) == 5_000


def test_it_converts_between_dollars_and_nanos_without_loss():
    assert dollars_to_nanos(Decimal("123.456789012")) == 123_456_789_012
    assert nanos_to_dollars(123_456_789_012) == Decimal("123.456789012")
    with pytest.raises(ValueError):
        dollars_to_nanos(Decimal("0.0000000001"))

from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


CLAUDE = PriceNanos.from_decimals(
    input_per_mtok=Decimal("3.00"),
    cached_input_per_mtok=Decimal("0.30"),
    output_per_mtok=Decimal("15.00"),
    cache_write_per_mtok=Decimal("3.75"),
    cache_write_1h_per_mtok=Decimal("6.00"),
)


def test_it_prices_cache_writes_at_their_own_rate_and_one_hour_writes_at_theirs():
    # 1000 input in all: 300 read from the cache, 400 written (100 of them for an hour), 300 plain.
    nanos = cost_nanos(
        price=CLAUDE,
        prompt_tokens=1000,
        cached_tokens=300,
        cache_write_tokens=400,
        cache_write_1h_tokens=100,
        completion_tokens=20,
    )
    assert nanos == 300 * 3000 + 300 * 300 + 300 * 3750 + 100 * 6000 + 20 * 15000


def test_without_a_cache_write_price_cache_writes_cost_what_input_costs():
    with_writes = cost_nanos(
        price=GPT41, prompt_tokens=1000, cached_tokens=0, cache_write_tokens=600, completion_tokens=0
    )
    assert with_writes == cost_nanos(price=GPT41, prompt_tokens=1000, cached_tokens=0, completion_tokens=0)
    # Without a one-hour rate, a one-hour write costs the cache-write rate.
    five_minutes = PriceNanos(input=1000, cached_input=0, output=0, cache_write=2000)
    assert cost_nanos(
        price=five_minutes,
        prompt_tokens=10,
        cached_tokens=0,
        cache_write_tokens=10,
        cache_write_1h_tokens=10,
        completion_tokens=0,
    ) == cost_nanos(
        price=five_minutes, prompt_tokens=10, cached_tokens=0, cache_write_tokens=10, completion_tokens=0
    )


def test_it_never_counts_more_cache_reads_and_writes_than_prompt_tokens():
    # 10 prompt tokens, "8 cached and 8 written": 8 cached, 2 written, none plain.
    assert (
        cost_nanos(price=CLAUDE, prompt_tokens=10, cached_tokens=8, cache_write_tokens=8, completion_tokens=0)
        == (8 * 300_000_000 + 2 * 3_750_000_000 + 500_000) // 1_000_000
    )


mtok_prices = st.decimals(min_value=0, max_value=1000, places=9, allow_nan=False, allow_infinity=False)


@given(
    input_price=mtok_prices,
    cached_price=mtok_prices,
    output_price=mtok_prices,
    write_price=st.none() | mtok_prices,
    write_1h_price=st.none() | mtok_prices,
    prompt=st.integers(0, 2**31 - 1),
    cached=st.integers(0, 2**31 - 1),
    written=st.integers(0, 2**31 - 1),
    written_1h=st.integers(0, 2**31 - 1),
    completion=st.integers(0, 2**31 - 1),
)
def test_the_cost_is_the_exact_decimal_sum_rounded_once(
    input_price,
    cached_price,
    output_price,
    write_price,
    write_1h_price,
    prompt,
    cached,
    written,
    written_1h,
    completion,
):
    price = PriceNanos.from_decimals(
        input_per_mtok=input_price,
        cached_input_per_mtok=cached_price,
        output_per_mtok=output_price,
        cache_write_per_mtok=write_price,
        cache_write_1h_per_mtok=write_1h_price,
    )
    nanos = cost_nanos(
        price=price,
        prompt_tokens=prompt,
        cached_tokens=cached,
        cache_write_tokens=written,
        cache_write_1h_tokens=written_1h,
        completion_tokens=completion,
    )
    assert isinstance(nanos, int) and nanos >= 0
    # The same call in Decimal, from the prices as the operator typed them.
    read = min(cached, prompt)
    wrote = min(written, prompt - read)
    wrote_1h = min(written_1h, wrote)
    write = input_price if write_price is None else write_price
    write_1h = write if write_1h_price is None else write_1h_price
    with localcontext() as context:
        context.prec = 60
        dollars = (
            (prompt - read - wrote) * input_price
            + read * cached_price
            + (wrote - wrote_1h) * write
            + wrote_1h * write_1h
            + completion * output_price
        ) / 1_000_000
        assert nanos_to_dollars(nanos) == dollars.quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP)

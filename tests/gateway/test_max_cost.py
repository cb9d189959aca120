"""`x-tollhouse-max-cost`: any header value is either an exact amount in nano-dollars or a 400."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import RequestFactory
from hypothesis import given
from hypothesis import strategies as st

from gateway import errors
from gateway.proxy import MAX_COST_HEADER, MAX_COST_USD, _max_cost

factory = RequestFactory()


def parse(value: str) -> int | None:
    return _max_cost(factory.post("/v1/chat/completions", headers={MAX_COST_HEADER: value}))


@pytest.mark.parametrize(
    ("value", "nanos"),
    [("0.05", 50_000_000), ("1", 1_000_000_000), (" 0.000000001 ", 1), ("0", 0), ("1e-3", 1_000_000)],
)
def test_it_reads_usd_exactly(value, nanos):
    assert parse(value) == nanos


def test_no_header_means_no_ceiling():
    assert _max_cost(factory.post("/v1/chat/completions")) is None


@pytest.mark.parametrize(
    "value", ["-1", "abc", "NaN", "Infinity", "1e400", "0.0000000001", "1000001", "0x10", ""]
)
def test_it_refuses_what_is_not_an_amount(value):
    with pytest.raises(errors.BadRequest) as caught:
        parse(value)
    assert caught.value.param == MAX_COST_HEADER and caught.value.status == 400


@given(st.text(max_size=60).filter(lambda s: "\n" not in s and "\r" not in s))
def test_any_header_value_is_an_amount_in_range_or_a_400(value):
    try:
        nanos = parse(value)
    except errors.BadRequest:
        return
    assert nanos is not None and 0 <= nanos <= int(MAX_COST_USD * 10**9)
    assert Decimal(nanos) / 10**9 == Decimal(value.strip())

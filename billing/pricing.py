"""Cost arithmetic in integer nano-dollars: exact, no floats, one rounding per call."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

NANOS_PER_DOLLAR = 1_000_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are per million tokens


@dataclass(frozen=True)
class PriceNanos:
    """Nano-dollars per million tokens."""

    input: int
    cached_input: int
    output: int

    @classmethod
    def from_decimals(
        cls, *, input_per_mtok: Decimal, cached_input_per_mtok: Decimal, output_per_mtok: Decimal
    ) -> PriceNanos:
        return cls(
            input=dollars_to_nanos(input_per_mtok),
            cached_input=dollars_to_nanos(cached_input_per_mtok),
            output=dollars_to_nanos(output_per_mtok),
        )


def dollars_to_nanos(amount: Decimal) -> int:
    nanos = amount * NANOS_PER_DOLLAR
    if nanos != nanos.to_integral_value():
        raise ValueError(f"{amount} has more precision than a nano-dollar")
    return int(nanos)


def nanos_to_dollars(nanos: int) -> Decimal:
    return Decimal(nanos).scaleb(-9)


def cost_nanos(*, price: PriceNanos, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> int:
    """Cost of one call. `prompt_tokens` includes the cached ones, as OpenAI reports them."""
    cached = min(max(cached_tokens, 0), max(prompt_tokens, 0))
    uncached = max(prompt_tokens, 0) - cached
    numerator = (
        uncached * price.input + cached * price.cached_input + max(completion_tokens, 0) * price.output
    )
    # Round half up to the nearest nano-dollar, once, on the whole call.
    return (numerator + TOKENS_PER_PRICE_UNIT // 2) // TOKENS_PER_PRICE_UNIT

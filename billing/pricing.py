"""Cost arithmetic in integer nano-dollars: exact, no floats, one rounding per call."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

NANOS_PER_DOLLAR = 1_000_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are per million tokens


@dataclass(frozen=True)
class PriceNanos:
    """Nano-dollars per million tokens. A cache-write rate of None: cache writes cost as input
    (the 1-hour rate falls back to the 5-minute one, then to input)."""

    input: int
    cached_input: int
    output: int
    cache_write: int | None = None
    cache_write_1h: int | None = None

    @classmethod
    def from_decimals(
        cls,
        *,
        input_per_mtok: Decimal,
        cached_input_per_mtok: Decimal,
        output_per_mtok: Decimal,
        cache_write_per_mtok: Decimal | None = None,
        cache_write_1h_per_mtok: Decimal | None = None,
    ) -> PriceNanos:
        return cls(
            input=dollars_to_nanos(input_per_mtok),
            cached_input=dollars_to_nanos(cached_input_per_mtok),
            output=dollars_to_nanos(output_per_mtok),
            cache_write=None if cache_write_per_mtok is None else dollars_to_nanos(cache_write_per_mtok),
            cache_write_1h=None
            if cache_write_1h_per_mtok is None
            else dollars_to_nanos(cache_write_1h_per_mtok),
        )

    @property
    def cache_write_rate(self) -> int:
        return self.input if self.cache_write is None else self.cache_write

    @property
    def cache_write_1h_rate(self) -> int:
        return self.cache_write_rate if self.cache_write_1h is None else self.cache_write_1h


def dollars_to_nanos(amount: Decimal) -> int:
    nanos = amount * NANOS_PER_DOLLAR
    if nanos != nanos.to_integral_value():
        raise ValueError(f"{amount} has more precision than a nano-dollar")
    return int(nanos)


def nanos_to_dollars(nanos: int) -> Decimal:
    return Decimal(nanos).scaleb(-9)


def cost_nanos(
    *,
    price: PriceNanos,
    prompt_tokens: int,
    cached_tokens: int,
    completion_tokens: int,
    cache_write_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
) -> int:
    """Cost of one call.

    `prompt_tokens` is every input token, as OpenAI reports them: it includes the `cached_tokens`
    read from the provider's prompt cache and the `cache_write_tokens` written to it (of which
    `cache_write_1h_tokens` with a one-hour lifetime, where the provider says so). An adapter of a
    provider that reports them apart (Anthropic: input, cache read, cache creation) adds them up.
    Reasoning tokens are part of `completion_tokens` and cost what output costs.
    """
    prompt = max(prompt_tokens, 0)
    cached = min(max(cached_tokens, 0), prompt)
    written = min(max(cache_write_tokens, 0), prompt - cached)
    written_1h = min(max(cache_write_1h_tokens, 0), written)
    uncached = prompt - cached - written
    numerator = (
        uncached * price.input
        + cached * price.cached_input
        + (written - written_1h) * price.cache_write_rate
        + written_1h * price.cache_write_1h_rate
        + max(completion_tokens, 0) * price.output
    )
    # Round half up to the nearest nano-dollar, once, on the whole call.
    return (numerator + TOKENS_PER_PRICE_UNIT // 2) // TOKENS_PER_PRICE_UNIT

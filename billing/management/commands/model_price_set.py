"""`manage.py model_price_set MODEL --input USD --cached-input USD --output USD [--cache-write USD]
[--cache-write-1h USD] [--from ISO] [--backdate]`: the price of an upstream model id, per million tokens.

A price change is never retroactive: `--from` must be now or later (server time), as in the
operator console; it writes through billing.services.model_price_schedule (a price scheduled for
that exact moment is replaced; a price in force never changes), so every gateway's price cache hears
of it at once. `--backdate` loads a price history instead (a fresh install, prices from before the
gateway recorded any call of the model): any date, through billing.services.model_price_set. Without
`--cache-write`, tokens written to the provider's prompt cache cost what input costs; without
`--cache-write-1h`, one-hour cache writes cost the cache-write price. `--from` (an ISO 8601 date or
time, UTC unless it says otherwise) defaults to now. Bad input exits 1 with one sentence and stores
nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from accounts.audit import Actor
from accounts.management.commands._cli import command_error
from billing.services import MAX_PRICE, model_price_schedule, model_price_set
from config.command import OperatorCommand

OPTIONS = {
    "input_per_mtok": "--input",
    "cached_input_per_mtok": "--cached-input",
    "output_per_mtok": "--output",
    "cache_write_per_mtok": "--cache-write",
    "cache_write_1h_per_mtok": "--cache-write-1h",
    "model": "MODEL",
    "effective_from": "--from",
}


def _price(option: str, value: str | None) -> Decimal | None:
    """USD per million tokens: zero or more, at most 9 decimal places (a nano-dollar)."""
    if value is None:
        return None
    try:
        parsed = Decimal(value.strip())
    except InvalidOperation:
        parsed = Decimal("NaN")
    if not parsed.is_finite() or parsed < 0 or parsed > MAX_PRICE:
        raise CommandError(
            f"{option} must be USD per million tokens, from 0 to {MAX_PRICE}, not {value[:40]!r}."
        )
    exponent = parsed.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > 9:
        raise CommandError(f"{option} takes at most 9 decimal places, not {value[:40]!r}.")
    return parsed


def _moment(text: str) -> datetime:
    sentence = "--from must be an ISO 8601 date or time, such as 2026-11-01 or 2026-11-01T12:00Z"
    if len(text) > 64:
        raise CommandError(sentence + ".")
    cleaned = text.strip()
    try:
        moment = datetime.fromisoformat(cleaned.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            moment = datetime.combine(date.fromisoformat(cleaned), datetime.min.time())
        except ValueError:
            raise CommandError(f"{sentence}, not {text!r}.") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Command(OperatorCommand):
    help = "Set the price of an upstream model id (USD per million tokens), from a date."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", help="The upstream model id, as a deployment names it.")
        parser.add_argument("--input", required=True, metavar="USD", help="Input tokens.")
        parser.add_argument(
            "--cached-input", required=True, metavar="USD", help="Input tokens read from the cache."
        )
        parser.add_argument("--output", required=True, metavar="USD", help="Output (and reasoning) tokens.")
        parser.add_argument(
            "--cache-write",
            metavar="USD",
            help="Input tokens written to the cache (default: the input price).",
        )
        parser.add_argument(
            "--cache-write-1h",
            metavar="USD",
            help="Cache writes with a one-hour lifetime (default: the cache-write price).",
        )
        parser.add_argument(
            "--from", dest="effective_from", metavar="ISO", help="In force from (default: now); now or later."
        )
        parser.add_argument(
            "--backdate",
            action="store_true",
            help="Allow a --from in the past (loading a price history): the price of that moment is "
            "set even if it is in force.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        input_price = _price("--input", options["input"])
        cached_price = _price("--cached-input", options["cached_input"])
        output_price = _price("--output", options["output"])
        assert input_price is not None and cached_price is not None and output_price is not None  # required
        prices = {
            "model": options["model"],
            "input_per_mtok": input_price,
            "cached_input_per_mtok": cached_price,
            "output_per_mtok": output_price,
            "cache_write_per_mtok": _price("--cache-write", options["cache_write"]),
            "cache_write_1h_per_mtok": _price("--cache-write-1h", options["cache_write_1h"]),
        }
        moment = _moment(options["effective_from"]) if options["effective_from"] is not None else None
        actor = Actor.command("model_price_set")
        try:
            if options["backdate"]:
                price = model_price_set(**prices, effective_from=moment or timezone.now(), actor=actor)
            else:
                price = model_price_schedule(**prices, effective_from=moment, actor=actor)
        except ValidationError as exc:
            raise command_error(exc, OPTIONS) from None
        writes = (
            f"; cache writes {price.cache_write_per_mtok}"
            if price.cache_write_per_mtok is not None
            else "; cache writes as input"
        )
        if price.cache_write_1h_per_mtok is not None:
            writes += f", one-hour cache writes {price.cache_write_1h_per_mtok}"
        self.stdout.write(
            f"{price.model} from {price.effective_from:%Y-%m-%d %H:%M}Z: input {price.input_per_mtok}, "
            f"cached input {price.cached_input_per_mtok}, output {price.output_per_mtok}{writes} "
            "(USD per million tokens)."
        )

"""Reading a request body and checking its fields, for every codec (gateway/dialects/).

Every field the gateway reads, translates or stores is checked against its dialect's documented types
and ranges, so a bad value is a clear 400 naming the field (`param`, e.g.
"messages[2].content[0].text") rather than a crash deeper in the request path or an upstream's
confusing error. Fields we do not know pass through untouched: providers add parameters faster than
gateways do. `null` means "not given" for every optional field, as it does for OpenAI.

Strings the gateway stores in the ledger (model, user) are held to what a usage row can carry: no
NUL (PostgreSQL rejects it), no lone surrogates (not encodable as UTF-8) and a bounded length
(billing.models.UsageRecord). Error messages never echo a client's value or key, only field names
and indexes, so an error is always small and safe to log.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from gateway import errors

MAX_MODEL_NAME = 200  # UsageRecord.requested_model
MAX_END_USER = 200  # UsageRecord.end_user
MAX_EMBEDDING_INPUTS = 2048
MAX_STOP_SEQUENCES = 4
# Far beyond any real request (a tool's JSON schema is a few levels), well within what orjson can
# write back out (about 250) for the upstream, with room for an adapter's own wrapping.
MAX_JSON_DEPTH = 128
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
TOOL_CHOICE_MODES = frozenset({"none", "auto", "required"})
RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
TOKEN_ID = re.compile(r"[0-9]{1,20}")
# A token id in an embeddings request stands for about this many characters of text (the same
# 4-characters-a-token rule as gateway.calls.estimate_tokens, read backwards).
CHARS_PER_TOKEN = 4


def read_json_body(request: HttpRequest) -> dict[str, Any]:
    limit = settings.TOLLHOUSE_MAX_BODY_BYTES
    too_large = errors.BodyTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise errors.BadRequest("The Content-Length header is not a number.") from exc
    if declared > limit:
        raise too_large
    try:
        raw = request.body
    except RequestDataTooBig as exc:
        raise too_large from exc
    if len(raw) > limit:
        raise too_large
    if not raw:
        raise errors.BadRequest("The request body is empty; send a JSON object.")
    try:
        # orjson also rejects invalid UTF-8, lone surrogate escapes ("\ud800"), numbers that overflow
        # a double and nesting deeper than 1024: all of them land here as a 400.
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.BadRequest(
            "We could not parse the JSON body of your request. Send valid JSON (Content-Type: application/json)."
        ) from exc
    if not isinstance(data, dict):
        raise errors.BadRequest("The request body must be a JSON object.")
    # Only a body with that many brackets can be that deep; counting bytes is cheap, walking is not.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _deeper_than(data, MAX_JSON_DEPTH):
        raise errors.BadRequest(
            f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.", code="invalid_value"
        )
    return data


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether any value sits more than `limit` objects/arrays deep. orjson reads up to 1024 levels
    but writes only about 250, and the body is written again to go upstream: a deeper body that got
    this far would fail there, after the call had begun."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


# -- building blocks -------------------------------------------------------------------------------


def invalid_type(param: str, expected: str) -> errors.BadRequest:
    return errors.BadRequest(
        f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type"
    )


def invalid_value(param: str, message: str) -> errors.BadRequest:
    return errors.BadRequest(f"Invalid '{param}': {message}", param=param, code="invalid_value")


def missing(param: str, message: str | None = None) -> errors.BadRequest:
    return errors.BadRequest(
        message or f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a number


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_storable(value: str, param: str, limit: int) -> None:
    """A string that ends up in the ledger: bounded, no NUL, valid Unicode."""
    if len(value) > limit:
        raise errors.BadRequest(
            f"'{param}' is longer than {limit} characters.", param=param, code="string_above_max_length"
        )
    if "\x00" in value:
        raise invalid_value(param, "must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (orjson's parser never yields one; callers may)
        raise invalid_value(param, "must be valid Unicode text.") from exc


def in_range(value: Any, param: str, low: float, high: float, *, integer: bool) -> None:
    """An optional number (an integer when `integer`) within [low, high], or a 400 naming `param`."""
    if value is None:
        return
    kind = "integer" if integer else "decimal"
    if not (is_int(value) if integer else is_number(value)):
        raise invalid_type(param, "an integer" if integer else "a number")
    if value < low:
        raise errors.BadRequest(
            f"Invalid '{param}': expected a value >= {low}.", param=param, code=f"{kind}_below_min_value"
        )
    if value > high:
        raise errors.BadRequest(
            f"Invalid '{param}': expected a value <= {high}.", param=param, code=f"{kind}_above_max_value"
        )


def number(data: dict[str, Any], name: str, low: float, high: float) -> None:
    in_range(data.get(name), name, low, high, integer=False)


def integer(value: Any, param: str, low: int, high: int = INT64_MAX) -> None:
    in_range(value, param, low, high, integer=True)


def boolean(value: Any, param: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise invalid_type(param, "a boolean")


def string(value: Any, param: str) -> None:
    if value is not None and not isinstance(value, str):
        raise invalid_type(param, "a string")


def obj(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_type(param, "an object")
    return value


def required_string(container: dict[str, Any], name: str, param: str) -> str:
    value = container.get(name)
    if value is None:
        raise missing(f"{param}.{name}")
    if not isinstance(value, str):
        raise invalid_type(f"{param}.{name}", "a string")
    return value


def required_object(container: dict[str, Any], name: str, param: str) -> dict[str, Any]:
    value = container.get(name)
    if value is None:
        raise missing(f"{param}.{name}")
    if not isinstance(value, dict):
        raise invalid_type(f"{param}.{name}", "an object")
    return value


def model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise missing("model", "You must provide a model parameter.")
    # It is echoed in error messages and stored with the usage row: keep it to a name's length.
    check_storable(model, "model", MAX_MODEL_NAME)
    return model


def user(data: dict[str, Any]) -> None:
    user = data.get("user")
    if user is None:
        return
    if not isinstance(user, str):
        raise invalid_type("user", "a string")
    check_storable(user, "user", MAX_END_USER)

"""Reading and validating what the client sent, before anything goes upstream.

Every field the gateway reads, translates or stores is checked against OpenAI's documented types
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
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TOKEN_ID = re.compile(r"[0-9]{1,20}")
# A token id in an embeddings request stands for about this many characters of text (the same
# 4-characters-a-token rule as gateway.calls.estimate_tokens, read backwards).
_CHARS_PER_TOKEN = 4


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


def _invalid_type(param: str, expected: str) -> errors.BadRequest:
    return errors.BadRequest(
        f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type"
    )


def _invalid_value(param: str, message: str) -> errors.BadRequest:
    return errors.BadRequest(f"Invalid '{param}': {message}", param=param, code="invalid_value")


def _missing(param: str, message: str | None = None) -> errors.BadRequest:
    return errors.BadRequest(
        message or f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a number


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_storable(value: str, param: str, limit: int) -> None:
    """A string that ends up in the ledger: bounded, no NUL, valid Unicode."""
    if len(value) > limit:
        raise errors.BadRequest(
            f"'{param}' is longer than {limit} characters.", param=param, code="string_above_max_length"
        )
    if "\x00" in value:
        raise _invalid_value(param, "must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (orjson's parser never yields one; callers may)
        raise _invalid_value(param, "must be valid Unicode text.") from exc


def _in_range(value: Any, param: str, low: float, high: float, *, integer: bool) -> None:
    """An optional number (an integer when `integer`) within [low, high], or a 400 naming `param`."""
    if value is None:
        return
    kind = "integer" if integer else "decimal"
    if not (_is_int(value) if integer else _is_number(value)):
        raise _invalid_type(param, "an integer" if integer else "a number")
    if value < low:
        raise errors.BadRequest(
            f"Invalid '{param}': expected a value >= {low}.", param=param, code=f"{kind}_below_min_value"
        )
    if value > high:
        raise errors.BadRequest(
            f"Invalid '{param}': expected a value <= {high}.", param=param, code=f"{kind}_above_max_value"
        )


def _number(data: dict[str, Any], name: str, low: float, high: float) -> None:
    _in_range(data.get(name), name, low, high, integer=False)


def _integer(value: Any, param: str, low: int, high: int = INT64_MAX) -> None:
    _in_range(value, param, low, high, integer=True)


def _boolean(value: Any, param: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise _invalid_type(param, "a boolean")


def _string(value: Any, param: str) -> None:
    if value is not None and not isinstance(value, str):
        raise _invalid_type(param, "a string")


def _object(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid_type(param, "an object")
    return value


def _required_string(container: dict[str, Any], name: str, param: str) -> str:
    value = container.get(name)
    if value is None:
        raise _missing(f"{param}.{name}")
    if not isinstance(value, str):
        raise _invalid_type(f"{param}.{name}", "a string")
    return value


def _required_object(container: dict[str, Any], name: str, param: str) -> dict[str, Any]:
    value = container.get(name)
    if value is None:
        raise _missing(f"{param}.{name}")
    if not isinstance(value, dict):
        raise _invalid_type(f"{param}.{name}", "an object")
    return value


def _model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _missing("model", "You must provide a model parameter.")
    # It is echoed in error messages and stored with the usage row: keep it to a name's length.
    _check_storable(model, "model", MAX_MODEL_NAME)
    return model


def _user(data: dict[str, Any]) -> None:
    user = data.get("user")
    if user is None:
        return
    if not isinstance(user, str):
        raise _invalid_type("user", "a string")
    _check_storable(user, "user", MAX_END_USER)


# -- chat completions ------------------------------------------------------------------------------


def _content(content: Any, param: str) -> int:
    """A message's content: a string, null or an array of parts. Returns its text length."""
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        raise _invalid_type(param, "a string, an array of content parts or null")
    length = 0
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise _invalid_type(where, "an object")
        kind = _required_string(part, "type", where)
        if kind == "text":
            length += len(_required_string(part, "text", where))
        elif kind == "refusal":
            _required_string(part, "refusal", where)
        elif kind == "image_url":
            image = part.get("image_url")
            if isinstance(image, dict):
                _required_string(image, "url", f"{where}.image_url")
            else:
                raise _invalid_type(f"{where}.image_url", "an object with a 'url'")
        elif kind in ("input_audio", "file"):
            _required_object(part, kind, where)
        # Other part types pass through: the upstream that knows them judges them.
    return length


def _tool_calls(value: Any, param: str) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise _invalid_type(param, "an array")
    for index, call in enumerate(value):
        where = f"{param}[{index}]"
        if not isinstance(call, dict):
            raise _invalid_type(where, "an object")
        _required_string(call, "id", where)
        kind = _required_string(call, "type", where)
        if kind == "function":
            function = _required_object(call, "function", where)
            _required_string(function, "name", f"{where}.function")
            _required_string(function, "arguments", f"{where}.function")
        elif kind == "custom":
            custom = _required_object(call, "custom", where)
            _required_string(custom, "name", f"{where}.custom")
            _required_string(custom, "input", f"{where}.custom")
        else:
            raise _invalid_value(f"{where}.type", "expected 'function' or 'custom'.")


def _message(message: Any, param: str) -> int:
    if not isinstance(message, dict):
        raise errors.BadRequest(f"{param} must be an object with a 'role'.", param=param, code="invalid_type")
    role = message.get("role")
    if not isinstance(role, str):
        raise errors.BadRequest(
            f"{param} must be an object with a 'role'.", param=param, code="invalid_value"
        )
    if role not in ROLES:
        raise _invalid_value(f"{param}.role", f"expected one of {', '.join(sorted(ROLES))}.")
    _string(message.get("name"), f"{param}.name")
    if role == "tool":
        _required_string(message, "tool_call_id", param)
    elif role == "function":
        _required_string(message, "name", param)
    elif role == "assistant":
        _tool_calls(message.get("tool_calls"), f"{param}.tool_calls")
        function_call = _object(message.get("function_call"), f"{param}.function_call")
        if function_call is not None:
            _required_string(function_call, "name", f"{param}.function_call")
            _required_string(function_call, "arguments", f"{param}.function_call")
    return _content(message.get("content"), f"{param}.content")


def _function_name(container: dict[str, Any], param: str) -> None:
    name = _required_string(container, "name", param)
    if not _FUNCTION_NAME.fullmatch(name):
        raise _invalid_value(
            f"{param}.name", "must be 1 to 64 characters of a-z, A-Z, 0-9, underscores and dashes."
        )


def _tools(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise _invalid_type("tools", "an array")
    for index, tool in enumerate(value):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise _invalid_type(where, "an object")
        kind = _required_string(tool, "type", where)
        if kind == "function":
            function = _required_object(tool, "function", where)
            _function_name(function, f"{where}.function")
            _string(function.get("description"), f"{where}.function.description")
            _object(function.get("parameters"), f"{where}.function.parameters")
            _boolean(function.get("strict"), f"{where}.function.strict")
        elif kind == "custom":
            custom = _required_object(tool, "custom", where)
            _required_string(custom, "name", f"{where}.custom")
            _string(custom.get("description"), f"{where}.custom.description")
            _object(custom.get("format"), f"{where}.custom.format")
        else:
            raise _invalid_value(f"{where}.type", "expected 'function' or 'custom'.")


def _tool_choice(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if value not in TOOL_CHOICE_MODES:
            raise _invalid_value("tool_choice", "expected 'none', 'auto', 'required' or an object.")
        return
    if not isinstance(value, dict):
        raise _invalid_type("tool_choice", "a string or an object")
    kind = _required_string(value, "type", "tool_choice")
    if kind in ("function", "custom"):
        _required_string(_required_object(value, kind, "tool_choice"), "name", f"tool_choice.{kind}")
    elif kind == "allowed_tools":
        allowed = _required_object(value, "allowed_tools", "tool_choice")
        mode = _required_string(allowed, "mode", "tool_choice.allowed_tools")
        if mode not in ("auto", "required"):
            raise _invalid_value("tool_choice.allowed_tools.mode", "expected 'auto' or 'required'.")
        tools = allowed.get("tools")
        if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
            raise _invalid_type("tool_choice.allowed_tools.tools", "an array of objects")
    else:
        raise _invalid_value("tool_choice.type", "expected 'function', 'custom' or 'allowed_tools'.")


def _stop(value: Any) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid_type("stop", "a string or an array of strings")
    if len(value) > MAX_STOP_SEQUENCES:
        raise errors.BadRequest(
            f"Invalid 'stop': at most {MAX_STOP_SEQUENCES} sequences.",
            param="stop",
            code="array_above_max_length",
        )


def _logit_bias(value: Any) -> None:
    bias = _object(value, "logit_bias")
    if bias is None:
        return
    for token, weight in bias.items():
        if not _TOKEN_ID.fullmatch(token):
            raise _invalid_value("logit_bias", "keys must be token ids (integers, as strings).")
        if not _is_number(weight) or not -100 <= weight <= 100:
            raise _invalid_value("logit_bias", "values must be numbers from -100 to 100.")


def _response_format(value: Any) -> None:
    response_format = _object(value, "response_format")
    if response_format is None:
        return
    kind = _required_string(response_format, "type", "response_format")
    if kind not in RESPONSE_FORMATS:
        raise _invalid_value("response_format.type", "expected 'text', 'json_object' or 'json_schema'.")
    if kind == "json_schema":
        _required_object(response_format, "json_schema", "response_format")


def validate_chat(data: dict[str, Any]) -> tuple[str, int]:
    """Check a chat completion request; returns (model, prompt length in characters)."""
    model = _model(data)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _missing("messages", "'messages' is required and must be a non-empty array.")
    prompt_chars = sum(_message(message, f"messages[{index}]") for index, message in enumerate(messages))
    _integer(data.get("n"), "n", 1, 128)
    _number(data, "temperature", 0, 2)
    _number(data, "top_p", 0, 1)
    _number(data, "presence_penalty", -2, 2)
    _number(data, "frequency_penalty", -2, 2)
    _integer(data.get("max_tokens"), "max_tokens", 1)
    _integer(data.get("max_completion_tokens"), "max_completion_tokens", 1)
    _boolean(data.get("stream"), "stream")
    options = _object(data.get("stream_options"), "stream_options")
    if options is not None:
        _boolean(options.get("include_usage"), "stream_options.include_usage")
    _stop(data.get("stop"))
    _boolean(data.get("logprobs"), "logprobs")
    _integer(data.get("top_logprobs"), "top_logprobs", 0, 20)
    _integer(data.get("seed"), "seed", INT64_MIN)
    _logit_bias(data.get("logit_bias"))
    _response_format(data.get("response_format"))
    _tools(data.get("tools"))
    _tool_choice(data.get("tool_choice"))
    _boolean(data.get("parallel_tool_calls"), "parallel_tool_calls")
    _user(data)
    return model, prompt_chars


# -- embeddings ------------------------------------------------------------------------------------


def _embedding_input(value: Any) -> int:
    """`input`: a string, an array of strings, of token ids, or of token-id arrays. Returns its
    length in characters (token ids counted as the characters they stand for)."""
    if value is None:
        raise _missing("input", "'input' is required: a non-empty string or array.")
    if isinstance(value, str):
        if not value:
            raise _invalid_value("input", "must not be an empty string.")
        return len(value)
    if not isinstance(value, list):
        raise _invalid_type("input", "a string or an array")
    if not value:
        raise _invalid_value("input", "must not be an empty array.")
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise errors.BadRequest(
            f"Invalid 'input': at most {MAX_EMBEDDING_INPUTS} items.",
            param="input",
            code="array_above_max_length",
        )
    first = value[0]
    if isinstance(first, str):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise _invalid_type(f"input[{index}]", "a string, like the other items")
            if not item:
                raise _invalid_value(f"input[{index}]", "must not be an empty string.")
        return sum(len(item) for item in value)
    if _is_int(first):
        for index, item in enumerate(value):
            if not _is_int(item):
                raise _invalid_type(f"input[{index}]", "an integer, like the other items")
        return len(value) * _CHARS_PER_TOKEN
    if isinstance(first, list):
        tokens = 0
        for index, item in enumerate(value):
            if not isinstance(item, list) or not item:
                raise _invalid_type(f"input[{index}]", "a non-empty array of token ids")
            for position, token in enumerate(item):
                if not _is_int(token):
                    raise _invalid_type(f"input[{index}][{position}]", "an integer")
            tokens += len(item)
        return tokens * _CHARS_PER_TOKEN
    raise _invalid_type("input[0]", "a string, an integer or an array of integers")


def validate_embeddings(data: dict[str, Any]) -> tuple[str, int]:
    """Check an embeddings request; returns (model, input length in characters)."""
    model = _model(data)
    prompt_chars = _embedding_input(data.get("input"))
    _integer(data.get("dimensions"), "dimensions", 1)
    encoding_format = data.get("encoding_format")
    if encoding_format is not None and encoding_format not in ("float", "base64"):
        raise _invalid_value("encoding_format", "expected 'float' or 'base64'.")
    _user(data)
    return model, prompt_chars

"""Reading and validating what the client sent, before anything goes upstream."""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from gateway import errors

MAX_MODEL_NAME = 200


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
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.BadRequest(
            "We could not parse the JSON body of your request. Send valid JSON (Content-Type: application/json)."
        ) from exc
    if not isinstance(data, dict):
        raise errors.BadRequest("The request body must be a JSON object.")
    return data


def _require_model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise errors.BadRequest(
            "You must provide a model parameter.", param="model", code="missing_required_parameter"
        )
    if len(model) > MAX_MODEL_NAME:
        # It is echoed in error messages and stored with the usage row: keep it to a name's length.
        raise errors.BadRequest(
            f"'model' is longer than {MAX_MODEL_NAME} characters.", param="model", code="invalid_value"
        )
    return model


def _optional_positive_int(data: dict[str, Any], name: str) -> None:
    value = data.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise errors.BadRequest(f"'{name}' must be a positive integer.", param=name, code="invalid_value")


def _text_length(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return 0


def validate_chat(data: dict[str, Any]) -> tuple[str, int]:
    """Check a chat completion request; returns (model, prompt length in characters)."""
    model = _require_model(data)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.BadRequest(
            "'messages' is required and must be a non-empty array.",
            param="messages",
            code="missing_required_parameter",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise errors.BadRequest(
                f"messages[{index}] must be an object with a 'role'.",
                param=f"messages[{index}]",
                code="invalid_value",
            )
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise errors.BadRequest("'stream' must be true or false.", param="stream", code="invalid_type")
    options = data.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise errors.BadRequest(
            "'stream_options' must be an object.", param="stream_options", code="invalid_type"
        )
    _optional_positive_int(data, "max_tokens")
    _optional_positive_int(data, "max_completion_tokens")
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise errors.BadRequest("'user' must be a string.", param="user", code="invalid_type")
    return model, sum(_text_length(m.get("content")) for m in messages)


def validate_embeddings(data: dict[str, Any]) -> tuple[str, int]:
    model = _require_model(data)
    value = data.get("input")
    if isinstance(value, str) and value:
        return model, len(value)
    if isinstance(value, list) and value:
        return model, sum(len(item) if isinstance(item, str | list) else 1 for item in value)
    raise errors.BadRequest(
        "'input' is required: a non-empty string or array.", param="input", code="missing_required_parameter"
    )

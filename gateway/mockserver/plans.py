"""Request validation: turns a chat completions or embeddings body (plus its directives and the
MockConfig) into a plan of what to answer, raising _BadRequest with OpenAI's messages and params for
anything a real provider would reject with a 400. No I/O happens here; the handlers in app.py act on
the plans."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.mockserver.config import (
    DEFAULT_EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_INPUTS,
    MockConfig,
)
from gateway.mockserver.directives import _BadRequest, _Directives, _parse_directives
from gateway.mockserver.wire import _tokens_for


@dataclass(slots=True)
class _ChatPlan:
    """Everything a chat response needs, resolved from the body, config and directives."""

    directives: _Directives
    model: str
    stream: bool
    include_usage: bool
    completion_tokens: int
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    ttft_s: float
    chunk_s: float


def _message_text(message: Any, index: int) -> str:
    if not isinstance(message, dict):
        raise _BadRequest(f"messages[{index}] must be an object", param=f"messages[{index}]")
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise _BadRequest(
        f"messages[{index}].content must be a string, an array or null", param=f"messages[{index}].content"
    )


def _optional_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int subclass; JSON true is not a valid token limit.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _BadRequest(f"{name} must be a positive integer", param=name)
    return value


def _plan_chat(config: MockConfig, request: web.Request, body: Any, valid: bool) -> _ChatPlan:
    """Validate a chat completions body and resolve tokens, limits and delays (raises _BadRequest)."""
    if not valid:
        raise _BadRequest(
            "We could not parse the JSON body of your request. The request body must be valid JSON."
        )
    if not isinstance(body, dict):
        raise _BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("you must provide a model parameter", param="model")
    messages = body.get("messages")
    if messages is None:
        raise _BadRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty array.", param="messages")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _BadRequest("'stream' must be a boolean.", param="stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise _BadRequest("'stream_options' must be an object.", param="stream_options")
    include_usage = bool(stream_options and stream_options.get("include_usage") is True)

    prompt_tokens = 3
    text = ""
    for index, message in enumerate(messages):
        text = _message_text(message, index)
        prompt_tokens += 4 + _tokens_for(text)
    directives = _parse_directives(request, text)  # `text` is the last message's

    if directives.prompt_tokens is not None:
        prompt_tokens = directives.prompt_tokens
    cached_tokens = directives.cached_tokens or 0
    if cached_tokens > prompt_tokens:
        raise _BadRequest(
            f"invalid mock directive cached_tokens={cached_tokens}: "
            f"exceeds the prompt tokens ({prompt_tokens})",
            param="cached_tokens",
        )

    limits = [
        limit for name in ("max_tokens", "max_completion_tokens") if (limit := _optional_int(body, name))
    ]
    finish_reason = "stop"
    if directives.tokens is not None:
        completion_tokens = directives.tokens
    elif limits and min(limits) < config.tokens:
        completion_tokens = min(limits)
        finish_reason = "length"
    else:
        completion_tokens = config.tokens

    ttft_ms = directives.ttft_ms if directives.ttft_ms is not None else config.ttft_ms
    chunk_ms = directives.chunk_ms if directives.chunk_ms is not None else config.chunk_ms
    return _ChatPlan(
        directives=directives,
        model=model,
        stream=stream is True,
        include_usage=include_usage,
        completion_tokens=completion_tokens,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        cached_tokens=cached_tokens,
        ttft_s=ttft_ms / 1000.0,
        chunk_s=chunk_ms / 1000.0,
    )


def _plan_embeddings(
    request: web.Request, body: Any, valid: bool
) -> tuple[str, list[str], int, int, bool, _Directives]:
    """Validate an embeddings body: (model, input keys, prompt tokens, dimensions, base64?, directives)."""
    if not valid:
        raise _BadRequest(
            "We could not parse the JSON body of your request. The request body must be valid JSON."
        )
    if not isinstance(body, dict):
        raise _BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("you must provide a model parameter", param="model")
    keys, prompt_tokens, first_text = _embedding_inputs(body.get("input"))

    dimensions = body.get("dimensions")
    if dimensions is None:
        dimensions = DEFAULT_EMBEDDING_DIMENSIONS
    elif (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS
    ):
        raise _BadRequest(
            f"dimensions must be an integer in 1..{MAX_EMBEDDING_DIMENSIONS}", param="dimensions"
        )
    encoding_format = body.get("encoding_format")
    if encoding_format not in (None, "float", "base64"):
        raise _BadRequest("encoding_format must be 'float' or 'base64'", param="encoding_format")

    directives = _parse_directives(request, first_text)
    if directives.prompt_tokens is not None:
        prompt_tokens = directives.prompt_tokens
    return model, keys, prompt_tokens, dimensions, encoding_format == "base64", directives


def _embedding_inputs(value: Any) -> tuple[list[str], int, str | None]:
    """Validate ``input``; return (cache keys, prompt tokens, first text input for directives)."""

    def bad(message: str) -> _BadRequest:
        return _BadRequest(message, param="input")

    if isinstance(value, str):
        if not value:
            raise bad("'input' cannot be an empty string.")
        return [value], _tokens_for(value), value
    if not isinstance(value, list) or not value:
        raise bad("'input' must be a non-empty string or array.")
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise bad(f"'input' must have at most {MAX_EMBEDDING_INPUTS} items.")

    def is_token(item: Any) -> bool:
        return isinstance(item, int) and not isinstance(item, bool)

    first = value[0]
    if isinstance(first, str):
        if not all(isinstance(item, str) and item for item in value):
            raise bad("'input' array items must all be non-empty strings.")
        return list(value), sum(_tokens_for(item) for item in value), first
    if is_token(first):
        if not all(is_token(item) for item in value):
            raise bad("'input' token array must contain only integers.")
        return ["tokens:" + ",".join(map(str, value))], len(value), None
    if isinstance(first, list):
        keys = []
        for item in value:
            if not isinstance(item, list) or not item or not all(is_token(token) for token in item):
                raise bad("'input' must be an array of non-empty integer token arrays.")
            keys.append("tokens:" + ",".join(map(str, item)))
        return keys, sum(len(item) for item in value), None
    raise bad("'input' must be a string, an array of strings, or token arrays.")

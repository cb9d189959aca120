"""Request validation: turns a chat completions or embeddings body (plus its directives and the
MockConfig) into a plan of what to answer, raising _BadRequest with OpenAI's messages and params for
anything a real provider would reject with a 400. No I/O happens here; the handlers in app.py act on
the plans."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gateway.mockserver.config import (
    DEFAULT_EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_INPUTS,
    MockConfig,
)
from gateway.mockserver.directives import _BadRequest, _Directives, _parse_directives
from gateway.mockserver.wire import _TOKENS, _tokens_for


@dataclass(slots=True)
class _ToolCall:
    """One tool call of an answer; each wire format derives its ids from `key`."""

    key: str
    name: str
    arguments: str  # compact JSON text of an object
    tokens: int


@dataclass(slots=True)
class _Plan:
    """Everything an answer needs, in any wire format, resolved from the body, config and
    directives: thinking tokens first, then text tokens, then tool calls."""

    directives: _Directives
    model: str
    stream: bool
    prompt_tokens: int
    cached_tokens: int
    text_tokens: int
    finish_reason: str  # "stop" | "length" | "tool_calls"; each format names it its own way
    ttft_s: float
    chunk_s: float
    include_usage: bool = False  # chat streams: stream_options.include_usage
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # of which 1-hour: cache_write_1h_tokens
    cache_write_1h_tokens: int = 0
    tool_calls: list[_ToolCall] = field(default_factory=list)
    include_thoughts: bool = False  # Gemini thinkingConfig.includeThoughts
    encrypted_reasoning: bool = False  # Responses include=["reasoning.encrypted_content"]

    @property
    def completion_tokens(self) -> int:
        return self.reasoning_tokens + self.text_tokens + sum(call.tokens for call in self.tool_calls)


@dataclass(frozen=True, slots=True)
class _Tool:
    name: str
    schema: Any  # the parameters' JSON schema, as the request gave it


@dataclass(frozen=True, slots=True)
class _ToolChoice:
    """A request's tool choice in any format: "auto", "none" or "required", and a forced name."""

    mode: str = "auto"
    name: str | None = None


_AUTO = _ToolChoice()


def _resolve_plan(
    config: MockConfig,
    request: web.Request,
    *,
    model: str,
    stream: bool,
    prompt_tokens: int,
    last_text: str,
    limit: int | None,
    tools: Sequence[_Tool] = (),
    choice: _ToolChoice = _AUTO,
) -> _Plan:
    """The answer every format renders: directives (from `last_text` and the headers) applied to
    the computed prompt tokens, the output limit and the tools (raises _BadRequest)."""
    directives = _parse_directives(request, last_text)
    if directives.prompt_tokens is not None:
        prompt_tokens = directives.prompt_tokens
    cached_tokens = directives.cached_tokens or 0
    write_1h = directives.cache_write_1h_tokens or 0
    cache_write = (directives.cache_write_tokens or 0) + write_1h
    if cached_tokens + cache_write > prompt_tokens:
        raise _BadRequest(
            f"invalid mock directive cached_tokens={cached_tokens}: cached and cache-write tokens "
            f"exceed the prompt tokens ({prompt_tokens})",
            param="cached_tokens",
        )

    calls = directives.tool_calls
    if choice.mode == "none":
        calls = 0
    elif calls is None:
        calls = 1 if choice.mode == "required" else 0
    if calls and not tools:
        raise _BadRequest("the tool_calls directive needs tools in the request", param="tool_calls")
    candidates = [tool for tool in tools if tool.name == choice.name] or list(tools)
    tool_calls = [_tool_call(candidates[i % len(candidates)], i) for i in range(calls)]

    finish_reason = "tool_calls" if tool_calls else "stop"
    if directives.tokens is not None:
        text_tokens = directives.tokens
    elif tool_calls:
        text_tokens = 0
    elif limit is not None and limit < config.tokens:
        text_tokens = limit
        finish_reason = "length"
    else:
        text_tokens = config.tokens

    ttft_ms = directives.ttft_ms if directives.ttft_ms is not None else config.ttft_ms
    chunk_ms = directives.chunk_ms if directives.chunk_ms is not None else config.chunk_ms
    return _Plan(
        directives=directives,
        model=model,
        stream=stream,
        prompt_tokens=prompt_tokens,
        cached_tokens=cached_tokens,
        text_tokens=text_tokens,
        finish_reason=finish_reason,
        ttft_s=ttft_ms / 1000.0,
        chunk_s=chunk_ms / 1000.0,
        reasoning_tokens=directives.reasoning_tokens or 0,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=write_1h,
        tool_calls=tool_calls,
    )


def _tool_call(tool: _Tool, index: int) -> _ToolCall:
    arguments = orjson.dumps(_sample_arguments(tool.schema, index)).decode()
    return _ToolCall(
        key=os.urandom(12).hex(),
        name=tool.name,
        arguments=arguments,
        tokens=_tokens_for(tool.name) + _tokens_for(arguments),
    )


def _sample_arguments(schema: Any, index: int) -> dict[str, Any]:
    """Arguments that fit the tool's declared parameters (one value per property, by type), so an
    SDK or agent that validates them accepts them; {"call": index} when it declares none."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return {"call": index}
    return {str(name): _sample_value(spec, index) for name, spec in properties.items()}


def _sample_value(spec: Any, index: int) -> Any:
    type_ = spec.get("type") if isinstance(spec, dict) else None
    if isinstance(type_, list):
        type_ = next((t for t in type_ if t != "null"), None)
    type_ = type_.lower() if isinstance(type_, str) else "string"
    if isinstance(spec, dict) and isinstance(spec.get("enum"), list) and spec["enum"]:
        return spec["enum"][index % len(spec["enum"])]
    if type_ == "integer":
        return index
    if type_ == "number":
        return index + 0.5
    if type_ == "boolean":
        return index % 2 == 0
    if type_ == "array":
        return []
    if type_ == "object":
        return {}
    return _TOKENS[index % len(_TOKENS)].strip()


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


def _plan_chat(config: MockConfig, request: web.Request, body: Any, valid: bool) -> _Plan:
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

    limits = [
        limit for name in ("max_tokens", "max_completion_tokens") if (limit := _optional_int(body, name))
    ]
    plan = _resolve_plan(
        config,
        request,
        model=model,
        stream=stream is True,
        prompt_tokens=prompt_tokens,
        last_text=text,
        limit=min(limits) if limits else None,
        tools=_chat_tools(body.get("tools")),
        choice=_chat_tool_choice(body.get("tool_choice")),
    )
    plan.include_usage = include_usage
    return plan


def _chat_tools(value: Any) -> list[_Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadRequest("'tools' must be an array.", param="tools")
    tools = []
    for index, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise _BadRequest(
                f"Missing required parameter: 'tools[{index}].function.name'.", param=f"tools[{index}]"
            )
        tools.append(_Tool(name, function.get("parameters")))
    return tools


def _chat_tool_choice(value: Any) -> _ToolChoice:
    if value in (None, "auto"):
        return _AUTO
    if value in ("none", "required"):
        return _ToolChoice(value)
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        return _ToolChoice("required", value["function"].get("name"))
    raise _BadRequest("Invalid value for 'tool_choice'.", param="tool_choice")


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

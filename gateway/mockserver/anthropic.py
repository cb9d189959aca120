"""Anthropic Messages as the mock writes them (``POST /v1/messages`` and
``/v1/messages/count_tokens``): ``x-api-key`` (or bearer) auth and the required ``anthropic-version`` header,
the validation a real Messages API applies (unknown fields, roles, content blocks, tool_use ids
answered by tool_result blocks in the next message, thinking budgets and signatures), Anthropic
error bodies, the message document and the full event stream (message_start, content blocks for
thinking, text and tool_use, message_delta with stop_reason and output usage, message_stop)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.mockserver.config import MockConfig
from gateway.mockserver.dialect import _Script, _Wire
from gateway.mockserver.directives import _BadRequest, _parse_directives
from gateway.mockserver.plans import _AUTO, _Plan, _resolve_plan, _Tool, _ToolChoice
from gateway.mockserver.wire import (
    _JSON_HEADERS,
    _TOKENS,
    _completion_text,
    _halves,
    _new_id,
    _signature,
    _sse,
    _tokens_for,
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "output_format",
        "output_config",
    }
)
_COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"})
_BLOCK_TYPES = frozenset(
    {
        "text",
        "image",
        "document",
        "search_result",
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "container_upload",
    }
)
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
MIN_THINKING_BUDGET = 1024


def _tool_use_id(key: str) -> str:
    return "toolu_" + key[:24]


def _anthropic_error(
    status: int, message: str, *, headers: Mapping[str, str] | None = None, retry_after: str | None = None
) -> web.Response:
    type_ = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    request_id = _new_id("req_")
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}
    response = web.Response(status=status, body=orjson.dumps(body), headers=_JSON_HEADERS)
    response.headers["request-id"] = request_id
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    if headers:
        response.headers.update(headers)
    return response


def _number(body: Mapping[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _BadRequest(f"{name}: Input should be a number between {low:g} and {high:g}", param=name)


def _text_blocks(value: Any, where: str) -> str:
    """A `system` or tool_result content: a string or a list of text blocks -> its text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        text = []
        for index, block in enumerate(value):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise _BadRequest(f"{where}.{index}: Input should be a valid content block", param=where)
            if block["type"] == "text":
                if not isinstance(block.get("text"), str):
                    raise _BadRequest(f"{where}.{index}.text: Field required", param=where)
                text.append(block["text"])
        return "".join(text)
    raise _BadRequest(f"{where}: Input should be a valid string or list of content blocks", param=where)


def _message_text(message: Any, index: int, pending: set[str]) -> tuple[str, set[str]]:
    """Validate messages[index]; return its text and the tool_use ids it opens.

    `pending` are the tool_use ids of the previous (assistant) message: this one must answer each
    with a tool_result, and may answer no other."""
    where = f"messages.{index}"
    if not isinstance(message, dict):
        raise _BadRequest(f"{where}: Input should be a valid dictionary", param=where)
    unknown = set(message) - {"role", "content"}
    if unknown:
        raise _BadRequest(f"{where}.{sorted(unknown)[0]}: Extra inputs are not permitted", param=where)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise _BadRequest(f"{where}.role: Input should be 'user' or 'assistant'", param=where)
    content = message.get("content")
    blocks: list[Any]
    if isinstance(content, str):
        blocks = [{"type": "text", "text": content}]
    elif isinstance(content, list) and content:
        blocks = content
    else:
        raise _BadRequest(f"{where}.content: Input should be a valid string or non-empty list", param=where)

    text: list[str] = []
    opened: set[str] = set()
    answered: set[str] = set()
    for number, block in enumerate(blocks):
        at = f"{where}.content.{number}"
        type_ = block.get("type") if isinstance(block, dict) else None
        if type_ not in _BLOCK_TYPES:
            raise _BadRequest(f"{at}: Input tag {type_!r} found using 'type' does not match", param=where)
        if type_ == "text":
            if not isinstance(block.get("text"), str):
                raise _BadRequest(f"{at}.text: Field required", param=where)
            text.append(block["text"])
        elif type_ == "image":
            source = block.get("source")
            if not isinstance(source, dict) or source.get("type") not in ("base64", "url", "file"):
                raise _BadRequest(f"{at}.source: Input should be a valid image source", param=where)
        elif type_ == "tool_use":
            if role != "assistant":
                raise _BadRequest(f"{at}: tool_use blocks can only be in assistant messages", param=where)
            if not (isinstance(block.get("id"), str) and isinstance(block.get("name"), str)):
                raise _BadRequest(f"{at}: tool_use blocks need an id and a name", param=where)
            if not isinstance(block.get("input"), dict):
                raise _BadRequest(f"{at}.input: Input should be a valid dictionary", param=where)
            opened.add(block["id"])
        elif type_ == "tool_result":
            if role != "user":
                raise _BadRequest(f"{at}: tool_result blocks can only be in user messages", param=where)
            tool_use_id = block.get("tool_use_id")
            if tool_use_id not in pending:
                raise _BadRequest(
                    f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {tool_use_id}. "
                    "Each `tool_result` block must have a corresponding `tool_use` block in the "
                    "previous message.",
                    param=where,
                )
            answered.add(tool_use_id)
            if block.get("content") is not None:
                text.append(_text_blocks(block["content"], f"{at}.content"))
        elif type_ == "thinking":
            thinking, signature = block.get("thinking"), block.get("signature")
            if role != "assistant" or not isinstance(thinking, str):
                raise _BadRequest(f"{at}: thinking blocks belong in assistant messages", param=where)
            if signature != _signature("thinking", thinking):
                raise _BadRequest(f"{at}: Invalid `signature` in `thinking` block", param=where)
    if pending - answered:
        missing = ", ".join(sorted(pending - answered))
        raise _BadRequest(
            f"{where}: `tool_use` ids were found without `tool_result` blocks immediately after: "
            f"{missing}. Each `tool_use` block must have a corresponding `tool_result` block in the "
            "next message.",
            param=where,
        )
    return "".join(text), opened


def _tools(value: Any) -> list[_Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadRequest("tools: Input should be a valid list", param="tools")
    tools = []
    for index, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _BadRequest(f"tools.{index}.name: Field required", param="tools")
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search, bash, ...): the mock never calls those
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise _BadRequest(f"tools.{index}.input_schema: Input should be an object schema", param="tools")
        tools.append(_Tool(tool["name"], schema))
    return tools


def _tool_choice(value: Any, tools: list[_Tool]) -> _ToolChoice:
    if value is None:
        return _AUTO
    type_ = value.get("type") if isinstance(value, dict) else None
    if type_ == "auto":
        return _AUTO
    if type_ == "none":
        return _ToolChoice("none")
    if type_ == "any":
        return _ToolChoice("required")
    if type_ == "tool":
        name = value.get("name")
        if not any(tool.name == name for tool in tools):
            raise _BadRequest(f"tool_choice.name: no tool named {name!r} in tools", param="tool_choice")
        return _ToolChoice("required", name)
    raise _BadRequest(
        "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'", param="tool_choice"
    )


def _prompt(body: Mapping[str, Any]) -> tuple[int, str]:
    """Validate system + messages; return (prompt tokens, the last message's text)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("messages: Field required (a non-empty list)", param="messages")
    prompt_tokens = 3
    if body.get("system") is not None:
        prompt_tokens += 4 + _tokens_for(_text_blocks(body["system"], "system"))
    pending: set[str] = set()
    text = ""
    for index, message in enumerate(messages):
        text, pending = _message_text(message, index, pending)
        prompt_tokens += 4 + _tokens_for(text)
    return prompt_tokens, text


def _check_thinking_turn(messages: list[Any]) -> None:
    """With thinking on, the last assistant turn that called tools must open with its thinking
    (Anthropic checks this; a turn made by another provider has none to show)."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") != "assistant":
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if any(isinstance(b, dict) and b.get("type") == "tool_use" for b in blocks):
            first = blocks[0].get("type") if isinstance(blocks[0], dict) else None
            if first not in ("thinking", "redacted_thinking"):
                raise _BadRequest(
                    f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    f"`{first}`. When `thinking` is enabled, a final `assistant` message must start with a "
                    "thinking block.",
                    param=f"messages.{index}",
                )
        return


def _check_fields(body: Any, valid: bool, request: web.Request, allowed: frozenset[str]) -> None:
    if not valid or not isinstance(body, dict):
        raise _BadRequest("There was an error parsing the body of your request: expected a JSON object.")
    if not request.headers.get("anthropic-version"):
        raise _BadRequest("anthropic-version: header is required", param="anthropic-version")
    unknown = set(body) - allowed
    if unknown:
        name = sorted(unknown)[0]
        raise _BadRequest(f"{name}: Extra inputs are not permitted", param=name)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _BadRequest("model: Field required", param="model")


class _AnthropicWire(_Wire):
    name = "anthropic"
    malformed_body = b'{"id": "msg_broken", "type": "message", "content": ['
    malformed_event = b'event: content_block_delta\ndata: {"type": "content_block_delta", "index\n\n'

    def supplied_credential(self, request: web.Request) -> str:
        # x-api-key; the API (and recent SDKs) also take the key as a bearer token.
        return request.headers.get("x-api-key") or request.headers.get("Authorization", "").removeprefix(
            "Bearer "
        )

    def unauthorized(self, request: web.Request, api_key: str) -> web.Response | None:
        supplied = self.supplied_credential(request)
        if supplied == api_key:
            return None
        message = "x-api-key header is required" if not supplied else "invalid x-api-key"
        return _anthropic_error(401, message)

    def error(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: str | None = None,
    ) -> web.Response:
        return _anthropic_error(status, message, headers=headers, retry_after=retry_after)

    def count_tokens(self, request: web.Request, body: Any, valid: bool) -> int:
        """`/v1/messages/count_tokens`: the prompt tokens a message request would be billed."""
        _check_fields(body, valid, request, _COUNT_FIELDS)
        tools = _tools(body.get("tools"))
        _tool_choice(body.get("tool_choice"), tools)
        prompt_tokens, last_text = _prompt(body)
        directives = _parse_directives(request, last_text)
        return directives.prompt_tokens if directives.prompt_tokens is not None else prompt_tokens

    def plan(self, config: MockConfig, request: web.Request, body: Any, valid: bool) -> _Plan:
        _check_fields(body, valid, request, _FIELDS)
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise _BadRequest("max_tokens: Field required (an integer >= 1)", param="max_tokens")
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise _BadRequest("stream: Input should be a valid boolean", param="stream")
        _number(body, "temperature", 0, 1)
        _number(body, "top_p", 0, 1)
        stop = body.get("stop_sequences")
        if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
            raise _BadRequest("stop_sequences: Input should be a list of strings", param="stop_sequences")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
            raise _BadRequest("metadata: only user_id is permitted", param="metadata")
        tools = _tools(body.get("tools"))
        choice = _tool_choice(body.get("tool_choice"), tools)
        thinking = body.get("thinking")
        if thinking is not None:
            type_ = thinking.get("type") if isinstance(thinking, dict) else None
            if type_ == "enabled":
                budget = thinking.get("budget_tokens")
                if isinstance(budget, bool) or not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
                    raise _BadRequest(
                        f"thinking.enabled.budget_tokens: Input should be greater than or equal to "
                        f"{MIN_THINKING_BUDGET}",
                        param="thinking",
                    )
                if budget >= max_tokens:
                    raise _BadRequest("`max_tokens` must be greater than `thinking.budget_tokens`.")
                if body.get("temperature") not in (None, 1):
                    raise _BadRequest("`temperature` may only be set to 1 when thinking is enabled.")
                if body.get("top_k") is not None:
                    raise _BadRequest("`top_k` must be unset when thinking is enabled.")
                if choice.mode == "required":
                    raise _BadRequest("Thinking may not be enabled when tool_choice forces tool use.")
            elif type_ not in ("disabled", "adaptive"):
                raise _BadRequest("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
        prompt_tokens, last_text = _prompt(body)
        if isinstance(thinking, dict) and thinking.get("type") == "enabled":
            _check_thinking_turn(body["messages"])
        return _resolve_plan(
            config,
            request,
            model=body["model"],
            stream=stream is True,
            prompt_tokens=prompt_tokens,
            last_text=last_text,
            limit=max_tokens,
            tools=tools,
            choice=choice,
        )

    # -- answers -------------------------------------------------------------------------------

    @staticmethod
    def _input_usage(plan: _Plan) -> dict[str, Any]:
        write_1h = plan.cache_write_1h_tokens
        return {
            # Anthropic's input_tokens leave out what was read from or written to the cache.
            "input_tokens": plan.prompt_tokens - plan.cached_tokens - plan.cache_write_tokens,
            "cache_creation_input_tokens": plan.cache_write_tokens,
            "cache_read_input_tokens": plan.cached_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": plan.cache_write_tokens - write_1h,
                "ephemeral_1h_input_tokens": write_1h,
            },
        }

    @staticmethod
    def _text(plan: _Plan, echo: str | None) -> str:
        text = _completion_text(plan.text_tokens)
        return echo + " " + text if echo is not None else text

    def document(self, plan: _Plan, echo: str | None) -> bytes:
        content: list[dict[str, Any]] = []
        if plan.reasoning_tokens:
            thinking = _completion_text(plan.reasoning_tokens)
            content.append(
                {"type": "thinking", "thinking": thinking, "signature": _signature("thinking", thinking)}
            )
        text = self._text(plan, echo)
        if text or not plan.tool_calls:
            content.append({"type": "text", "text": text})
        for call in plan.tool_calls:
            content.append(
                {
                    "type": "tool_use",
                    "id": _tool_use_id(call.key),
                    "name": call.name,
                    "input": orjson.loads(call.arguments),
                }
            )
        usage = self._input_usage(plan)
        usage["output_tokens"] = plan.completion_tokens
        usage["service_tier"] = "standard"
        return orjson.dumps(
            {
                "id": _new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": plan.model,
                "content": content,
                "stop_reason": _STOP_REASONS[plan.finish_reason],
                "stop_sequence": None,
                "usage": usage,
            }
        )

    def script(self, plan: _Plan, echo: str | None) -> _Script:
        start_usage = {**self._input_usage(plan), "output_tokens": min(1, plan.completion_tokens)}
        message: dict[str, Any] = {
            "id": "msg_" + os.urandom(12).hex(),
            "type": "message",
            "role": "assistant",
            "model": plan.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        head = _sse({"type": "message_start", "message": message}, "message_start")
        head += _sse({"type": "ping"}, "ping")

        chunks: list[bytes] = []
        index = 0

        def start(block: dict[str, Any]) -> bytes:
            return _sse(
                {"type": "content_block_start", "index": index, "content_block": block}, "content_block_start"
            )

        def delta(payload: dict[str, Any]) -> bytes:
            return _sse(
                {"type": "content_block_delta", "index": index, "delta": payload}, "content_block_delta"
            )

        def stop() -> bytes:
            return _sse({"type": "content_block_stop", "index": index}, "content_block_stop")

        token_count = len(_TOKENS)
        if plan.reasoning_tokens:
            thinking = _completion_text(plan.reasoning_tokens)
            for i in range(plan.reasoning_tokens):
                chunk = start({"type": "thinking", "thinking": "", "signature": ""}) if i == 0 else b""
                chunk += delta({"type": "thinking_delta", "thinking": _TOKENS[i % token_count]})
                if i == plan.reasoning_tokens - 1:
                    signature = _signature("thinking", thinking)
                    chunk += delta({"type": "signature_delta", "signature": signature}) + stop()
                chunks.append(chunk)
            index += 1
        pieces = ([echo + " "] if echo is not None else []) + [
            _TOKENS[i % token_count] for i in range(plan.text_tokens)
        ]
        if not pieces and not plan.tool_calls:
            chunks.append(start({"type": "text", "text": ""}) + stop())  # an empty answer is one empty block
            index += 1
        for i, piece in enumerate(pieces):
            chunk = start({"type": "text", "text": ""}) if i == 0 else b""
            chunk += delta({"type": "text_delta", "text": piece})
            if i == len(pieces) - 1:
                chunk += stop()
            chunks.append(chunk)
        if pieces:
            index += 1
        for call in plan.tool_calls:
            first, second = _halves(call.arguments)
            block = {"type": "tool_use", "id": _tool_use_id(call.key), "name": call.name, "input": {}}
            chunks.append(start(block) + delta({"type": "input_json_delta", "partial_json": first}))
            chunks.append(delta({"type": "input_json_delta", "partial_json": second}) + stop())
            index += 1

        tail = _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": _STOP_REASONS[plan.finish_reason], "stop_sequence": None},
                "usage": {"output_tokens": plan.completion_tokens},
            },
            "message_delta",
        ) + _sse({"type": "message_stop"}, "message_stop")

        def fail(sent: int) -> bytes:
            error = {"type": "api_error", "message": f"mock fault: stream error after {sent} chunks"}
            return _sse({"type": "error", "error": error}, "error")

        return _Script(head=head, chunks=chunks, tail=tail, fail=fail)

"""Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`): what Claude Code and the
`anthropic` SDK speak (ANTHROPIC_BASE_URL pointed at the gateway).

The key comes as `x-api-key` or a bearer token (gateway/auth.py reads both). `anthropic-version`
is accepted whatever it says; `anthropic-beta` flags are kept on the canonical request and passed
on to Anthropic upstreams only (never an error here). Errors are Anthropic's shape
(`{"type": "error", "error": {"type": "not_found_error", "message": ...}}`) with its statuses, so
the SDK raises its usual exceptions; a stream is Anthropic's full event sequence (message_start,
content_block_start/delta/stop per block, message_delta with the stop reason and usage,
message_stop; `ping` on long waits; an `error` event when the upstream breaks).

Token counts as Anthropic reports them: `input_tokens` excludes the cache reads and writes, which are
`cache_read_input_tokens` and `cache_creation_input_tokens` (canonical prompt_tokens includes both).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from gateway import canonical, errors
from gateway.canonical import FinishReason, Role
from gateway.dialects import fields
from gateway.dialects.base import Codec, Inbound, Route, StreamRenderer, session_from

ROLES = frozenset({"user", "assistant"})
TOOL_CHOICES = frozenset({"auto", "any", "tool", "none"})
MAX_STOP_SEQUENCES = 64
MAX_BETAS = 32
# A client tool has no `type` (or "custom"); server tools (web search, code execution, ...) have a
# dated type and are run by Anthropic itself: only an Anthropic upstream can take them.
CLIENT_TOOL_TYPES = frozenset({"custom"})

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


# -- validation ----------------------------------------------------------------------------------


def _text_of(value: Any, param: str) -> int:
    """`system` or a tool result's `content`: a string or an array of blocks. Returns text length."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, list):
        raise fields.invalid_type(param, "a string or an array of content blocks")
    length = 0
    for index, block in enumerate(value):
        length += _block(block, f"{param}[{index}]", nested=True)
    return length


def _image_source(block: dict[str, Any], where: str) -> None:
    source = fields.required_object(block, "source", where)
    kind = fields.required_string(source, "type", f"{where}.source")
    if kind == "base64":
        fields.required_string(source, "media_type", f"{where}.source")
        fields.required_string(source, "data", f"{where}.source")
    elif kind == "url":
        fields.required_string(source, "url", f"{where}.source")
    elif kind not in ("file", "text", "content"):
        raise fields.invalid_value(f"{where}.source.type", "expected 'base64' or 'url'.")


def _block(block: Any, where: str, *, nested: bool = False) -> int:
    if not isinstance(block, dict):
        raise fields.invalid_type(where, "an object")
    kind = fields.required_string(block, "type", where)
    if kind == "text":
        return len(fields.required_string(block, "text", where))
    if kind in ("image", "document"):
        _image_source(block, where)
        return 0
    if nested:
        if kind in ("search_result",):
            return 0
        raise fields.invalid_value(f"{where}.type", "expected 'text' or 'image' here.")
    if kind == "tool_use":
        fields.required_string(block, "id", where)
        fields.required_string(block, "name", where)
        fields.required_object(block, "input", where)
        return 0
    if kind == "tool_result":
        fields.required_string(block, "tool_use_id", where)
        fields.boolean(block.get("is_error"), f"{where}.is_error")
        return _text_of(block.get("content"), f"{where}.content")
    if kind == "thinking":
        fields.required_string(block, "thinking", where)
        fields.required_string(block, "signature", where)
        return 0
    if kind == "redacted_thinking":
        fields.required_string(block, "data", where)
        return 0
    # server_tool_use, web_search_tool_result, container_upload, ...: Anthropic's own; passed on.
    return 0


def _messages(value: Any) -> int:
    if not isinstance(value, list) or not value:
        raise fields.missing("messages", "messages: field required (a non-empty array).")
    length = 0
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise fields.invalid_type(where, "an object with a 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise fields.invalid_value(f"{where}.role", "expected 'user' or 'assistant'.")
        content = message.get("content")
        if isinstance(content, str):
            length += len(content)
        elif isinstance(content, list):
            for position, block in enumerate(content):
                length += _block(block, f"{where}.content[{position}]")
        else:
            raise fields.invalid_type(f"{where}.content", "a string or an array of content blocks")
    return length


def _tools(value: Any) -> int:
    if value is None:
        return 0
    if not isinstance(value, list):
        raise fields.invalid_type("tools", "an array")
    length = 0
    for index, tool in enumerate(value):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise fields.invalid_type(where, "an object")
        fields.string(tool.get("type"), f"{where}.type")
        name = fields.required_string(tool, "name", where)
        if tool.get("type") in (None, "custom"):
            if not fields.FUNCTION_NAME.fullmatch(name):
                raise fields.invalid_value(
                    f"{where}.name", "must be 1 to 64 characters of a-z, A-Z, 0-9, underscores and dashes."
                )
            fields.required_object(tool, "input_schema", where)
            fields.string(tool.get("description"), f"{where}.description")
            length += len(name) + len(tool.get("description") or "")
    return length


def _tool_choice(value: Any) -> None:
    choice = fields.obj(value, "tool_choice")
    if choice is None:
        return
    kind = fields.required_string(choice, "type", "tool_choice")
    if kind not in TOOL_CHOICES:
        raise fields.invalid_value("tool_choice.type", "expected 'auto', 'any', 'tool' or 'none'.")
    if kind == "tool":
        fields.required_string(choice, "name", "tool_choice")
    fields.boolean(choice.get("disable_parallel_tool_use"), "tool_choice.disable_parallel_tool_use")


def _thinking(value: Any) -> None:
    thinking = fields.obj(value, "thinking")
    if thinking is None:
        return
    kind = fields.required_string(thinking, "type", "thinking")
    if kind == "enabled":
        fields.integer(thinking.get("budget_tokens"), "thinking.budget_tokens", 1)
        if thinking.get("budget_tokens") is None:
            raise fields.missing("thinking.budget_tokens")
    elif kind not in ("disabled", "adaptive"):
        raise fields.invalid_value("thinking.type", "expected 'enabled', 'disabled' or 'adaptive'.")


def _stop_sequences(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise fields.invalid_type("stop_sequences", "an array of strings")
    if len(value) > MAX_STOP_SEQUENCES:
        raise fields.invalid_value("stop_sequences", f"at most {MAX_STOP_SEQUENCES} sequences.")


def _user(body: dict[str, Any]) -> str:
    metadata = fields.obj(body.get("metadata"), "metadata")
    if metadata is None:
        return ""
    user = metadata.get("user_id")
    if user is None:
        return ""
    if not isinstance(user, str):
        raise fields.invalid_type("metadata.user_id", "a string")
    fields.check_storable(user, "metadata.user_id", fields.MAX_END_USER)
    return user


def validate_messages(body: dict[str, Any], *, count_only: bool = False) -> tuple[str, int, str]:
    """Check a Messages request; returns (model, prompt length in characters, end user)."""
    model = fields.model(body)
    length = _messages(body.get("messages")) + _text_of(body.get("system"), "system")
    if not count_only:
        if body.get("max_tokens") is None:
            raise fields.missing("max_tokens", "max_tokens: field required.")
        fields.integer(body.get("max_tokens"), "max_tokens", 1)
    else:
        fields.integer(body.get("max_tokens"), "max_tokens", 1)
    length += _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"))
    _thinking(body.get("thinking"))
    _stop_sequences(body.get("stop_sequences"))
    fields.number(body, "temperature", 0, 1)
    fields.number(body, "top_p", 0, 1)
    fields.integer(body.get("top_k"), "top_k", 0)
    fields.boolean(body.get("stream"), "stream")
    return model, length, _user(body)


def betas_from(headers: Mapping[str, str]) -> list[str]:
    raw = headers.get("anthropic-beta") or ""
    flags = [flag.strip() for flag in raw.split(",") if flag.strip()]
    # Only what a flag can look like goes on (a header value is client text).
    return [flag for flag in flags if len(flag) <= 100 and flag.isascii() and flag.isprintable()][:MAX_BETAS]


# -- Anthropic → canonical -------------------------------------------------------------------------


def _image(block: dict[str, Any]) -> canonical.ImagePart:
    source = block["source"]
    if source["type"] == "base64":
        return canonical.ImagePart(url=f"data:{source['media_type']};base64,{source['data']}")
    if source["type"] == "url":
        return canonical.ImagePart(url=source["url"])
    raise fields.invalid_value(
        "source.type", "only base64 and url images can be sent to this model's provider."
    )


def _content_parts(value: Any) -> list[canonical.TextPart | canonical.ImagePart]:
    if value is None:
        return []
    if isinstance(value, str):
        return [canonical.TextPart(value)]
    parts: list[canonical.TextPart | canonical.ImagePart] = []
    for block in value:
        if block["type"] == "text":
            parts.append(canonical.TextPart(block["text"]))
        elif block["type"] == "image":
            parts.append(_image(block))
    return parts


def _message(message: dict[str, Any]) -> canonical.Message:
    role = Role.USER if message["role"] == "user" else Role.ASSISTANT
    content = message["content"]
    if isinstance(content, str):
        return canonical.Message(role, [canonical.TextPart(content)])
    parts: list[canonical.Part] = []
    for block in content:
        kind = block["type"]
        if kind == "text":
            parts.append(canonical.TextPart(block["text"]))
        elif kind == "image":
            parts.append(_image(block))
        elif kind == "tool_use":
            parts.append(
                canonical.ToolCallPart(
                    id=block["id"], name=block["name"], arguments=orjson.dumps(block["input"]).decode()
                )
            )
        elif kind == "tool_result":
            parts.append(
                canonical.ToolResultPart(
                    tool_call_id=block["tool_use_id"],
                    content=_content_parts(block.get("content")),
                    is_error=bool(block.get("is_error")),
                )
            )
        elif kind == "thinking":
            # Only a signed block is Anthropic's own; an unsigned one (thinking another provider did,
            # as we rendered it) goes back to no provider.
            signature = block["signature"]
            provider = "anthropic" if signature else ""
            parts.append(
                canonical.ThinkingPart(text=block["thinking"], signature=signature, provider=provider)
            )
        elif kind == "redacted_thinking":
            parts.append(canonical.ThinkingPart(redacted=block["data"], provider="anthropic"))
        elif kind == "document":
            raise fields.invalid_value("content.type", "documents can only be sent to an Anthropic upstream.")
        # Anthropic's server-tool blocks have no meaning to another provider: left out.
    return canonical.Message(role, parts)


def _tool_names(messages: list[canonical.Message]) -> None:
    """A tool result names its tool where the client's format says it (Gemini needs the name)."""
    names = {call.id: call.name for message in messages for call in message.tool_calls}
    for message in messages:
        for part in message.content:
            if isinstance(part, canonical.ToolResultPart) and not part.name:
                part.name = names.get(part.tool_call_id, "")


def messages_to_canonical(
    body: dict[str, Any], *, session: str = "", betas: list[str] | None = None
) -> canonical.Request:
    messages: list[canonical.Message] = []
    system = body.get("system")
    if system:
        messages.append(canonical.Message(Role.SYSTEM, list(_content_parts(system))))
    messages.extend(_message(message) for message in body["messages"])
    _tool_names(messages)
    tools = []
    for tool in body.get("tools") or ():
        if tool.get("type") not in (None, "custom"):
            raise fields.invalid_value(
                "tools.type",
                f"the server tool '{tool.get('type')}' can only be used with an Anthropic upstream.",
            )
        tools.append(
            canonical.Tool(
                name=tool["name"], description=tool.get("description") or "", parameters=tool["input_schema"]
            )
        )
    choice = None
    if body.get("tool_choice"):
        tc = body["tool_choice"]
        mode = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}[tc["type"]]
        parallel = (
            None if tc.get("disable_parallel_tool_use") is None else not tc["disable_parallel_tool_use"]
        )
        choice = canonical.ToolChoice(mode=mode, name=tc.get("name") or "", parallel=parallel)
    reasoning = None
    thinking = body.get("thinking")
    if thinking:
        if thinking["type"] == "enabled":
            reasoning = canonical.Reasoning(enabled=True, budget_tokens=thinking.get("budget_tokens"))
        elif thinking["type"] == "disabled":
            reasoning = canonical.Reasoning(enabled=False)
        else:
            reasoning = canonical.Reasoning(enabled=True)
    return canonical.Request(
        model=body["model"],
        messages=messages,
        tools=tools,
        tool_choice=choice,
        sampling=canonical.Sampling(
            temperature=body.get("temperature"),
            top_p=body.get("top_p"),
            top_k=body.get("top_k"),
            stop=list(body.get("stop_sequences") or []),
        ),
        max_output_tokens=body.get("max_tokens"),
        reasoning=reasoning,
        stream=bool(body.get("stream")),
        user=_user(body),
        session=session,
        betas=list(betas or []),
    )


# -- canonical → Anthropic -------------------------------------------------------------------------

STOP_REASONS = {
    FinishReason.STOP: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.CONTENT_FILTER: "refusal",
    FinishReason.ERROR: "end_turn",
}


def usage_body(usage: canonical.Usage) -> dict[str, Any]:
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def _arguments(text: str) -> Any:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _stop_reason(response_reason: FinishReason, has_tool_calls: bool) -> str:
    if has_tool_calls and response_reason in (FinishReason.STOP, FinishReason.TOOL_CALLS):
        return "tool_use"  # a turn that ends in tool calls says so, whatever the upstream said
    return STOP_REASONS[response_reason]


def message_id(upstream_id: str, request_id: str) -> str:
    return upstream_id if upstream_id.startswith("msg_") else f"msg_{request_id}"


def response_body(response: canonical.Response, *, model: str, request_id: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for part in response.content:
        if isinstance(part, canonical.TextPart) and part.text:
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, canonical.ToolCallPart):
            content.append(
                {"type": "tool_use", "id": part.id, "name": part.name, "input": _arguments(part.arguments)}
            )
        elif isinstance(part, canonical.ThinkingPart):
            if part.redacted and part.provider == "anthropic":
                content.append({"type": "redacted_thinking", "data": part.redacted})
            elif part.text:
                # A signature is only valid at the provider that made it; another's thinking goes
                # out unsigned (a client sending it back to us gets it dropped, never forged).
                signature = part.signature if part.provider == "anthropic" else ""
                content.append({"type": "thinking", "thinking": part.text, "signature": signature})
    return {
        "id": message_id(response.id, request_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(response.finish_reason, bool(response.tool_calls)),
        "stop_sequence": None,
        "usage": usage_body(response.usage),
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessagesStream(StreamRenderer):
    """Canonical events → Anthropic's event sequence. Blocks are numbered in the order they start
    (the SDK appends each content_block_start to its message); a tool call's block stays open until
    the message ends, so parallel calls' argument deltas can interleave."""

    def __init__(self, *, model: str, request_id: str) -> None:
        self.model = model
        self.id = f"msg_{request_id}"
        self.started = self.ended = False
        self.blocks = 0
        self.current: tuple[str, int] | None = None  # the open text / thinking block: (kind, index)
        self.tools: dict[int, int] = {}  # tool call index → block index (open)
        self.usage = canonical.Usage()
        self.tool_calls = False
        self.reason: FinishReason | None = None

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_body(self.usage),
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def _close_current(self) -> bytes:
        if self.current is None:
            return b""
        _kind, index = self.current
        self.current = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _open(self, kind: str, block: dict[str, Any]) -> tuple[bytes, int]:
        out = self._close_current()
        index = self.blocks
        self.blocks += 1
        out += _event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )
        return out, index

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def render(self, event: canonical.StreamEvent) -> bytes:
        if isinstance(event, canonical.Start):
            if event.usage is not None:
                self.usage = event.usage
            if event.id.startswith("msg_"):
                self.id = event.id
            return self._start()
        out = self._start()
        if isinstance(event, canonical.TextDelta):
            if self.current is None or self.current[0] != "text":
                opened, index = self._open("text", {"type": "text", "text": ""})
                out += opened
                self.current = ("text", index)
            return out + self._delta(self.current[1], {"type": "text_delta", "text": event.text})
        if isinstance(event, canonical.ThinkingDelta):
            if event.redacted and event.provider == "anthropic":
                opened, index = self._open("redacted", {"type": "redacted_thinking", "data": event.redacted})
                return (
                    out
                    + opened
                    + _event("content_block_stop", {"type": "content_block_stop", "index": index})
                )
            if self.current is None or self.current[0] != "thinking":
                opened, index = self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out += opened
                self.current = ("thinking", index)
            index = self.current[1]
            if event.text:
                out += self._delta(index, {"type": "thinking_delta", "thinking": event.text})
            if event.signature and event.provider == "anthropic":
                out += self._delta(index, {"type": "signature_delta", "signature": event.signature})
            return out
        if isinstance(event, canonical.ToolCallStart):
            self.tool_calls = True
            opened, index = self._open(
                "tool", {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
            )
            self.tools[event.index] = index
            return out + opened
        if isinstance(event, canonical.ToolCallDelta):
            index = self.tools.get(event.index, -1)
            if index < 0:
                return out
            return out + self._delta(index, {"type": "input_json_delta", "partial_json": event.arguments})
        if isinstance(event, canonical.UsageUpdate):
            self.usage = event.usage
            return out
        if isinstance(event, canonical.Finish):
            self.reason = event.reason
        return out

    def keepalive(self) -> bytes:
        return _event("ping", {"type": "ping"})

    def _close_all(self) -> bytes:
        out = self._close_current()
        for index in sorted(self.tools.values()):
            out += _event("content_block_stop", {"type": "content_block_stop", "index": index})
        self.tools.clear()
        return out

    def terminal(self) -> bytes:
        if self.ended:
            return b""
        self.ended = True
        out = self._start() + self._close_all()
        reason = _stop_reason(self.reason or FinishReason.STOP, self.tool_calls)
        out += _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": usage_body(self.usage),
            },
        )
        return out + _event("message_stop", {"type": "message_stop"})

    def error(self, error: errors.GatewayError) -> bytes:
        self.ended = True
        return _event("error", error_body(error))


def error_body(error: errors.GatewayError) -> dict[str, Any]:
    kind = ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


class AnthropicMessages(Codec):
    name: ClassVar[str] = "anthropic_messages"
    endpoint: ClassVar[str] = "messages"
    routes: ClassVar[tuple[Route, ...]] = (
        Route("/v1/messages", "POST", "messages"),
        Route("/v1/messages/count_tokens", "POST", "count_tokens"),
    )

    def parse(self, *, body: dict[str, Any], headers: Mapping[str, str], operation: str) -> Inbound:
        count_only = operation == "count_tokens"
        model, prompt_chars, user = validate_messages(body, count_only=count_only)
        asked = body.get("max_tokens")
        return self._new_inbound(
            operation=operation,
            body=body,
            model=model,
            stream=bool(body.get("stream")) and not count_only,
            user=user,
            session=session_from(headers),
            prompt_chars=prompt_chars,
            output_field="" if count_only else "max_tokens",
            max_output_tokens=asked if isinstance(asked, int) else None,
            betas=betas_from(headers),
        )

    def to_canonical(self, inbound: Inbound) -> canonical.Request:
        return messages_to_canonical(inbound.body, session=inbound.session, betas=inbound.betas)

    def render_response(self, response: canonical.Response, *, inbound: Inbound) -> bytes:
        return orjson.dumps(response_body(response, model=inbound.model, request_id=uuid.uuid4().hex))

    def stream_renderer(self, *, inbound: Inbound, request_id: str) -> MessagesStream:
        return MessagesStream(model=inbound.model, request_id=request_id)

    def error_body(self, error: errors.GatewayError) -> dict[str, Any]:
        return error_body(error)

    def stream_error(self, error: errors.GatewayError) -> bytes:
        return _event("error", error_body(error))

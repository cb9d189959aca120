"""The Anthropic Messages wire format (`POST {base_url}/messages`, base URL up to and including
/v1, key in `x-api-key`).

Canonical → Anthropic: system messages become `system` text blocks; tool results (from TOOL
messages or a user message) become `tool_result` blocks at the head of the next user message
(consecutive user turns merge, so parallel results answer their calls together); tool calls become
`tool_use` blocks with their own ids; thinking goes back only when Anthropic made it (with its
signature); `tool_choice` none/auto/any/tool; temperature (clamped to Anthropic's 0..1) or top_p,
top_k, stop sequences, the output limit (`max_tokens`, required), JSON formats as
`output_config.format`, reasoning as `thinking` with a budget. Anthropic → canonical: text,
thinking (signed, provider "anthropic"), tool_use; stop reasons (tool_use → TOOL_CALLS); usage with
cache reads and writes added into the prompt count; errors; the event stream chunk by chunk.
Pass-through for clients that speak Anthropic Messages (Claude Code)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from gateway import canonical
from gateway.canonical import Usage
from gateway.catalog import DeploymentInfo
from gateway.providers.base import (
    Adapter,
    ProviderError,
    StreamTranslator,
    UpstreamRequest,
    upstream_error,
)
from gateway.providers.sse import Event, EventStreamParser

API_VERSION = "2023-06-01"
# Anthropic requires max_tokens; what to ask when the client set no limit.
DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 24576, "max": 32000}
# Anthropic's beta flags are named `<feature>-<yyyy>-<mm>-<dd>`; anything else a client sends in
# anthropic-beta (an unknown value is a 400 there) is dropped, never an error of ours.
BETA_FLAG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*-\d{4}-\d{2}-\d{2}")
# Anthropic's tool_use ids are [a-zA-Z0-9_-]+; ids made elsewhere are mapped onto that alphabet.
_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")

STOP_REASONS = {
    "end_turn": canonical.FinishReason.STOP,
    "stop_sequence": canonical.FinishReason.STOP,
    "pause_turn": canonical.FinishReason.STOP,
    "max_tokens": canonical.FinishReason.LENGTH,
    "model_context_window_exceeded": canonical.FinishReason.LENGTH,
    "tool_use": canonical.FinishReason.TOOL_CALLS,
    "refusal": canonical.FinishReason.CONTENT_FILTER,
}
KIND = "anthropic"


def _bad_response() -> ProviderError:
    return ProviderError(
        "The upstream provider returned a malformed response.",
        status=502,
        retryable=True,
        kind="bad_response",
    )


def tool_id(value: str) -> str:
    return _ID_UNSAFE.sub("_", value) or "toolu_"


def _arguments(text: str) -> dict[str, Any]:
    """A tool call's JSON text as the object Anthropic wants ({} when it is not one)."""
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _image(part: canonical.ImagePart) -> dict[str, Any]:
    inline = part.inline
    if inline is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _tool_result(part: canonical.ToolResultPart) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for item in part.content:
        if isinstance(item, canonical.TextPart):
            if item.text:
                content.append({"type": "text", "text": item.text})
        else:
            content.append(_image(item))
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": tool_id(part.tool_call_id),
        "content": content,
    }
    if part.is_error:
        block["is_error"] = True
    return block


def _assistant_blocks(message: canonical.Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, canonical.ThinkingPart):
            # Signed thinking goes back only to the provider that signed it; elsewhere it is dropped.
            if part.provider != KIND:
                continue
            if part.redacted:
                blocks.append({"type": "redacted_thinking", "data": part.redacted})
            elif part.signature:
                blocks.append({"type": "thinking", "thinking": part.text, "signature": part.signature})
        elif isinstance(part, canonical.TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, canonical.ToolCallPart):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_id(part.id),
                    "name": part.name,
                    "input": _arguments(part.arguments),
                }
            )
    return blocks


def _messages(request: canonical.Request) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages): consecutive turns of one role merge, tool results first."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            merged = turns[-1]["content"] + blocks
            if role == "user":  # tool_result blocks must lead the user turn that answers
                merged.sort(key=lambda block: block["type"] != "tool_result")
            turns[-1]["content"] = merged
        else:
            turns.append({"role": role, "content": blocks})

    for message in request.messages:
        if message.role == canonical.Role.SYSTEM:
            if message.text:
                system.append({"type": "text", "text": message.text})
        elif message.role == canonical.Role.ASSISTANT:
            add("assistant", _assistant_blocks(message))
        else:  # USER or TOOL
            results = [_tool_result(p) for p in message.content if isinstance(p, canonical.ToolResultPart)]
            others: list[dict[str, Any]] = []
            for part in message.content:
                if isinstance(part, canonical.TextPart) and part.text:
                    others.append({"type": "text", "text": part.text})
                elif isinstance(part, canonical.ImagePart):
                    others.append(_image(part))
            add("user", results + others)
    return system, turns


def _tool_choice(choice: canonical.ToolChoice) -> dict[str, Any]:
    if choice.mode == "none":
        return {"type": "none"}
    out: dict[str, Any] = {"type": {"required": "any", "tool": "tool"}.get(choice.mode, "auto")}
    if choice.mode == "tool":
        out["name"] = choice.name
    if choice.parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _thinking_budget(reasoning: canonical.Reasoning | None) -> int | None:
    if reasoning is None or reasoning.enabled is False:
        return None
    if reasoning.budget_tokens is not None:
        return max(reasoning.budget_tokens, MIN_THINKING_BUDGET)
    if reasoning.effort in EFFORT_BUDGETS:
        return EFFORT_BUDGETS[reasoning.effort]
    return EFFORT_BUDGETS["medium"] if reasoning.enabled else None


def _may_think(messages: list[dict[str, Any]]) -> bool:
    for message in reversed(messages):
        if message["role"] == "assistant":
            blocks = message["content"]
            calls = any(block["type"] == "tool_use" for block in blocks)
            return not calls or blocks[0]["type"] in ("thinking", "redacted_thinking")
    return True


def messages_body(request: canonical.Request, *, model: str) -> dict[str, Any]:
    system, messages = _messages(request)
    max_tokens = request.max_output_tokens or DEFAULT_MAX_TOKENS
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        body["system"] = system
    choice = request.tool_choice
    if request.tools:
        body["tools"] = [
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "input_schema": {"type": "object", **tool.parameters},
            }
            for tool in request.tools
        ]
        if choice is not None:
            body["tool_choice"] = _tool_choice(choice)
    forced = choice is not None and choice.mode in ("required", "tool") and bool(request.tools)
    budget = _thinking_budget(request.reasoning)
    # Anthropic refuses thinking with a forced tool, and after a tool-calling turn that shows no
    # thinking of its own (one made by another provider, or with thinking off).
    if budget is not None and not forced and _may_think(messages):
        if budget >= max_tokens:
            body["max_tokens"] = budget + max_tokens  # the answer keeps the room it asked for
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    else:
        # Sampling is for answers without thinking (Anthropic: temperature 1 with thinking), and
        # current models take temperature or top_p, not both.
        sampling = request.sampling
        if sampling.temperature is not None:
            body["temperature"] = min(max(sampling.temperature, 0.0), 1.0)
        elif sampling.top_p is not None:
            body["top_p"] = sampling.top_p
        if sampling.top_k is not None:
            body["top_k"] = sampling.top_k
    if request.sampling.stop:
        body["stop_sequences"] = list(request.sampling.stop)
    rf = request.response_format
    if rf is not None and rf.type in ("json_object", "json_schema"):
        schema = rf.schema if rf.type == "json_schema" and rf.schema else {"type": "object"}
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if request.user:
        body["metadata"] = {"user_id": request.user[:256]}
    if request.stream:
        body["stream"] = True
    return body


# -- Anthropic → canonical -------------------------------------------------------------------------


def usage_from(data: Any) -> Usage | None:
    """Anthropic's usage; its input_tokens leave out cache reads and writes, which the canonical
    prompt count includes."""
    if not isinstance(data, dict):
        return None

    def count(name: str) -> int:
        value = data.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    read, written = count("cache_read_input_tokens"), count("cache_creation_input_tokens")
    return Usage(
        prompt_tokens=count("input_tokens") + read + written,
        cached_tokens=read,
        cache_write_tokens=written,
        completion_tokens=count("output_tokens"),
        reported=True,
    )


def _content(blocks: Any) -> list[canonical.Part]:
    parts: list[canonical.Part] = []
    for block in blocks if isinstance(blocks, list) else ():
        if not isinstance(block, dict):
            continue
        type_ = block.get("type")
        if type_ == "text" and isinstance(block.get("text"), str):
            parts.append(canonical.TextPart(block["text"]))
        elif type_ == "thinking":
            parts.append(
                canonical.ThinkingPart(
                    text=str(block.get("thinking") or ""),
                    signature=str(block.get("signature") or ""),
                    provider=KIND,
                )
            )
        elif type_ == "redacted_thinking":
            parts.append(canonical.ThinkingPart(redacted=str(block.get("data") or ""), provider=KIND))
        elif type_ == "tool_use":
            parts.append(
                canonical.ToolCallPart(
                    id=str(block.get("id") or ""),
                    name=str(block.get("name") or ""),
                    arguments=orjson.dumps(block.get("input") or {}).decode(),
                )
            )
    return parts


def finish_reason(stop_reason: Any, parts: list[canonical.Part]) -> canonical.FinishReason:
    reason = STOP_REASONS.get(str(stop_reason), canonical.FinishReason.STOP)
    if reason == canonical.FinishReason.STOP and any(isinstance(p, canonical.ToolCallPart) for p in parts):
        return canonical.FinishReason.TOOL_CALLS
    return reason


def parse_messages_response(content: bytes) -> canonical.Response:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise _bad_response() from exc
    if (
        not isinstance(data, dict)
        or data.get("type") != "message"
        or not isinstance(data.get("content"), list)
    ):
        raise _bad_response()
    parts = _content(data["content"])
    return canonical.Response(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        content=parts,
        finish_reason=finish_reason(data.get("stop_reason"), parts),
        usage=usage_from(data.get("usage")) or Usage(),
    )


def stream_broken(data: Any) -> ProviderError:
    error = data.get("error") if isinstance(data, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return ProviderError(
        f"The upstream provider failed mid-stream ({kind or 'error'}).",
        status=502,
        retryable=False,
        kind="upstream_stream_broken",
    )


class MessagesStreamParser(EventStreamParser):
    """Anthropic's event stream → canonical events."""

    def __init__(self, *, credential: str = "") -> None:
        super().__init__(credential=credential)
        self._usage: Usage | None = None
        self._stop_reason: Any = None
        self._blocks: dict[int, str] = {}  # block index → its type
        self._calls: dict[int, int] = {}  # block index → tool call index
        self._saw_call = False

    def read(self, event: Event, out: list[canonical.StreamEvent]) -> None:
        try:
            data = orjson.loads(event.data) if event.data else None
        except orjson.JSONDecodeError:
            return  # a broken event is skipped; a stream without its end is caught as broken
        if not isinstance(data, dict):
            return
        type_ = data.get("type") or event.name
        if type_ == "message_start":
            message: dict[str, Any] = data["message"] if isinstance(data.get("message"), dict) else {}
            self._usage = usage_from(message.get("usage"))
            out.append(
                canonical.Start(
                    id=str(message.get("id") or ""), model=str(message.get("model") or ""), usage=self._usage
                )
            )
        elif type_ == "content_block_start":
            self._block_start(data, out)
        elif type_ == "content_block_delta":
            self._delta(data, out)
        elif type_ == "message_delta":
            delta: dict[str, Any] = data["delta"] if isinstance(data.get("delta"), dict) else {}
            self._stop_reason = delta.get("stop_reason") or self._stop_reason
            self._usage_delta(data.get("usage"))
        elif type_ == "message_stop":
            self.done = True
            if self._usage is not None:
                out.append(canonical.UsageUpdate(self._usage))
            reason = STOP_REASONS.get(str(self._stop_reason), canonical.FinishReason.STOP)
            if reason == canonical.FinishReason.STOP and self._saw_call:
                reason = canonical.FinishReason.TOOL_CALLS
            out.append(canonical.Finish(reason))
        elif type_ == "error":
            raise stream_broken(data)

    def _usage_delta(self, data: Any) -> None:
        """message_delta's usage: cumulative output (and, from newer API versions, input) counts."""
        if not isinstance(data, dict):
            return
        usage = self._usage or Usage(reported=True)
        if isinstance(data.get("output_tokens"), int):
            usage.completion_tokens = data["output_tokens"]
        if isinstance(data.get("input_tokens"), int):
            update = usage_from(data)
            if update is not None:
                usage.prompt_tokens, usage.cached_tokens = update.prompt_tokens, update.cached_tokens
                usage.cache_write_tokens = update.cache_write_tokens
        usage.reported = True
        self._usage = usage

    def _block_start(self, data: dict[str, Any], out: list[canonical.StreamEvent]) -> None:
        index = data.get("index")
        block = data.get("content_block")
        if not isinstance(index, int) or not isinstance(block, dict):
            return
        type_ = str(block.get("type"))
        self._blocks[index] = type_
        if type_ == "tool_use":
            self._saw_call = True
            self._calls[index] = len(self._calls)
            out.append(
                canonical.ToolCallStart(
                    index=self._calls[index], id=str(block.get("id") or ""), name=str(block.get("name") or "")
                )
            )
            if block.get("input"):  # a server that sends the input whole up front
                out.append(canonical.ToolCallDelta(self._calls[index], orjson.dumps(block["input"]).decode()))
        elif type_ == "text" and block.get("text"):
            out.append(canonical.TextDelta(str(block["text"])))
        elif type_ == "thinking":
            out.append(canonical.ThinkingDelta(text=str(block.get("thinking") or ""), provider=KIND))
        elif type_ == "redacted_thinking":
            out.append(canonical.ThinkingDelta(redacted=str(block.get("data") or ""), provider=KIND))

    def _delta(self, data: dict[str, Any], out: list[canonical.StreamEvent]) -> None:
        index = data.get("index")
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            self.chunks += 1
            out.append(canonical.TextDelta(str(delta["text"])))
        elif kind == "thinking_delta":
            self.chunks += 1
            out.append(canonical.ThinkingDelta(text=str(delta.get("thinking") or ""), provider=KIND))
        elif kind == "signature_delta":
            out.append(canonical.ThinkingDelta(signature=str(delta.get("signature") or ""), provider=KIND))
        elif kind == "input_json_delta" and isinstance(index, int) and index in self._calls:
            fragment = str(delta.get("partial_json") or "")
            if fragment:
                self.chunks += 1
                out.append(canonical.ToolCallDelta(self._calls[index], fragment))


class MessagesPassthrough(StreamTranslator):
    """An Anthropic stream relayed as it comes, read for usage and its end (message_stop)."""

    def __init__(self, *, credential: str) -> None:
        self._parser = MessagesStreamParser(credential=credential)
        self.usage = Usage()
        self.done = False
        self.chunks = 0
        self.served_model = ""

    def feed(self, data: bytes) -> bytes:
        return self._relay(self._parser._events.feed(data))

    def finish(self) -> bytes:
        return self._relay(self._parser._events.rest())

    def _relay(self, events: list[Event]) -> bytes:
        out = []
        for event in events:
            seen: list[canonical.StreamEvent] = []
            self._parser.read(event, seen)
            for item in seen:
                if isinstance(item, canonical.Start):
                    self.served_model = item.model
                    self.usage = item.usage or self.usage
                elif isinstance(item, canonical.UsageUpdate):
                    self.usage = item.usage
            out.append(event.raw + b"\n\n")
        self.done = self._parser.done
        self.chunks = self._parser.chunks
        return b"".join(out)


class AnthropicAdapter(Adapter):
    kind: ClassVar[str] = KIND
    label: ClassVar[str] = "Anthropic"
    wire: ClassVar[str] = "anthropic"
    native_dialects: ClassVar[frozenset[str]] = frozenset({"anthropic_messages"})

    def _request(
        self,
        deployment: DeploymentInfo,
        path: str,
        body: dict[str, Any],
        request_id: str,
        betas: Sequence[str] = (),
    ) -> UpstreamRequest:
        headers = {
            "content-type": "application/json",
            "anthropic-version": API_VERSION,
            "x-request-id": request_id,
        }
        if deployment.provider.credential:
            headers["x-api-key"] = deployment.provider.credential
        flags = [flag for flag in betas if BETA_FLAG.fullmatch(flag)]
        if flags:
            headers["anthropic-beta"] = ",".join(dict.fromkeys(flags))
        return UpstreamRequest(
            url=deployment.provider.base_url + path, headers=headers, content=orjson.dumps(body)
        )

    def build_request(
        self, *, deployment: DeploymentInfo, request: canonical.Request, request_id: str
    ) -> UpstreamRequest:
        body = messages_body(request, model=deployment.upstream_model)
        return self._request(deployment, "/messages", body, request_id, request.betas)

    def parse_response(self, *, content: bytes) -> canonical.Response:
        return parse_messages_response(content)

    def stream_parser(self, *, credential: str) -> MessagesStreamParser:
        return MessagesStreamParser(credential=credential)

    def count_tokens_request(
        self, *, deployment: DeploymentInfo, request: canonical.Request, request_id: str
    ) -> UpstreamRequest:
        body = messages_body(request, model=deployment.upstream_model)
        count: dict[str, Any] = {
            key: body[key]
            for key in ("model", "messages", "system", "tools", "tool_choice", "thinking")
            if key in body
        }
        return self._request(deployment, "/messages/count_tokens", count, request_id, request.betas)

    def parse_count_tokens(self, *, content: bytes) -> int:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise _bad_response() from exc
        if not isinstance(data, dict) or not isinstance(data.get("input_tokens"), int):
            raise _bad_response()
        return int(data["input_tokens"])

    def passthrough_request(
        self,
        *,
        deployment: DeploymentInfo,
        dialect: str,
        body: dict[str, Any],
        request: canonical.Request | None,
        request_id: str,
    ) -> UpstreamRequest:
        # Messages only: a count goes through count_tokens_request.
        betas = request.betas if request is not None else []
        return self._request(
            deployment, "/messages", {**body, "model": deployment.upstream_model}, request_id, betas
        )

    def passthrough_response(self, *, dialect: str, content: bytes) -> tuple[bytes, Usage, str]:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise _bad_response() from exc
        if not isinstance(data, dict):
            raise _bad_response()
        return content, usage_from(data.get("usage")) or Usage(), str(data.get("model") or "")

    def passthrough_stream(
        self, *, dialect: str, client_wants_usage: bool, credential: str
    ) -> MessagesPassthrough:
        return MessagesPassthrough(credential=credential)

    def error(
        self, *, status: int, headers: dict[str, str], content: bytes, credential: str
    ) -> ProviderError:
        message = ""
        type_ = ""
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            message = str(error.get("message") or "")
            type_ = str(error.get("type") or "")
        too_long = status == 400 and type_ == "invalid_request_error" and "prompt is too long" in message
        return upstream_error(
            status=status, headers=headers, message=message, credential=credential, context_exceeded=too_long
        )

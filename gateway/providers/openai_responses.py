"""OpenAI's Responses API as an upstream (`POST {base_url}/responses`, bearer key), for OpenAI
models served that way (Codex's wire).

Canonical → Responses: leading system messages become `instructions`, later ones developer
messages; user text and images as `input_text` / `input_image`; assistant text as `output_text`;
tool calls as `function_call` items and tool results as `function_call_output` items, each with its
own call id; encrypted reasoning items go back only when this adapter's upstream made them; function
tools (strict only when asked: the API's default is strict), `tool_choice` incl. none and a named
function, `parallel_tool_calls`, temperature / top_p, `max_output_tokens` (at least 16, the API's
floor), `text.format` for JSON, `reasoning` effort and summary; always `store: false` (Tollhouse
keeps no conversation state). Responses → canonical: message text, function calls, reasoning items
(provider "openai-responses"), status and incomplete reason (a turn with calls ends as TOOL_CALLS),
usage with cached, cache-write and reasoning tokens, errors, the typed event stream. Pass-through for
clients that speak the Responses API."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from gateway import canonical
from gateway.canonical import Usage
from gateway.catalog import DeploymentInfo
from gateway.providers.base import ProviderError, StreamTranslator, UpstreamRequest
from gateway.providers.openai import OpenAIAdapter
from gateway.providers.sse import Event, EventStreamParser

KIND = "openai-responses"
MIN_OUTPUT_TOKENS = 16
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _bad_response() -> ProviderError:
    return ProviderError(
        "The upstream provider returned a malformed response.",
        status=502,
        retryable=True,
        kind="bad_response",
    )


def _user_content(parts: list[canonical.Part]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, canonical.TextPart):
            content.append({"type": "input_text", "text": part.text})
        elif isinstance(part, canonical.ImagePart):
            content.append({"type": "input_image", "image_url": part.url, "detail": part.detail or "auto"})
    return content


def _output(result: canonical.ToolResultPart) -> str:
    text = result.text
    return f"Error: {text}" if result.is_error and not text.startswith("Error") else text


def _input(request: canonical.Request) -> tuple[str, list[dict[str, Any]]]:
    """(instructions, input items)."""
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == canonical.Role.SYSTEM:
            if not items:
                instructions.append(message.text)
            else:
                items.append({"role": "developer", "content": message.text})
        elif message.role == canonical.Role.ASSISTANT:
            for part in message.content:
                if isinstance(part, canonical.ReasoningPart):
                    # Encrypted reasoning goes back only to where it was made, and only whole.
                    if part.provider == KIND and part.encrypted_content:
                        items.append(
                            {
                                "type": "reasoning",
                                "id": part.id,
                                "summary": [{"type": "summary_text", "text": text} for text in part.summary],
                                "encrypted_content": part.encrypted_content,
                            }
                        )
                elif isinstance(part, canonical.TextPart) and part.text:
                    items.append(
                        {"role": "assistant", "content": [{"type": "output_text", "text": part.text}]}
                    )
                elif isinstance(part, canonical.ToolCallPart):
                    items.append(
                        {
                            "type": "function_call",
                            "call_id": part.id,
                            "name": part.name,
                            "arguments": part.arguments,
                        }
                    )
        else:
            for part in message.content:
                if isinstance(part, canonical.ToolResultPart):
                    items.append(
                        {
                            "type": "function_call_output",
                            "call_id": part.tool_call_id,
                            "output": _output(part),
                        }
                    )
            content = _user_content(message.content)
            if content:
                items.append({"role": "user", "content": content})
    return "\n\n".join(text for text in instructions if text), items


def _effort(reasoning: canonical.Reasoning) -> str | None:
    if reasoning.effort:
        return reasoning.effort
    if reasoning.enabled is False:
        return "minimal"
    if reasoning.budget_tokens is not None:
        budget = reasoning.budget_tokens
        return "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"
    return None


def responses_body(request: canonical.Request, *, model: str) -> dict[str, Any]:
    instructions, items = _input(request)
    body: dict[str, Any] = {"model": model, "input": items, "store": False}
    if instructions:
        body["instructions"] = instructions
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "parameters": {"type": "object", **tool.parameters},
                "strict": bool(tool.strict),
            }
            for tool in request.tools
        ]
    choice = request.tool_choice
    if choice is not None and (request.tools or choice.mode == "none"):
        body["tool_choice"] = (
            {"type": "function", "name": choice.name} if choice.mode == "tool" else choice.mode
        )
        if choice.parallel is not None and request.tools:
            body["parallel_tool_calls"] = choice.parallel
    if request.sampling.temperature is not None:
        body["temperature"] = request.sampling.temperature
    if request.sampling.top_p is not None:
        body["top_p"] = request.sampling.top_p
    if request.max_output_tokens is not None:
        body["max_output_tokens"] = max(request.max_output_tokens, MIN_OUTPUT_TOKENS)
    rf = request.response_format
    if rf is not None and rf.type == "json_schema":
        fmt: dict[str, Any] = {
            "type": "json_schema",
            "name": rf.name or "response",
            "schema": rf.schema or {},
        }
        if rf.strict is not None:
            fmt["strict"] = rf.strict
        body["text"] = {"format": fmt}
    elif rf is not None and rf.type == "json_object":
        body["text"] = {"format": {"type": "json_object"}}
    if request.reasoning is not None:
        reasoning: dict[str, Any] = {}
        effort = _effort(request.reasoning)
        if effort:
            reasoning["effort"] = effort
        if request.reasoning.summary:
            reasoning["summary"] = request.reasoning.summary
        body["reasoning"] = reasoning
        # With store off, reasoning survives a turn only as encrypted content the client relays.
        body["include"] = ["reasoning.encrypted_content"]
    if request.user:
        body["user"] = request.user
    if request.stream:
        body["stream"] = True
    return body


# -- Responses → canonical -------------------------------------------------------------------------


def usage_from(data: Any) -> Usage | None:
    if not isinstance(data, dict) or not isinstance(data.get("input_tokens"), int):
        return None

    def count(source: Any, name: str) -> int:
        value = source.get(name) if isinstance(source, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    return Usage(
        prompt_tokens=count(data, "input_tokens"),
        cached_tokens=count(data.get("input_tokens_details"), "cached_tokens"),
        cache_write_tokens=count(data.get("input_tokens_details"), "cache_write_tokens"),
        completion_tokens=count(data, "output_tokens"),
        reasoning_tokens=count(data.get("output_tokens_details"), "reasoning_tokens"),
        reported=True,
    )


def _reasoning(item: dict[str, Any]) -> canonical.ReasoningPart:
    summary = [str(entry.get("text") or "") for entry in item.get("summary") or () if isinstance(entry, dict)]
    return canonical.ReasoningPart(
        id=str(item.get("id") or ""),
        encrypted_content=str(item.get("encrypted_content") or ""),
        summary=summary,
        provider=KIND,
    )


def _items(output: Any) -> list[canonical.Part]:
    parts: list[canonical.Part] = []
    for item in output if isinstance(output, list) else ():
        if not isinstance(item, dict):
            continue
        type_ = item.get("type")
        if type_ == "message":
            for piece in item.get("content") or ():
                if isinstance(piece, dict) and piece.get("type") == "output_text" and piece.get("text"):
                    parts.append(canonical.TextPart(str(piece["text"])))
                elif isinstance(piece, dict) and piece.get("type") == "refusal" and piece.get("refusal"):
                    parts.append(canonical.TextPart(str(piece["refusal"])))
        elif type_ == "function_call":
            parts.append(
                canonical.ToolCallPart(
                    id=str(item.get("call_id") or item.get("id") or ""),
                    name=str(item.get("name") or ""),
                    arguments=str(item.get("arguments") or "{}"),
                )
            )
        elif type_ == "reasoning":
            parts.append(_reasoning(item))
    return parts


def finish_reason(data: dict[str, Any], parts: list[canonical.Part]) -> canonical.FinishReason:
    status = data.get("status")
    if status == "incomplete":
        details = data.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return (
            canonical.FinishReason.CONTENT_FILTER
            if reason == "content_filter"
            else canonical.FinishReason.LENGTH
        )
    if status == "failed":
        return canonical.FinishReason.ERROR
    if any(isinstance(part, canonical.ToolCallPart) for part in parts):
        return canonical.FinishReason.TOOL_CALLS
    return canonical.FinishReason.STOP


def parse_responses_response(content: bytes) -> canonical.Response:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise _bad_response() from exc
    if (
        not isinstance(data, dict)
        or data.get("object") != "response"
        or not isinstance(data.get("output"), list)
    ):
        raise _bad_response()
    parts = _items(data["output"])
    return canonical.Response(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        content=parts,
        finish_reason=finish_reason(data, parts),
        usage=usage_from(data.get("usage")) or Usage(),
    )


def _failed(data: dict[str, Any]) -> ProviderError:
    response = data.get("response") if isinstance(data.get("response"), dict) else data
    error = response.get("error") if isinstance(response, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return ProviderError(
        f"The upstream provider failed mid-stream ({code or 'error'}).",
        status=502,
        retryable=False,
        kind="upstream_stream_broken",
    )


class ResponsesStreamParser(EventStreamParser):
    """The typed event stream → canonical events."""

    def __init__(self, *, credential: str = "") -> None:
        super().__init__(credential=credential)
        self._calls: dict[str, int] = {}  # item id → tool call index
        self._arguments: dict[str, bool] = {}  # item id → arguments streamed already
        self.served_model = ""
        self.usage: Usage | None = None

    def read(self, event: Event, out: list[canonical.StreamEvent]) -> None:
        try:
            data = orjson.loads(event.data) if event.data else None
        except orjson.JSONDecodeError:
            return
        if not isinstance(data, dict):
            return
        type_ = str(data.get("type") or event.name)
        if type_ == "response.created":
            response: dict[str, Any] = data["response"] if isinstance(data.get("response"), dict) else {}
            self.served_model = str(response.get("model") or "")
            out.append(canonical.Start(id=str(response.get("id") or ""), model=self.served_model))
        elif type_ == "response.output_text.delta" and data.get("delta"):
            self.chunks += 1
            out.append(canonical.TextDelta(str(data["delta"])))
        elif type_ == "response.output_item.added":
            item = data.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                key = str(item.get("id") or item.get("call_id") or len(self._calls))
                self._calls[key] = len(self._calls)
                out.append(
                    canonical.ToolCallStart(
                        index=self._calls[key],
                        id=str(item.get("call_id") or item.get("id") or ""),
                        name=str(item.get("name") or ""),
                    )
                )
        elif type_ == "response.function_call_arguments.delta":
            key = str(data.get("item_id") or "")
            if key in self._calls and data.get("delta"):
                self.chunks += 1
                self._arguments[key] = True
                out.append(canonical.ToolCallDelta(self._calls[key], str(data["delta"])))
        elif type_ == "response.output_item.done":
            item = data.get("item")
            if isinstance(item, dict) and item.get("type") == "reasoning":
                out.append(canonical.ReasoningDone(_reasoning(item)))
            elif isinstance(item, dict) and item.get("type") == "function_call":
                key = str(item.get("id") or item.get("call_id") or "")
                if key in self._calls and not self._arguments.get(key) and item.get("arguments"):
                    out.append(canonical.ToolCallDelta(self._calls[key], str(item["arguments"])))
        elif type_ in ("response.completed", "response.incomplete"):
            final: dict[str, Any] = data["response"] if isinstance(data.get("response"), dict) else {}
            self.done = True
            self.usage = usage_from(final.get("usage"))
            if self.usage is not None:
                out.append(canonical.UsageUpdate(self.usage))
            parts: list[canonical.Part] = [canonical.ToolCallPart("", "")] if self._calls else []
            out.append(canonical.Finish(finish_reason(final, parts)))
        elif type_ in ("response.failed", "error"):
            raise _failed(data)


class ResponsesPassthrough(StreamTranslator):
    """A Responses stream relayed as it comes, read for usage and its terminal event."""

    def __init__(self, *, credential: str) -> None:
        self._parser = ResponsesStreamParser(credential=credential)
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
            if event.name in TERMINAL or b'"type":"response.failed"' in event.data:
                self.done = True  # the client has its terminal event, also when it says failed
            if event.name != "response.failed":
                self._parser.read(event, [])
            out.append(event.raw + b"\n\n")
        self.served_model = self._parser.served_model
        self.usage = self._parser.usage or self.usage
        self.done = self.done or self._parser.done
        self.chunks = self._parser.chunks
        return b"".join(out)


class OpenAIResponsesAdapter(OpenAIAdapter):
    """OpenAI's Responses API; OpenAI's error shape and bearer auth, as the chat adapter."""

    kind: ClassVar[str] = KIND
    label: ClassVar[str] = "OpenAI (Responses API)"
    wire: ClassVar[str] = "openai_responses"
    native_dialects: ClassVar[frozenset[str]] = frozenset({"openai_responses"})

    def build_request(
        self, *, deployment: DeploymentInfo, request: canonical.Request, request_id: str
    ) -> UpstreamRequest:
        return self._request(
            deployment, "/responses", responses_body(request, model=deployment.upstream_model), request_id
        )

    def parse_response(self, *, content: bytes) -> canonical.Response:
        return parse_responses_response(content)

    def stream_parser(self, *, credential: str) -> ResponsesStreamParser:  # type: ignore[override]
        return ResponsesStreamParser(credential=credential)

    def passthrough_request(
        self,
        *,
        deployment: DeploymentInfo,
        dialect: str,
        body: dict[str, Any],
        request: canonical.Request | None,
        request_id: str,
    ) -> UpstreamRequest:
        return self._request(
            deployment, "/responses", {**body, "model": deployment.upstream_model}, request_id
        )

    def passthrough_response(self, *, dialect: str, content: bytes) -> tuple[bytes, Usage, str]:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise _bad_response() from exc
        if not isinstance(data, dict):
            raise _bad_response()
        return content, usage_from(data.get("usage")) or Usage(), str(data.get("model") or "")

    def passthrough_stream(  # type: ignore[override]
        self, *, dialect: str, client_wants_usage: bool, credential: str
    ) -> ResponsesPassthrough:
        return ResponsesPassthrough(credential=credential)

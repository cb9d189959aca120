"""The OpenAI wire format: OpenAI itself and every OpenAI-compatible upstream.

Responses and stream chunks are passed through byte for byte; only the chunk carrying usage is
parsed, and it is hidden from clients that did not ask for usage (the gateway always asks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from gateway import canonical
from gateway.catalog import DeploymentInfo
from gateway.providers.base import (
    Adapter,
    ProviderError,
    StreamParser,
    StreamTranslator,
    UpstreamRequest,
    Usage,
    credential_forms,
    not_a_stream,
    redact,
    redact_forms,
    starts_as_document,
    upstream_error,
)

# An answer to a stream request that is a document is kept, up to this size, for the usage the
# upstream reports in it (the upstream bills the call all the same); a larger one fails at once.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024


def usage_from(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    prompt = data.get("prompt_tokens")
    if not isinstance(prompt, int):
        return None
    details = data.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    # OpenAI reports prompt-cache writes too (`cache_write_tokens`, part of prompt_tokens).
    written = details.get("cache_write_tokens") if isinstance(details, dict) else 0
    completion = data.get("completion_tokens")
    return Usage(
        prompt_tokens=prompt,
        cached_tokens=cached if isinstance(cached, int) else 0,
        cache_write_tokens=written if isinstance(written, int) and written > 0 else 0,
        completion_tokens=completion if isinstance(completion, int) else 0,
        reported=True,
    )


class OpenAIStream(StreamTranslator):
    """Server-sent events, split on blank lines; every event but a hidden usage chunk goes out as is."""

    def __init__(self, *, client_wants_usage: bool, credential: str = "") -> None:
        self.client_wants_usage = client_wants_usage
        self._credential_forms = credential_forms(credential)
        self.usage = Usage()
        self.done = False
        self.chunks = 0
        self.served_model = ""
        self._buffer = b""
        self._document: bool | None = None  # what the first non-blank byte said; None: not seen yet

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        if self._document is not False and self._is_document():
            return b""
        if b"\n\n" not in self._buffer and b"\r\n\r\n" not in self._buffer:
            return b""
        if b"\r\n" in self._buffer:
            self._buffer = self._buffer.replace(b"\r\n", b"\n")
        if self._credential_forms:
            # Before any event is read, so not even the served model can carry it. An event stays
            # in the buffer until it is whole, so a quote split across reads is found whole here.
            self._buffer = redact_forms(self._buffer, self._credential_forms)
        *events, self._buffer = self._buffer.split(b"\n\n")
        out = []
        for event in events:
            if self._keep(event):
                out.append(event)
                out.append(b"\n\n")
        return b"".join(out)

    def finish(self) -> bytes:
        if self._document is not False and self._is_document():
            self._read_document()
            raise not_a_stream()
        rest, self._buffer = redact_forms(self._buffer, self._credential_forms), b""
        return rest if rest.strip() and self._keep(rest) else b""

    def _is_document(self) -> bool:
        """Whether the answer is a document, not events (`starts_as_document`): it is then kept
        whole, and nothing of it goes out."""
        if self._document is None:
            if not self._buffer.strip():
                return False
            self._document = starts_as_document(self._buffer)
        if self._document and len(self._buffer) > MAX_DOCUMENT_BYTES:
            raise not_a_stream()
        return self._document

    def _read_document(self) -> None:
        """The usage and model of a JSON completion sent instead of a stream: what the upstream bills."""
        try:
            data = orjson.loads(redact_forms(self._buffer, self._credential_forms))
        except orjson.JSONDecodeError:
            return
        if isinstance(data, dict):
            self.served_model = str(data.get("model") or "")
            self.usage = usage_from(data.get("usage")) or self.usage

    def _keep(self, event: bytes) -> bool:
        if not event.startswith(b"data:"):
            return True  # comments, event:/id: lines: pass through
        payload = event[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return True
        if not self.served_model or b'"usage":{' in payload or b'"usage": {' in payload:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return True
            if not isinstance(chunk, dict):
                return True
            self.served_model = self.served_model or str(chunk.get("model") or "")
            usage = usage_from(chunk.get("usage"))
            if usage is not None:
                self.usage = usage
                if not chunk.get("choices"):
                    return self.client_wants_usage
        # For the estimate when usage never arrives: about one token per content-bearing chunk.
        if b'"content":"' in payload and b'"content":""' not in payload:
            self.chunks += 1
        return True


def bad_response() -> ProviderError:
    return ProviderError(
        "The upstream provider returned a malformed response.",
        status=502,
        retryable=True,
        kind="bad_response",
    )


def canonical_usage(data: Any) -> canonical.Usage | None:
    usage = usage_from(data)
    if usage is None:
        return None
    details = data.get("completion_tokens_details") or {}
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else 0
    usage.reasoning_tokens = reasoning if isinstance(reasoning, int) else 0
    return usage


# -- canonical → chat ----------------------------------------------------------------------------


def _content(parts: Sequence[canonical.Part]) -> str | list[dict[str, Any]] | None:
    if all(isinstance(part, canonical.TextPart) for part in parts):
        text = "".join(part.text for part in parts if isinstance(part, canonical.TextPart))
        return text
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, canonical.TextPart):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, canonical.ImagePart):
            image = {"url": part.url, **({"detail": part.detail} if part.detail else {})}
            out.append({"type": "image_url", "image_url": image})
    return out


def _messages(request: canonical.Request) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == canonical.Role.SYSTEM:
            out.append({"role": "system", "content": message.text})
        elif message.role == canonical.Role.USER:
            parts = [p for p in message.content if isinstance(p, canonical.TextPart | canonical.ImagePart)]
            results = [p for p in message.content if isinstance(p, canonical.ToolResultPart)]
            for result in results:  # Anthropic carries tool results in a user message
                out.append(
                    {"role": "tool", "tool_call_id": result.tool_call_id, "content": _tool_output(result)}
                )
            if parts or not results:
                out.append({"role": "user", "content": _content(parts)})
        elif message.role == canonical.Role.TOOL:
            for part in message.content:
                if isinstance(part, canonical.ToolResultPart):
                    out.append(
                        {"role": "tool", "tool_call_id": part.tool_call_id, "content": _tool_output(part)}
                    )
        else:
            text = message.text
            entry: dict[str, Any] = {"role": "assistant", "content": text or None}
            calls = message.tool_calls
            if calls:
                entry["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ]
            # Thinking and encrypted reasoning are for the provider that made them; chat has no place.
            out.append(entry)
    return out


def _tool_output(result: canonical.ToolResultPart) -> str:
    text = result.text
    return f"Error: {text}" if result.is_error and not text.startswith("Error") else text


def chat_body(request: canonical.Request, *, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": _messages(request)}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    **({"description": t.description} if t.description else {}),
                    "parameters": t.parameters,
                    **({"strict": t.strict} if t.strict is not None else {}),
                },
            }
            for t in request.tools
        ]
    choice = request.tool_choice
    if choice is not None:
        if choice.mode == "tool":
            body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        elif request.tools or choice.mode == "none":
            body["tool_choice"] = choice.mode
        if choice.parallel is not None and request.tools:
            body["parallel_tool_calls"] = choice.parallel
    sampling = request.sampling
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(sampling, name)
        if value is not None:
            body[name] = value
    if sampling.stop:
        body["stop"] = sampling.stop[:4]
    if request.max_output_tokens is not None:
        body["max_completion_tokens"] = request.max_output_tokens
    rf = request.response_format
    if rf is not None and rf.type != "text":
        if rf.type == "json_schema":
            schema: dict[str, Any] = {"name": rf.name or "response", "schema": rf.schema or {}}
            if rf.strict is not None:
                schema["strict"] = rf.strict
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        else:
            body["response_format"] = {"type": "json_object"}
    if request.reasoning is not None and request.reasoning.effort:
        body["reasoning_effort"] = request.reasoning.effort
    if request.user:
        body["user"] = request.user
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


# -- chat → canonical ----------------------------------------------------------------------------

FINISH = {
    "stop": canonical.FinishReason.STOP,
    "length": canonical.FinishReason.LENGTH,
    "tool_calls": canonical.FinishReason.TOOL_CALLS,
    "function_call": canonical.FinishReason.TOOL_CALLS,
    "content_filter": canonical.FinishReason.CONTENT_FILTER,
}


def parse_chat_response(content: bytes) -> canonical.Response:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise bad_response() from exc
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise bad_response()
    choice = data["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise bad_response()
    parts: list[canonical.Part] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        parts.append(canonical.ThinkingPart(text=reasoning))
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append(canonical.TextPart(message["content"]))
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            function = call["function"]
            parts.append(
                canonical.ToolCallPart(
                    id=str(call.get("id") or ""),
                    name=str(function.get("name") or ""),
                    arguments=str(function.get("arguments") or "{}"),
                )
            )
    finish = FINISH.get(str(choice.get("finish_reason")), canonical.FinishReason.STOP)
    return canonical.Response(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        content=parts,
        finish_reason=finish,
        usage=canonical_usage(data.get("usage")) or canonical.Usage(),
    )


class ChatStreamParser(StreamParser):
    """Chat completion chunks → canonical events."""

    def __init__(self, *, credential: str = "") -> None:
        self._forms = credential_forms(credential)
        self._buffer = b""
        self._started = False
        self._finish: canonical.FinishReason | None = None
        self._calls: dict[int, int] = {}  # the upstream's tool call index → ours
        self.usage: canonical.Usage | None = None
        self.done = False
        self.chunks = 0

    def feed(self, data: bytes) -> list[canonical.StreamEvent]:
        self._buffer += data
        if not self._started and self._buffer.strip() and starts_as_document(self._buffer):
            if len(self._buffer) > MAX_DOCUMENT_BYTES:
                raise not_a_stream()
            return []
        if b"\r\n" in self._buffer:
            self._buffer = self._buffer.replace(b"\r\n", b"\n")
        if b"\n\n" not in self._buffer:
            return []
        if self._forms:
            self._buffer = redact_forms(self._buffer, self._forms)
        *events, self._buffer = self._buffer.split(b"\n\n")
        out: list[canonical.StreamEvent] = []
        for event in events:
            self._read(event, out)
        return out

    def finish(self) -> list[canonical.StreamEvent]:
        if not self._started and self._buffer.strip() and starts_as_document(self._buffer):
            raise not_a_stream()
        out: list[canonical.StreamEvent] = []
        if self._buffer.strip():
            self._read(redact_forms(self._buffer, self._forms), out)
        self._buffer = b""
        if self.done and self._finish is None:
            self._finish = canonical.FinishReason.STOP
        if self.done:
            if self.usage is not None:
                out.append(canonical.UsageUpdate(self.usage))
            out.append(canonical.Finish(self._finish or canonical.FinishReason.STOP))
        return out

    def _read(self, event: bytes, out: list[canonical.StreamEvent]) -> None:
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                continue
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(chunk, dict):
                continue
            if isinstance(chunk.get("error"), dict):
                message = str(chunk["error"].get("message") or "")
                raise ProviderError(
                    f"The upstream provider failed mid-stream: {redact(message)}"[:300],
                    status=502,
                    retryable=False,
                    kind="upstream_stream_broken",
                )
            if not self._started:
                self._started = True
                out.append(
                    canonical.Start(id=str(chunk.get("id") or ""), model=str(chunk.get("model") or ""))
                )
            usage = canonical_usage(chunk.get("usage"))
            if usage is not None:
                self.usage = usage
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta") or {}
                if isinstance(delta, dict):
                    self._delta(delta, out)
                reason = choice.get("finish_reason")
                if reason:
                    self._finish = FINISH.get(str(reason), canonical.FinishReason.STOP)

    def _delta(self, delta: dict[str, Any], out: list[canonical.StreamEvent]) -> None:
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            out.append(canonical.ThinkingDelta(text=reasoning))
        text = delta.get("content")
        if isinstance(text, str) and text:
            self.chunks += 1
            out.append(canonical.TextDelta(text))
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            index = call.get("index")
            upstream_index: int = index if isinstance(index, int) else len(self._calls)
            function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
            if upstream_index not in self._calls:
                self._calls[upstream_index] = len(self._calls)
                out.append(
                    canonical.ToolCallStart(
                        index=self._calls[upstream_index],
                        id=str(call.get("id") or ""),
                        name=str(function.get("name") or ""),
                    )
                )
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                self.chunks += 1
                out.append(canonical.ToolCallDelta(index=self._calls[upstream_index], arguments=arguments))


class OpenAIAdapter(Adapter):
    kind: ClassVar[str] = "openai"
    label: ClassVar[str] = "OpenAI"
    wire: ClassVar[str] = "openai"
    native_dialects: ClassVar[frozenset[str]] = frozenset({"openai_chat", "openai_embeddings"})

    def _request(
        self, deployment: DeploymentInfo, path: str, body: dict[str, Any], request_id: str
    ) -> UpstreamRequest:
        headers = {"content-type": "application/json", "x-request-id": request_id}
        if deployment.provider.credential:
            headers["authorization"] = f"Bearer {deployment.provider.credential}"
        return UpstreamRequest(
            url=deployment.provider.base_url + path, headers=headers, content=orjson.dumps(body)
        )

    def build_request(
        self, *, deployment: DeploymentInfo, request: canonical.Request, request_id: str
    ) -> UpstreamRequest:
        body = chat_body(request, model=deployment.upstream_model)
        return self._request(deployment, "/chat/completions", body, request_id)

    def parse_response(self, *, content: bytes) -> canonical.Response:
        return parse_chat_response(content)

    def stream_parser(self, *, credential: str) -> ChatStreamParser:
        return ChatStreamParser(credential=credential)

    def passthrough_request(
        self,
        *,
        deployment: DeploymentInfo,
        dialect: str,
        body: dict[str, Any],
        request: canonical.Request | None,
        request_id: str,
    ) -> UpstreamRequest:
        upstream = {**body, "model": deployment.upstream_model}
        if dialect == "openai_embeddings":
            return self._request(deployment, "/embeddings", upstream, request_id)
        if upstream.get("stream"):
            # Always ask for usage, so every streamed call is billed from the upstream's own figures.
            upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return self._request(deployment, "/chat/completions", upstream, request_id)

    def passthrough_response(self, *, dialect: str, content: bytes) -> tuple[bytes, Usage, str]:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(
                "The upstream provider returned a malformed response.",
                status=502,
                retryable=True,
                kind="bad_response",
            ) from exc
        if not isinstance(data, dict):
            raise ProviderError(
                "The upstream provider returned a malformed response.",
                status=502,
                retryable=True,
                kind="bad_response",
            )
        usage = usage_from(data.get("usage")) or Usage()
        return content, usage, str(data.get("model") or "")

    def passthrough_stream(self, *, dialect: str, client_wants_usage: bool, credential: str) -> OpenAIStream:
        return OpenAIStream(client_wants_usage=client_wants_usage, credential=credential)

    def error(
        self, *, status: int, headers: dict[str, str], content: bytes, credential: str
    ) -> ProviderError:
        message = ""
        data: Any = None
        try:
            data = orjson.loads(content)
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                message = str(data["error"].get("message") or "")
        except orjson.JSONDecodeError:
            pass
        code = (
            data.get("error", {}).get("code")
            if isinstance(data, dict) and isinstance(data.get("error"), dict)
            else None
        )
        return upstream_error(
            status=status,
            headers=headers,
            message=message,
            credential=credential,
            context_exceeded=status == 400 and code == "context_length_exceeded",
        )


class OpenAICompatibleAdapter(OpenAIAdapter):
    """DeepSeek, OpenRouter-style relays, vLLM, Ollama: a base URL and a key, OpenAI's wire format."""

    kind: ClassVar[str] = "openai-compatible"
    label: ClassVar[str] = "OpenAI-compatible"

"""OpenAI Responses (`/v1/responses`): what Codex (`wire_api = "responses"`) and the `openai` SDK's
`responses.create` speak.

To an OpenAI-Responses upstream the body goes through as it is; to any other it is translated:
`instructions`, `input` (a string, or items: messages, `function_call`, `function_call_output`,
`reasoning`), function tools, `tool_choice`, `max_output_tokens`, `reasoning`, `text.format`,
sampling. Tollhouse keeps no conversation state: `previous_response_id` (and `conversation`) can
only go to an upstream that keeps them, and is a 400 naming the field otherwise; `store` is not
kept (nothing is stored). Answers are a `response` object, or the typed stream events
(`response.created`, `response.output_item.added`, `response.output_text.delta`,
`response.function_call_arguments.delta`, ... `response.completed` with usage; `error` and
`response.failed` when the upstream breaks).

Encrypted reasoning items go back verbatim only to the provider that made them (canonical
ReasoningPart.provider); reasoning another provider did is shown as a summary, never encrypted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from gateway import canonical, errors
from gateway.canonical import FinishReason, Role
from gateway.dialects import fields
from gateway.dialects.base import Codec, Inbound, Route, StreamRenderer, session_from

# The adapter kind whose encrypted reasoning a client's reasoning item carries: an OpenAI Responses
# upstream (gateway/providers/openai_responses.py).
RESPONSES_PROVIDER = "openai-responses"
STATEFUL = ("previous_response_id", "conversation")
MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
TOOL_CHOICE_MODES = frozenset({"none", "auto", "required"})
EFFORTS = frozenset({"minimal", "low", "medium", "high", "none", "xhigh"})
FORMATS = frozenset({"text", "json_object", "json_schema"})


# -- validation ----------------------------------------------------------------------------------


def _message_content(content: Any, where: str) -> int:
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        raise fields.invalid_type(where, "a string or an array of content parts")
    length = 0
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        if not isinstance(part, dict):
            raise fields.invalid_type(at, "an object")
        kind = fields.required_string(part, "type", at)
        if kind in ("input_text", "output_text"):
            length += len(fields.required_string(part, "text", at))
        elif kind == "refusal":
            fields.required_string(part, "refusal", at)
        elif kind == "input_image":
            fields.string(part.get("image_url"), f"{at}.image_url")
            fields.string(part.get("file_id"), f"{at}.file_id")
    return length


def _output(value: Any, where: str) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return _message_content(value, where)
    raise fields.invalid_type(where, "a string or an array of content parts")


def _input(value: Any) -> int:
    if value is None:
        raise fields.missing("input", "'input' is required: a string or an array of input items.")
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, list):
        raise fields.invalid_type("input", "a string or an array of input items")
    length = 0
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise fields.invalid_type(where, "an object")
        kind = item.get("type", "message")
        if not isinstance(kind, str):
            raise fields.invalid_type(f"{where}.type", "a string")
        if kind == "message":
            role = item.get("role")
            if role not in MESSAGE_ROLES:
                raise fields.invalid_value(
                    f"{where}.role", "expected 'user', 'assistant', 'system' or 'developer'."
                )
            length += _message_content(item.get("content"), f"{where}.content")
        elif kind == "function_call":
            fields.required_string(item, "call_id", where)
            fields.required_string(item, "name", where)
            length += len(fields.required_string(item, "arguments", where))
        elif kind == "function_call_output":
            fields.required_string(item, "call_id", where)
            if item.get("output") is None:
                raise fields.missing(f"{where}.output")
            length += _output(item["output"], f"{where}.output")
        elif kind == "reasoning":
            summary = item.get("summary")
            if summary is not None and not isinstance(summary, list):
                raise fields.invalid_type(f"{where}.summary", "an array")
            fields.string(item.get("encrypted_content"), f"{where}.encrypted_content")
        # Other items (custom tool calls, shell calls, item references, ...) go to a Responses
        # upstream as they are; a translated call refuses them by name.
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
        kind = fields.required_string(tool, "type", where)
        if kind == "function":
            name = fields.required_string(tool, "name", where)
            if not fields.FUNCTION_NAME.fullmatch(name):
                raise fields.invalid_value(
                    f"{where}.name", "must be 1 to 64 characters of a-z, A-Z, 0-9, underscores and dashes."
                )
            fields.string(tool.get("description"), f"{where}.description")
            fields.obj(tool.get("parameters"), f"{where}.parameters")
            fields.boolean(tool.get("strict"), f"{where}.strict")
            length += len(name) + len(tool.get("description") or "")
    return length


def _tool_choice(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if value not in TOOL_CHOICE_MODES:
            raise fields.invalid_value("tool_choice", "expected 'none', 'auto', 'required' or an object.")
        return
    if not isinstance(value, dict):
        raise fields.invalid_type("tool_choice", "a string or an object")
    kind = fields.required_string(value, "type", "tool_choice")
    if kind == "function":
        fields.required_string(value, "name", "tool_choice")


def _reasoning(value: Any) -> None:
    reasoning = fields.obj(value, "reasoning")
    if reasoning is None:
        return
    effort = reasoning.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise fields.invalid_value("reasoning.effort", "expected 'minimal', 'low', 'medium' or 'high'.")
    fields.string(reasoning.get("summary"), "reasoning.summary")


def _text(value: Any) -> None:
    text = fields.obj(value, "text")
    if text is None:
        return
    fmt = fields.obj(text.get("format"), "text.format")
    if fmt is None:
        return
    kind = fields.required_string(fmt, "type", "text.format")
    if kind not in FORMATS:
        raise fields.invalid_value("text.format.type", "expected 'text', 'json_object' or 'json_schema'.")
    if kind == "json_schema":
        fields.required_object(fmt, "schema", "text.format")


def validate_responses(body: dict[str, Any]) -> tuple[str, int]:
    model = fields.model(body)
    length = _input(body.get("input"))
    fields.string(body.get("instructions"), "instructions")
    length += len(body.get("instructions") or "")
    length += _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"))
    _reasoning(body.get("reasoning"))
    _text(body.get("text"))
    fields.integer(body.get("max_output_tokens"), "max_output_tokens", 1)
    fields.number(body, "temperature", 0, 2)
    fields.number(body, "top_p", 0, 1)
    fields.boolean(body.get("stream"), "stream")
    fields.boolean(body.get("store"), "store")
    fields.boolean(body.get("parallel_tool_calls"), "parallel_tool_calls")
    fields.string(body.get("previous_response_id"), "previous_response_id")
    fields.user(body)
    return model, length


# -- Responses → canonical -------------------------------------------------------------------------


def _parts(content: Any) -> list[canonical.Part]:
    if isinstance(content, str):
        return [canonical.TextPart(content)]
    parts: list[canonical.Part] = []
    for part in content or ():
        kind = part["type"]
        if kind in ("input_text", "output_text"):
            parts.append(canonical.TextPart(part["text"]))
        elif kind == "refusal":
            parts.append(canonical.TextPart(part["refusal"]))
        elif kind == "input_image" and part.get("image_url"):
            parts.append(canonical.ImagePart(url=part["image_url"], detail=str(part.get("detail") or "")))
        else:
            raise fields.invalid_value(
                "input.content.type", f"'{kind}' parts can only be sent to an OpenAI Responses upstream."
            )
    return parts


def _assistant(messages: list[canonical.Message]) -> canonical.Message:
    """The assistant turn items add to: function calls and reasoning join the message before them."""
    if messages and messages[-1].role == Role.ASSISTANT:
        return messages[-1]
    messages.append(canonical.Message(Role.ASSISTANT, []))
    return messages[-1]


def responses_to_canonical(body: dict[str, Any], *, session: str = "") -> canonical.Request:
    for name in STATEFUL:
        if body.get(name):
            raise errors.BadRequest(
                f"'{name}' needs the upstream to keep conversation state, and this model's provider does "
                "not (Tollhouse keeps none): send the whole conversation in 'input' instead.",
                param=name,
                code="unsupported_parameter",
            )
    messages: list[canonical.Message] = []
    if body.get("instructions"):
        messages.append(canonical.Message(Role.SYSTEM, [canonical.TextPart(body["instructions"])]))
    value = body["input"]
    if isinstance(value, str):
        messages.append(canonical.Message(Role.USER, [canonical.TextPart(value)]))
    else:
        names: dict[str, str] = {}
        for item in value:
            kind = item.get("type", "message")
            if kind == "message":
                role = {"user": Role.USER, "assistant": Role.ASSISTANT}.get(item["role"], Role.SYSTEM)
                parts = _parts(item["content"])
                if role == Role.ASSISTANT:
                    _assistant(messages).content.extend(parts)
                else:
                    messages.append(canonical.Message(role, parts))
            elif kind == "function_call":
                names[item["call_id"]] = item["name"]
                _assistant(messages).content.append(
                    canonical.ToolCallPart(
                        id=item["call_id"], name=item["name"], arguments=item["arguments"] or "{}"
                    )
                )
            elif kind == "function_call_output":
                output = item["output"]
                content: list[canonical.TextPart | canonical.ImagePart] = (
                    [canonical.TextPart(output)]
                    if isinstance(output, str)
                    else [
                        p for p in _parts(output) if isinstance(p, canonical.TextPart | canonical.ImagePart)
                    ]
                )
                result = canonical.ToolResultPart(
                    tool_call_id=item["call_id"], content=content, name=names.get(item["call_id"], "")
                )
                last = messages[-1] if messages else None
                if last is not None and last.role == Role.TOOL:
                    last.content.append(result)
                else:
                    messages.append(canonical.Message(Role.TOOL, [result]))
            elif kind == "reasoning":
                summary = [s.get("text", "") for s in item.get("summary") or () if isinstance(s, dict)]
                encrypted = item.get("encrypted_content") or ""
                _assistant(messages).content.append(
                    canonical.ReasoningPart(
                        id=str(item.get("id") or ""),
                        encrypted_content=encrypted,
                        summary=[s for s in summary if isinstance(s, str)],
                        provider=RESPONSES_PROVIDER if encrypted else "",
                    )
                )
            else:
                raise fields.invalid_value(
                    "input.type", f"'{kind}' items can only be sent to an OpenAI Responses upstream."
                )
    tools = []
    for tool in body.get("tools") or ():
        if tool["type"] != "function":
            raise fields.invalid_value(
                "tools.type", f"the '{tool['type']}' tool can only be used with an OpenAI Responses upstream."
            )
        tools.append(
            canonical.Tool(
                name=tool["name"],
                description=tool.get("description") or "",
                parameters=tool.get("parameters") or {"type": "object", "properties": {}},
                strict=tool.get("strict"),
            )
        )
    choice = None
    parallel = body.get("parallel_tool_calls")
    tc = body.get("tool_choice")
    if isinstance(tc, str):
        choice = canonical.ToolChoice(mode=tc, parallel=parallel)
    elif isinstance(tc, dict):
        if tc["type"] != "function":
            raise fields.invalid_value(
                "tool_choice.type", "only function tools can be chosen for this model."
            )
        choice = canonical.ToolChoice(mode="tool", name=tc["name"], parallel=parallel)
    elif isinstance(parallel, bool):
        choice = canonical.ToolChoice(parallel=parallel)
    response_format = None
    fmt = (body.get("text") or {}).get("format")
    if fmt:
        response_format = canonical.ResponseFormat(
            type=fmt["type"],
            schema=fmt.get("schema"),
            name=str(fmt.get("name") or ""),
            strict=fmt.get("strict"),
        )
    reasoning = None
    if body.get("reasoning"):
        r = body["reasoning"]
        effort = r.get("effort")
        reasoning = canonical.Reasoning(
            effort=effort if effort != "none" else None,
            summary=r.get("summary"),
            enabled=False if effort == "none" else (True if effort else None),
        )
    return canonical.Request(
        model=body["model"],
        messages=messages,
        tools=tools,
        tool_choice=choice,
        sampling=canonical.Sampling(temperature=body.get("temperature"), top_p=body.get("top_p")),
        max_output_tokens=body.get("max_output_tokens"),
        response_format=response_format,
        reasoning=reasoning,
        stream=bool(body.get("stream")),
        user=body.get("user") or "",
        session=session,
    )


# -- canonical → Responses -------------------------------------------------------------------------


def usage_body(usage: canonical.Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]
        if status == "completed"
        else [],
    }


def _call_item(item_id: str, call: canonical.ToolCallPart, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments if status == "completed" else "",
        "status": status,
    }


def _reasoning_item(item_id: str, summary: str, encrypted: str = "") -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": item_id,
        "summary": [{"type": "summary_text", "text": summary}] if summary else [],
    }
    if encrypted:
        item["encrypted_content"] = encrypted
    return item


def _shell(response_id: str, model: str, inbound: Inbound, status: str) -> dict[str, Any]:
    body = inbound.body
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": [],
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "text": body.get("text") or {"format": {"type": "text"}},
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "truncation": "disabled",
        "store": False,
        "metadata": body.get("metadata") or {},
    }


def _finish(shell: dict[str, Any], reason: FinishReason) -> None:
    if reason == FinishReason.LENGTH:
        shell["status"], shell["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    elif reason == FinishReason.CONTENT_FILTER:
        shell["status"], shell["incomplete_details"] = "incomplete", {"reason": "content_filter"}
    else:
        shell["status"] = "completed"


def response_body(response: canonical.Response, *, inbound: Inbound, request_id: str) -> dict[str, Any]:
    shell = _shell(f"resp_{request_id}", inbound.model, inbound, "completed")
    output: list[dict[str, Any]] = []
    for index, part in enumerate(response.content):
        if isinstance(part, canonical.TextPart) and part.text:
            output.append(_message_item(f"msg_{request_id}_{index}", part.text))
        elif isinstance(part, canonical.ToolCallPart):
            output.append(_call_item(f"fc_{request_id}_{index}", part))
        elif isinstance(part, canonical.ReasoningPart):
            encrypted = part.encrypted_content if part.provider == RESPONSES_PROVIDER else ""
            output.append(
                _reasoning_item(part.id or f"rs_{request_id}_{index}", "".join(part.summary), encrypted)
            )
        elif isinstance(part, canonical.ThinkingPart) and part.text:
            output.append(_reasoning_item(f"rs_{request_id}_{index}", part.text))
    shell["output"] = output
    shell["usage"] = usage_body(response.usage)
    _finish(shell, response.finish_reason)
    return shell


class ResponsesStream(StreamRenderer):
    """Canonical events → the Responses API's typed events, numbered by `sequence_number`."""

    def __init__(self, *, inbound: Inbound, request_id: str) -> None:
        self.inbound = inbound
        self.request_id = request_id
        self.shell = _shell(f"resp_{request_id}", inbound.model, inbound, "in_progress")
        self.sequence = 0
        self.output: list[tuple[int, dict[str, Any]]] = []  # finished items, with their output index
        self.started = self.ended = False
        self.text: tuple[int, str, list[str]] | None = None  # the open message: (index, id, text)
        self.thinking: tuple[int, str, list[str]] | None = None
        self.calls: dict[int, tuple[int, dict[str, Any], list[str]]] = {}  # tool index → open item
        self.usage = canonical.Usage()
        self.reason = FinishReason.STOP

    def _event(self, kind: str, **data: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return self._event("response.created", response=self.shell) + self._event(
            "response.in_progress", response=self.shell
        )

    def _next_index(self) -> int:
        return len(self.output) + (self.text is not None) + (self.thinking is not None) + len(self.calls)

    def _close_text(self) -> bytes:
        if self.text is None:
            return b""
        index, item_id, chunks = self.text
        self.text = None
        text = "".join(chunks)
        part = {"type": "output_text", "text": text, "annotations": []}
        item = _message_item(item_id, text)
        self.output.append((index, item))
        return (
            self._event(
                "response.output_text.done",
                item_id=item_id,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            )
            + self._event(
                "response.content_part.done", item_id=item_id, output_index=index, content_index=0, part=part
            )
            + self._event("response.output_item.done", output_index=index, item=item)
        )

    def _close_thinking(self) -> bytes:
        if self.thinking is None:
            return b""
        index, item_id, chunks = self.thinking
        self.thinking = None
        text = "".join(chunks)
        item = _reasoning_item(item_id, text)
        self.output.append((index, item))
        out = b""
        if text:
            part = {"type": "summary_text", "text": text}
            out += self._event(
                "response.reasoning_summary_text.done",
                item_id=item_id,
                output_index=index,
                summary_index=0,
                text=text,
            )
            out += self._event(
                "response.reasoning_summary_part.done",
                item_id=item_id,
                output_index=index,
                summary_index=0,
                part=part,
            )
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _close_calls(self) -> bytes:
        out = b""
        for index, item, chunks in sorted(self.calls.values(), key=lambda entry: entry[0]):
            item["arguments"] = "".join(chunks) or "{}"
            item["status"] = "completed"
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
            out += self._event("response.output_item.done", output_index=index, item=item)
            self.output.append((index, item))
        self.calls.clear()
        return out

    def render(self, event: canonical.StreamEvent) -> bytes:
        out = self._start()
        if isinstance(event, canonical.Start):
            if event.usage is not None:
                self.usage = event.usage
            return out
        if isinstance(event, canonical.TextDelta):
            if self.text is None:
                out += self._close_thinking()
                index = self._next_index()
                item_id = f"msg_{self.request_id}_{index}"
                self.text = (index, item_id, [])
                out += self._event(
                    "response.output_item.added",
                    output_index=index,
                    item=_message_item(item_id, "", "in_progress"),
                )
                out += self._event(
                    "response.content_part.added",
                    item_id=item_id,
                    output_index=index,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": []},
                )
            index, item_id, chunks = self.text
            chunks.append(event.text)
            return out + self._event(
                "response.output_text.delta",
                item_id=item_id,
                output_index=index,
                content_index=0,
                delta=event.text,
                logprobs=[],
            )
        if isinstance(event, canonical.ThinkingDelta):
            if not event.text:
                return out
            if self.thinking is None:
                out += self._close_text()
                index = self._next_index()
                item_id = f"rs_{self.request_id}_{index}"
                self.thinking = (index, item_id, [])
                out += self._event(
                    "response.output_item.added", output_index=index, item=_reasoning_item(item_id, "")
                )
                out += self._event(
                    "response.reasoning_summary_part.added",
                    item_id=item_id,
                    output_index=index,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                )
            index, item_id, chunks = self.thinking
            chunks.append(event.text)
            return out + self._event(
                "response.reasoning_summary_text.delta",
                item_id=item_id,
                output_index=index,
                summary_index=0,
                delta=event.text,
            )
        if isinstance(event, canonical.ReasoningDone):
            out += self._close_text() + self._close_thinking()
            index = self._next_index()
            part = event.part
            encrypted = part.encrypted_content if part.provider == RESPONSES_PROVIDER else ""
            item = _reasoning_item(
                part.id or f"rs_{self.request_id}_{index}", "".join(part.summary), encrypted
            )
            self.output.append((index, item))
            return (
                out
                + self._event("response.output_item.added", output_index=index, item=item)
                + self._event("response.output_item.done", output_index=index, item=item)
            )
        if isinstance(event, canonical.ToolCallStart):
            out += self._close_text() + self._close_thinking()
            index = self._next_index()
            call = canonical.ToolCallPart(id=event.id, name=event.name)
            item = _call_item(f"fc_{self.request_id}_{index}", call, "in_progress")
            self.calls[event.index] = (index, item, [])
            return out + self._event("response.output_item.added", output_index=index, item=dict(item))
        if isinstance(event, canonical.ToolCallDelta):
            if event.index not in self.calls:
                return out
            index, item, chunks = self.calls[event.index]
            chunks.append(event.arguments)
            return out + self._event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=index,
                delta=event.arguments,
            )
        if isinstance(event, canonical.UsageUpdate):
            self.usage = event.usage
        elif isinstance(event, canonical.Finish):
            self.reason = event.reason
        return out

    def terminal(self) -> bytes:
        if self.ended:
            return b""
        self.ended = True
        out = self._start() + self._close_text() + self._close_thinking() + self._close_calls()
        self.shell["output"] = [item for _index, item in sorted(self.output, key=lambda entry: entry[0])]
        self.shell["usage"] = usage_body(self.usage)
        _finish(self.shell, self.reason)
        kind = "response.completed" if self.shell["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, response=self.shell)

    def error(self, error: errors.GatewayError) -> bytes:
        self.ended = True
        out = self._start()
        out += self._event("error", code=error.code, message=error.message, param=error.param)
        self.shell["status"] = "failed"
        self.shell["error"] = {"code": error.code or "server_error", "message": error.message}
        self.shell["usage"] = usage_body(self.usage)
        return out + self._event("response.failed", response=self.shell)


class OpenAIResponses(Codec):
    name: ClassVar[str] = "openai_responses"
    endpoint: ClassVar[str] = "responses"
    routes: ClassVar[tuple[Route, ...]] = (Route("/v1/responses", "POST", "responses"),)

    def parse(self, *, body: dict[str, Any], headers: Mapping[str, str], operation: str) -> Inbound:
        model, prompt_chars = validate_responses(body)
        asked = body.get("max_output_tokens")
        return self._new_inbound(
            operation=operation,
            body=body,
            model=model,
            stream=bool(body.get("stream")),
            user=body.get("user") or "",
            session=session_from(headers),
            prompt_chars=prompt_chars,
            output_field="max_output_tokens",
            max_output_tokens=asked if isinstance(asked, int) else None,
        )

    def to_canonical(self, inbound: Inbound) -> canonical.Request:
        return responses_to_canonical(inbound.body, session=inbound.session)

    def render_response(self, response: canonical.Response, *, inbound: Inbound) -> bytes:
        return orjson.dumps(response_body(response, inbound=inbound, request_id=uuid.uuid4().hex))

    def stream_renderer(self, *, inbound: Inbound, request_id: str) -> ResponsesStream:
        return ResponsesStream(inbound=inbound, request_id=request_id)

    def stream_error(self, error: errors.GatewayError) -> bytes:
        data = {"type": "error", "code": error.code, "message": error.message, "param": error.param}
        return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"

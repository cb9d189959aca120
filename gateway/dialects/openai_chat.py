"""OpenAI chat completions (`/v1/chat/completions`): the dialect most clients speak.

To an OpenAI-format upstream the client's body goes through as it is (pass-through, the fast path);
to any other it is translated through the canonical request (`to_canonical`), and the answer and
stream rendered back as chat completions and chunks (`render_response`, `ChatStream`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from gateway import canonical, errors
from gateway.canonical import FinishReason, Role
from gateway.dialects import fields
from gateway.dialects.base import Codec, Inbound, Route, StreamRenderer, session_from


def _content(content: Any, param: str) -> int:
    """A message's content: a string, null or an array of parts. Returns its text length."""
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        raise fields.invalid_type(param, "a string, an array of content parts or null")
    length = 0
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise fields.invalid_type(where, "an object")
        kind = fields.required_string(part, "type", where)
        if kind == "text":
            length += len(fields.required_string(part, "text", where))
        elif kind == "refusal":
            fields.required_string(part, "refusal", where)
        elif kind == "image_url":
            image = part.get("image_url")
            if isinstance(image, dict):
                fields.required_string(image, "url", f"{where}.image_url")
            else:
                raise fields.invalid_type(f"{where}.image_url", "an object with a 'url'")
        elif kind in ("input_audio", "file"):
            fields.required_object(part, kind, where)
        # Other part types pass through: the upstream that knows them judges them.
    return length


def _tool_calls(value: Any, param: str) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise fields.invalid_type(param, "an array")
    for index, call in enumerate(value):
        where = f"{param}[{index}]"
        if not isinstance(call, dict):
            raise fields.invalid_type(where, "an object")
        fields.required_string(call, "id", where)
        kind = fields.required_string(call, "type", where)
        if kind == "function":
            function = fields.required_object(call, "function", where)
            fields.required_string(function, "name", f"{where}.function")
            fields.required_string(function, "arguments", f"{where}.function")
        elif kind == "custom":
            custom = fields.required_object(call, "custom", where)
            fields.required_string(custom, "name", f"{where}.custom")
            fields.required_string(custom, "input", f"{where}.custom")
        else:
            raise fields.invalid_value(f"{where}.type", "expected 'function' or 'custom'.")


def _message(message: Any, param: str) -> int:
    if not isinstance(message, dict):
        raise errors.BadRequest(f"{param} must be an object with a 'role'.", param=param, code="invalid_type")
    role = message.get("role")
    if not isinstance(role, str):
        raise errors.BadRequest(
            f"{param} must be an object with a 'role'.", param=param, code="invalid_value"
        )
    if role not in fields.ROLES:
        raise fields.invalid_value(f"{param}.role", f"expected one of {', '.join(sorted(fields.ROLES))}.")
    fields.string(message.get("name"), f"{param}.name")
    if role == "tool":
        fields.required_string(message, "tool_call_id", param)
    elif role == "function":
        fields.required_string(message, "name", param)
    elif role == "assistant":
        _tool_calls(message.get("tool_calls"), f"{param}.tool_calls")
        function_call = fields.obj(message.get("function_call"), f"{param}.function_call")
        if function_call is not None:
            fields.required_string(function_call, "name", f"{param}.function_call")
            fields.required_string(function_call, "arguments", f"{param}.function_call")
    return _content(message.get("content"), f"{param}.content")


def _function_name(container: dict[str, Any], param: str) -> None:
    name = fields.required_string(container, "name", param)
    if not fields.FUNCTION_NAME.fullmatch(name):
        raise fields.invalid_value(
            f"{param}.name", "must be 1 to 64 characters of a-z, A-Z, 0-9, underscores and dashes."
        )


def _tools(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise fields.invalid_type("tools", "an array")
    for index, tool in enumerate(value):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise fields.invalid_type(where, "an object")
        kind = fields.required_string(tool, "type", where)
        if kind == "function":
            function = fields.required_object(tool, "function", where)
            _function_name(function, f"{where}.function")
            fields.string(function.get("description"), f"{where}.function.description")
            fields.obj(function.get("parameters"), f"{where}.function.parameters")
            fields.boolean(function.get("strict"), f"{where}.function.strict")
        elif kind == "custom":
            custom = fields.required_object(tool, "custom", where)
            fields.required_string(custom, "name", f"{where}.custom")
            fields.string(custom.get("description"), f"{where}.custom.description")
            fields.obj(custom.get("format"), f"{where}.custom.format")
        else:
            raise fields.invalid_value(f"{where}.type", "expected 'function' or 'custom'.")


def _tool_choice(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if value not in fields.TOOL_CHOICE_MODES:
            raise fields.invalid_value("tool_choice", "expected 'none', 'auto', 'required' or an object.")
        return
    if not isinstance(value, dict):
        raise fields.invalid_type("tool_choice", "a string or an object")
    kind = fields.required_string(value, "type", "tool_choice")
    if kind in ("function", "custom"):
        fields.required_string(
            fields.required_object(value, kind, "tool_choice"), "name", f"tool_choice.{kind}"
        )
    elif kind == "allowed_tools":
        allowed = fields.required_object(value, "allowed_tools", "tool_choice")
        mode = fields.required_string(allowed, "mode", "tool_choice.allowed_tools")
        if mode not in ("auto", "required"):
            raise fields.invalid_value("tool_choice.allowed_tools.mode", "expected 'auto' or 'required'.")
        tools = allowed.get("tools")
        if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
            raise fields.invalid_type("tool_choice.allowed_tools.tools", "an array of objects")
    else:
        raise fields.invalid_value("tool_choice.type", "expected 'function', 'custom' or 'allowed_tools'.")


def _stop(value: Any) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise fields.invalid_type("stop", "a string or an array of strings")
    if len(value) > fields.MAX_STOP_SEQUENCES:
        raise errors.BadRequest(
            f"Invalid 'stop': at most {fields.MAX_STOP_SEQUENCES} sequences.",
            param="stop",
            code="array_above_max_length",
        )


def _logit_bias(value: Any) -> None:
    bias = fields.obj(value, "logit_bias")
    if bias is None:
        return
    for token, weight in bias.items():
        if not fields.TOKEN_ID.fullmatch(token):
            raise fields.invalid_value("logit_bias", "keys must be token ids (integers, as strings).")
        if not fields.is_number(weight) or not -100 <= weight <= 100:
            raise fields.invalid_value("logit_bias", "values must be numbers from -100 to 100.")


def _response_format(value: Any) -> None:
    response_format = fields.obj(value, "response_format")
    if response_format is None:
        return
    kind = fields.required_string(response_format, "type", "response_format")
    if kind not in fields.RESPONSE_FORMATS:
        raise fields.invalid_value("response_format.type", "expected 'text', 'json_object' or 'json_schema'.")
    if kind == "json_schema":
        fields.required_object(response_format, "json_schema", "response_format")


def validate_chat(data: dict[str, Any]) -> tuple[str, int]:
    """Check a chat completion request; returns (model, prompt length in characters)."""
    model = fields.model(data)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise fields.missing("messages", "'messages' is required and must be a non-empty array.")
    prompt_chars = sum(_message(message, f"messages[{index}]") for index, message in enumerate(messages))
    fields.integer(data.get("n"), "n", 1, 128)
    fields.number(data, "temperature", 0, 2)
    fields.number(data, "top_p", 0, 1)
    fields.number(data, "presence_penalty", -2, 2)
    fields.number(data, "frequency_penalty", -2, 2)
    fields.integer(data.get("max_tokens"), "max_tokens", 1)
    fields.integer(data.get("max_completion_tokens"), "max_completion_tokens", 1)
    fields.boolean(data.get("stream"), "stream")
    options = fields.obj(data.get("stream_options"), "stream_options")
    if options is not None:
        fields.boolean(options.get("include_usage"), "stream_options.include_usage")
    _stop(data.get("stop"))
    fields.boolean(data.get("logprobs"), "logprobs")
    fields.integer(data.get("top_logprobs"), "top_logprobs", 0, 20)
    fields.integer(data.get("seed"), "seed", fields.INT64_MIN)
    _logit_bias(data.get("logit_bias"))
    _response_format(data.get("response_format"))
    _tools(data.get("tools"))
    _tool_choice(data.get("tool_choice"))
    fields.boolean(data.get("parallel_tool_calls"), "parallel_tool_calls")
    fields.user(data)
    return model, prompt_chars


# -- chat → canonical ------------------------------------------------------------------------------


def _parts(content: Any) -> list[canonical.Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [canonical.TextPart(content)] if content else []
    parts: list[canonical.Part] = []
    for index, part in enumerate(content):
        kind = part["type"]
        if kind == "text":
            parts.append(canonical.TextPart(part["text"]))
        elif kind == "image_url":
            image = part["image_url"]
            parts.append(canonical.ImagePart(url=image["url"], detail=str(image.get("detail") or "")))
        elif kind == "refusal":
            parts.append(canonical.TextPart(part["refusal"]))
        else:
            raise fields.invalid_value(
                f"content[{index}].type",
                f"'{kind}' parts can only be sent to an OpenAI-format upstream, and this model is not served by one.",
            )
    return parts


def _tool_result(message: dict[str, Any], call_id: str) -> canonical.Message:
    content = [part for part in _parts(message.get("content")) if isinstance(part, canonical.TextPart)]
    result = canonical.ToolResultPart(
        tool_call_id=call_id, content=list(content), name=message.get("name") or ""
    )
    return canonical.Message(Role.TOOL, [result])


def _message_to_canonical(message: dict[str, Any]) -> canonical.Message:
    role = message["role"]
    if role in ("system", "developer"):
        return canonical.Message(Role.SYSTEM, _parts(message.get("content")))
    if role == "user":
        return canonical.Message(Role.USER, _parts(message.get("content")), name=message.get("name") or "")
    if role == "tool":
        return _tool_result(message, message["tool_call_id"])
    if role == "function":
        return _tool_result(message, message["name"])
    parts: list[canonical.Part] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        parts.append(canonical.ThinkingPart(text=reasoning))  # no signature: kept by none
    parts.extend(_parts(message.get("content")))
    for call in message.get("tool_calls") or ():
        if call["type"] != "function":
            raise fields.invalid_value(
                "tool_calls.type", "custom tool calls can only be sent to an OpenAI-format upstream."
            )
        function = call["function"]
        parts.append(
            canonical.ToolCallPart(
                id=call["id"], name=function["name"], arguments=function["arguments"] or "{}"
            )
        )
    legacy = message.get("function_call")
    if legacy:
        parts.append(
            canonical.ToolCallPart(
                id=legacy["name"], name=legacy["name"], arguments=legacy["arguments"] or "{}"
            )
        )
    return canonical.Message(Role.ASSISTANT, parts)


def _tool_choice_to_canonical(value: Any, parallel: Any) -> canonical.ToolChoice | None:
    if value is None:
        return canonical.ToolChoice(parallel=parallel) if isinstance(parallel, bool) else None
    if isinstance(value, str):
        return canonical.ToolChoice(mode=value, parallel=parallel)
    if value["type"] == "function":
        return canonical.ToolChoice(mode="tool", name=value["function"]["name"], parallel=parallel)
    if value["type"] == "allowed_tools":
        return canonical.ToolChoice(mode=value["allowed_tools"]["mode"], parallel=parallel)
    raise fields.invalid_value(
        "tool_choice.type", "custom tools can only be sent to an OpenAI-format upstream."
    )


def chat_to_canonical(body: dict[str, Any], *, session: str = "") -> canonical.Request:
    """A validated chat body as the canonical request (a field only OpenAI knows is a 400 here,
    naming it, when the call goes to an upstream that is not OpenAI-format)."""
    if (body.get("n") or 1) > 1:
        raise fields.invalid_value("n", "more than one choice is only served by OpenAI-format upstreams.")
    tools = []
    for tool in body.get("tools") or ():
        if tool["type"] != "function":
            raise fields.invalid_value(
                "tools.type", "custom tools can only be sent to an OpenAI-format upstream."
            )
        function = tool["function"]
        tools.append(
            canonical.Tool(
                name=function["name"],
                description=function.get("description") or "",
                parameters=function.get("parameters") or {"type": "object", "properties": {}},
                strict=function.get("strict"),
            )
        )
    stop = body.get("stop")
    response_format = None
    if body.get("response_format"):
        rf = body["response_format"]
        schema = rf.get("json_schema") or {}
        response_format = canonical.ResponseFormat(
            type=rf["type"],
            schema=schema.get("schema"),
            name=str(schema.get("name") or ""),
            strict=schema.get("strict"),
        )
    effort = body.get("reasoning_effort")
    return canonical.Request(
        model=body["model"],
        messages=[_message_to_canonical(message) for message in body["messages"]],
        tools=tools,
        tool_choice=_tool_choice_to_canonical(body.get("tool_choice"), body.get("parallel_tool_calls")),
        sampling=canonical.Sampling(
            temperature=body.get("temperature"),
            top_p=body.get("top_p"),
            stop=[stop] if isinstance(stop, str) else list(stop or []),
            seed=body.get("seed"),
            presence_penalty=body.get("presence_penalty"),
            frequency_penalty=body.get("frequency_penalty"),
        ),
        max_output_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
        response_format=response_format,
        reasoning=canonical.Reasoning(effort=effort) if isinstance(effort, str) else None,
        stream=bool(body.get("stream")),
        user=body.get("user") or "",
        session=session,
    )


# -- canonical → chat ------------------------------------------------------------------------------

FINISH = {
    FinishReason.STOP: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.TOOL_CALLS: "tool_calls",
    FinishReason.CONTENT_FILTER: "content_filter",
    FinishReason.ERROR: "stop",
}


def usage_body(usage: canonical.Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def response_body(response: canonical.Response, *, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": response.text or None, "refusal": None}
    thinking = "".join(part.text for part in response.content if isinstance(part, canonical.ThinkingPart))
    if thinking:
        message["reasoning_content"] = thinking
    calls = response.tool_calls
    if calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in calls
        ]
    finish = response.finish_reason
    if calls and finish == FinishReason.STOP:
        finish = FinishReason.TOOL_CALLS  # a turn that ends in tool calls says so, whatever the upstream said
    return {
        "id": response.id if response.id.startswith("chatcmpl") else f"chatcmpl-{response.id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": response.model or model,
        "choices": [{"index": 0, "message": message, "finish_reason": FINISH[finish], "logprobs": None}],
        "usage": usage_body(response.usage),
    }


class ChatStream(StreamRenderer):
    def __init__(self, *, model: str, request_id: str, wants_usage: bool) -> None:
        self.id = f"chatcmpl-{request_id}"
        self.model = model
        self.created = int(time.time())
        self.wants_usage = wants_usage
        self.usage: canonical.Usage | None = None
        self.started = self.ended = False
        self.tool_calls = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return self._chunk({"role": "assistant", "content": ""})

    def render(self, event: canonical.StreamEvent) -> bytes:
        if isinstance(event, canonical.Start):
            self.model = event.model or self.model
            return self._start()
        head = self._start()
        if isinstance(event, canonical.TextDelta):
            return head + self._chunk({"content": event.text})
        if isinstance(event, canonical.ThinkingDelta):
            return head + (self._chunk({"reasoning_content": event.text}) if event.text else b"")
        if isinstance(event, canonical.ToolCallStart):
            self.tool_calls = True
            call = {
                "index": event.index,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return head + self._chunk({"tool_calls": [call]})
        if isinstance(event, canonical.ToolCallDelta):
            return head + self._chunk(
                {"tool_calls": [{"index": event.index, "function": {"arguments": event.arguments}}]}
            )
        if isinstance(event, canonical.UsageUpdate):
            self.usage = event.usage
            return head
        if isinstance(event, canonical.Finish):
            reason = event.reason
            if self.tool_calls and reason == FinishReason.STOP:
                reason = FinishReason.TOOL_CALLS
            return head + self._chunk({}, FINISH[reason])
        return head

    def keepalive(self) -> bytes:
        return b": keep-alive\n\n"

    def terminal(self) -> bytes:
        if self.ended:
            return b""
        self.ended = True
        out = self._start()
        if self.wants_usage and self.usage is not None:
            usage = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage_body(self.usage),
            }
            out += b"data: " + orjson.dumps(usage) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def error(self, error: errors.GatewayError) -> bytes:
        self.ended = True
        return b"data: " + orjson.dumps(error.body()) + b"\n\n"


class OpenAIChat(Codec):
    name: ClassVar[str] = "openai_chat"
    endpoint: ClassVar[str] = "chat.completions"
    routes: ClassVar[tuple[Route, ...]] = (Route("/v1/chat/completions", "POST", "chat"),)

    def parse(self, *, body: dict[str, Any], headers: Mapping[str, str], operation: str) -> Inbound:
        model, prompt_chars = validate_chat(body)
        field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        asked = body.get(field)
        n = body.get("n")
        return self._new_inbound(
            operation=operation,
            body=body,
            model=model,
            stream=bool(body.get("stream")),
            user=body.get("user") or "",
            session=session_from(headers),
            prompt_chars=prompt_chars,
            output_field=field,
            max_output_tokens=asked if isinstance(asked, int) else None,
            n=n if isinstance(n, int) and n > 0 else 1,
            client_wants_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        )

    def to_canonical(self, inbound: Inbound) -> canonical.Request:
        return chat_to_canonical(inbound.body, session=inbound.session)

    def render_response(self, response: canonical.Response, *, inbound: Inbound) -> bytes:
        return orjson.dumps(response_body(response, model=inbound.model))

    def stream_renderer(self, *, inbound: Inbound, request_id: str) -> ChatStream:
        return ChatStream(model=inbound.model, request_id=request_id, wants_usage=inbound.client_wants_usage)

"""OpenAI's Responses API as the mock writes it (``POST /v1/responses``): bearer auth, OpenAI error
bodies, the validation the real API applies (unknown parameters, input items, function call
outputs that answer a call in the input, ``max_output_tokens`` >= 16, encrypted reasoning it made,
no stored state: ``previous_response_id`` is a 400), the response document (reasoning, message and
function_call output items, usage with cached and reasoning tokens; status ``incomplete`` at the
output limit) and the typed event stream from ``response.created`` to ``response.completed``
(or ``response.incomplete``), every event with its ``sequence_number``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.mockserver.chat import _bearer, _openai_error, _openai_unauthorized
from gateway.mockserver.config import MockConfig
from gateway.mockserver.dialect import _Script, _Wire
from gateway.mockserver.directives import _BadRequest
from gateway.mockserver.plans import _AUTO, _Plan, _resolve_plan, _Tool, _ToolChoice
from gateway.mockserver.wire import _TOKENS, _completion_text, _halves, _new_id, _signature, _sse, _tokens_for

_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "store",
        "reasoning",
        "text",
        "include",
        "metadata",
        "parallel_tool_calls",
        "previous_response_id",
        "user",
        "truncation",
        "service_tier",
        "background",
        "max_tool_calls",
        "prompt_cache_key",
        "safety_identifier",
        "stream_options",
        "top_logprobs",
        "conversation",
        "prompt",
        "prompt_cache_retention",
    }
)
_ROLES = frozenset({"user", "assistant", "system", "developer"})
_CONTENT_TYPES = frozenset(
    {"input_text", "input_image", "input_file", "input_audio", "output_text", "refusal"}
)
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
MIN_OUTPUT_TOKENS = 16


def _message_text(content: Any, at: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _BadRequest(
            f"Invalid type for '{at}.content': expected a string or an array.", param=f"{at}.content"
        )
    text = []
    for number, part in enumerate(content):
        type_ = part.get("type") if isinstance(part, dict) else None
        if type_ not in _CONTENT_TYPES:
            raise _BadRequest(
                f"Invalid value: {type_!r}. Supported values are: {sorted(_CONTENT_TYPES)}.",
                param=f"{at}.content[{number}].type",
            )
        if type_ in ("input_text", "output_text"):
            if not isinstance(part.get("text"), str):
                raise _BadRequest(
                    f"Missing required parameter: '{at}.content[{number}].text'.",
                    param=f"{at}.content[{number}].text",
                )
            text.append(part["text"])
    return "".join(text)


def _input(value: Any) -> tuple[int, str]:
    """Validate `input`; return (its prompt tokens without the priming 3, the last item's text)."""
    if isinstance(value, str):
        return 4 + _tokens_for(value), value
    if not isinstance(value, list) or not value:
        raise _BadRequest("Invalid 'input': expected a string or a non-empty array of items.", param="input")
    tokens = 0
    text = ""
    calls: set[str] = set()
    for index, item in enumerate(value):
        at = f"input[{index}]"
        if not isinstance(item, dict):
            raise _BadRequest(f"Invalid type for '{at}': expected an object.", param=at)
        type_ = item.get("type", "message")
        if type_ == "message":
            if item.get("role") not in _ROLES:
                raise _BadRequest(f"Invalid value for '{at}.role'.", param=f"{at}.role")
            text = _message_text(item.get("content"), at)
        elif type_ == "function_call":
            for name in ("call_id", "name", "arguments"):
                if not isinstance(item.get(name), str):
                    raise _BadRequest(f"Missing required parameter: '{at}.{name}'.", param=f"{at}.{name}")
            calls.add(item["call_id"])
            text = ""
        elif type_ == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in calls:
                raise _BadRequest(
                    f"No tool call found for function call output with call_id {call_id}.", param="input"
                )
            output = item.get("output")
            text = output if isinstance(output, str) else _message_text(output, at)
        elif type_ == "reasoning":
            encrypted = item.get("encrypted_content")
            if encrypted is not None and encrypted != _signature("reasoning", str(item.get("id"))):
                raise _BadRequest(
                    f"The encrypted content for item {item.get('id')} could not be verified.",
                    param=f"{at}.encrypted_content",
                )
            if not isinstance(item.get("summary", []), list):
                raise _BadRequest(f"Invalid type for '{at}.summary'.", param=f"{at}.summary")
            continue  # reasoning is not billed as input text here
        elif type_ == "item_reference":
            raise _BadRequest(f"Item with id '{item.get('id')}' not found.", param=at)
        else:
            raise _BadRequest(f"Invalid value: {type_!r} for '{at}.type'.", param=f"{at}.type")
        tokens += 4 + _tokens_for(text)
    return tokens, text


def _tools(value: Any) -> list[_Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadRequest("Invalid type for 'tools': expected an array.", param="tools")
    tools = []
    for index, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise _BadRequest(
                f"Missing required parameter: 'tools[{index}].type'.", param=f"tools[{index}].type"
            )
        if tool["type"] != "function":
            continue  # built-in tools (web search, ...): the mock never calls those
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _BadRequest(
                f"Missing required parameter: 'tools[{index}].name'.", param=f"tools[{index}].name"
            )
        tools.append(_Tool(tool["name"], tool.get("parameters")))
    return tools


def _tool_choice(value: Any) -> _ToolChoice:
    if value in (None, "auto"):
        return _AUTO
    if value in ("none", "required"):
        return _ToolChoice(value)
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str):
        return _ToolChoice("required", value["name"])
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return _AUTO  # a built-in tool or allowed_tools
    raise _BadRequest("Invalid value for 'tool_choice'.", param="tool_choice")


def _check_options(body: Mapping[str, Any]) -> None:
    for name, high in (("temperature", 2), ("top_p", 1)):
        number = body.get(name)
        if number is not None and (
            isinstance(number, bool) or not isinstance(number, int | float) or not 0 <= number <= high
        ):
            raise _BadRequest(f"Invalid '{name}': expected a number between 0 and {high}.", param=name)
    reasoning = body.get("reasoning")
    if reasoning is not None and (
        not isinstance(reasoning, dict) or reasoning.get("effort", "medium") not in _EFFORTS | {None}
    ):
        raise _BadRequest("Invalid value for 'reasoning.effort'.", param="reasoning.effort")
    text = body.get("text")
    if text is not None:
        fmt = text.get("format") if isinstance(text, dict) else None
        type_ = fmt.get("type") if isinstance(fmt, dict) else "text" if fmt is None else None
        if type_ not in ("text", "json_object", "json_schema"):
            raise _BadRequest("Invalid value for 'text.format.type'.", param="text.format.type")
        if type_ == "json_schema" and not (
            isinstance(fmt, dict) and isinstance(fmt.get("name"), str) and isinstance(fmt.get("schema"), dict)
        ):
            raise _BadRequest(
                "Missing required parameter: 'text.format.name' or 'text.format.schema'.", param="text.format"
            )
    include = body.get("include")
    if include is not None and not (isinstance(include, list) and all(isinstance(i, str) for i in include)):
        raise _BadRequest("Invalid type for 'include': expected an array of strings.", param="include")


class _ResponsesWire(_Wire):
    name = "openai-responses"
    malformed_body = b'{"id": "resp_broken", "object": "response", "output": ['
    malformed_event = (
        b'event: response.output_text.delta\ndata: {"type": "response.output_text.delta", "de\n\n'
    )

    def supplied_credential(self, request: web.Request) -> str:
        return _bearer(request)

    def unauthorized(self, request: web.Request, api_key: str) -> web.Response | None:
        return _openai_unauthorized(request, api_key)

    def error(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: str | None = None,
    ) -> web.Response:
        return _openai_error(status, message, param=param, headers=headers, retry_after=retry_after)

    def plan(self, config: MockConfig, request: web.Request, body: Any, valid: bool) -> _Plan:
        if not valid:
            raise _BadRequest(
                "We could not parse the JSON body of your request. The request body must be valid JSON."
            )
        if not isinstance(body, dict):
            raise _BadRequest("The request body must be a JSON object.")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise _BadRequest(f"Unknown parameter: '{unknown[0]}'.", param=unknown[0])
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise _BadRequest("Missing required parameter: 'model'.", param="model")
        for name in ("previous_response_id", "conversation"):
            if body.get(name) is not None:
                raise _BadRequest(f"Previous response with id '{body[name]}' not found.", param=name)
        if "input" not in body:
            raise _BadRequest("Missing required parameter: 'input'.", param="input")
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise _BadRequest("Invalid type for 'stream': expected a boolean.", param="stream")
        limit = body.get("max_output_tokens")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < MIN_OUTPUT_TOKENS
        ):
            raise _BadRequest(
                f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= {MIN_OUTPUT_TOKENS}.",
                param="max_output_tokens",
            )
        _check_options(body)
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise _BadRequest("Invalid type for 'instructions': expected a string.", param="instructions")
        tokens, last_text = _input(body["input"])
        tokens += 3 + (4 + _tokens_for(instructions) if instructions else 0)
        plan = _resolve_plan(
            config,
            request,
            model=body["model"],
            stream=stream is True,
            prompt_tokens=tokens,
            last_text=last_text,
            limit=limit,
            tools=_tools(body.get("tools")),
            choice=_tool_choice(body.get("tool_choice")),
        )
        plan.encrypted_reasoning = "reasoning.encrypted_content" in (body.get("include") or ())
        return plan

    # -- answers -------------------------------------------------------------------------------

    @staticmethod
    def _items(plan: _Plan, echo: str | None, response_id: str) -> list[dict[str, Any]]:
        suffix = response_id.removeprefix("resp_")
        items: list[dict[str, Any]] = []
        if plan.reasoning_tokens:
            reasoning: dict[str, Any] = {"id": "rs_" + suffix, "type": "reasoning", "summary": []}
            if plan.encrypted_reasoning:
                reasoning["encrypted_content"] = _signature("reasoning", reasoning["id"])
            items.append(reasoning)
        text = _completion_text(plan.text_tokens)
        if echo is not None:
            text = echo + " " + text
        if text or not plan.tool_calls:
            content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
            status = "incomplete" if plan.finish_reason == "length" else "completed"
            items.append(
                {
                    "id": "msg_" + suffix,
                    "type": "message",
                    "status": status,
                    "role": "assistant",
                    "content": content,
                }
            )
        for call in plan.tool_calls:
            items.append(
                {
                    "id": "fc_" + call.key[:24],
                    "type": "function_call",
                    "status": "completed",
                    "arguments": call.arguments,
                    "call_id": "call_" + call.key[:24],
                    "name": call.name,
                }
            )
        return items

    @staticmethod
    def _response(
        plan: _Plan, response_id: str, created: int, output: list[dict[str, Any]], *, final: bool
    ) -> dict[str, Any]:
        incomplete = plan.finish_reason == "length"
        status = ("incomplete" if incomplete else "completed") if final else "in_progress"
        usage = None
        if final:
            usage = {
                "input_tokens": plan.prompt_tokens,
                "input_tokens_details": {
                    "cached_tokens": plan.cached_tokens,
                    "cache_write_tokens": plan.cache_write_tokens,
                    # The directive's long-retention writes are OpenAI's 12-hour ones.
                    "cache_write_tokens_details": {
                        "ttl_30m_tokens": plan.cache_write_tokens - plan.cache_write_1h_tokens,
                        "ttl_12h_tokens": plan.cache_write_1h_tokens,
                    },
                },
                "output_tokens": plan.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
                "total_tokens": plan.prompt_tokens + plan.completion_tokens,
            }
        return {
            "id": response_id,
            "object": "response",
            "created_at": created,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if final and incomplete else None,
            "instructions": None,
            "max_output_tokens": None,
            "model": plan.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": False,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        }

    def document(self, plan: _Plan, echo: str | None) -> bytes:
        response_id = _new_id("resp_")
        output = self._items(plan, echo, response_id)
        return orjson.dumps(self._response(plan, response_id, int(time.time()), output, final=True))

    def script(self, plan: _Plan, echo: str | None) -> _Script:
        response_id = _new_id("resp_")
        created = int(time.time())
        items = self._items(plan, echo, response_id)
        sequence = 0

        def event(type_: str, **payload: Any) -> bytes:
            nonlocal sequence
            data = {"type": type_, "sequence_number": sequence, **payload}
            sequence += 1
            return _sse(data, type_)

        head = event("response.created", response=self._response(plan, response_id, created, [], final=False))
        head += event(
            "response.in_progress", response=self._response(plan, response_id, created, [], final=False)
        )
        chunks: list[bytes] = []
        token_count = len(_TOKENS)
        for output_index, item in enumerate(items):
            if item["type"] == "reasoning":
                chunks.append(
                    event(
                        "response.output_item.added",
                        output_index=output_index,
                        item={**item, "encrypted_content": None},
                    )
                    + event("response.output_item.done", output_index=output_index, item=item)
                )
            elif item["type"] == "message":
                pieces = ([echo + " "] if echo is not None else []) + [
                    _TOKENS[i % token_count] for i in range(plan.text_tokens)
                ]
                empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                where = {"item_id": item["id"], "output_index": output_index, "content_index": 0}
                opening = event(
                    "response.output_item.added",
                    output_index=output_index,
                    item={**item, "status": "in_progress", "content": []},
                ) + event("response.content_part.added", **where, part=empty_part)
                chunk = opening
                for i, piece in enumerate(pieces):
                    chunk += event("response.output_text.delta", **where, delta=piece, logprobs=[])
                    if i < len(pieces) - 1:
                        chunks.append(chunk)
                        chunk = b""
                chunks.append(
                    chunk
                    + event(
                        "response.output_text.done", **where, text=item["content"][0]["text"], logprobs=[]
                    )
                    + event("response.content_part.done", **where, part=item["content"][0])
                    + event("response.output_item.done", output_index=output_index, item=item)
                )
            else:
                first, second = _halves(item["arguments"])
                where = {"item_id": item["id"], "output_index": output_index}
                chunks.append(
                    event(
                        "response.output_item.added",
                        output_index=output_index,
                        item={**item, "status": "in_progress", "arguments": ""},
                    )
                    + event("response.function_call_arguments.delta", **where, delta=first)
                )
                chunks.append(
                    event("response.function_call_arguments.delta", **where, delta=second)
                    + event(
                        "response.function_call_arguments.done",
                        **where,
                        name=item["name"],
                        arguments=item["arguments"],
                    )
                    + event("response.output_item.done", output_index=output_index, item=item)
                )
        final = self._response(plan, response_id, created, items, final=True)
        terminal = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        tail = event(terminal, response=final)
        events_after = [sequence]  # sequence numbers are fixed above; a failure continues from there

        def fail(sent: int) -> bytes:
            failed = self._response(plan, response_id, created, [], final=False)
            failed["status"] = "failed"
            failed["error"] = {
                "code": "server_error",
                "message": f"mock fault: stream error after {sent} chunks",
            }
            data = {"type": "response.failed", "sequence_number": events_after[0], "response": failed}
            return _sse(data, "response.failed")

        return _Script(head=head, chunks=chunks, tail=tail, fail=fail)

"""OpenAI chat completions as the mock writes them (``POST /v1/chat/completions``): bearer auth,
OpenAI error bodies, the completion document and the chunk stream (role chunk, one chunk per token,
tool calls by index, finish chunk, optional usage chunk, ``[DONE]``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.mockserver.config import MockConfig
from gateway.mockserver.dialect import _Script, _Wire
from gateway.mockserver.plans import _Plan, _plan_chat
from gateway.mockserver.wire import (
    _DONE_EVENT,
    _ERROR_CODES,
    _MALFORMED_CHAT,
    _MALFORMED_EVENT,
    _SYSTEM_FINGERPRINT,
    _TOKENS,
    _completion_text,
    _error_response,
    _halves,
    _new_id,
    _usage,
)


def _bearer(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ")


def _openai_unauthorized(request: web.Request, api_key: str) -> web.Response | None:
    supplied = request.headers.get("Authorization")
    if supplied == f"Bearer {api_key}":
        return None
    message = (
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        if not supplied
        else "Incorrect API key provided."
    )
    # Real OpenAI reports auth failures as invalid_request_error / invalid_api_key.
    return _error_response(401, message, type_="invalid_request_error", code="invalid_api_key")


def _openai_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    retry_after: str | None = None,
) -> web.Response:
    extra = dict(headers or {})
    if retry_after is not None:
        extra["Retry-After"] = retry_after
    return _error_response(status, message, param=param, code=_ERROR_CODES.get(status), headers=extra)


def _tool_call_id(key: str) -> str:
    return "call_" + key[:24]


class _ChatWire(_Wire):
    name = "openai-chat"
    malformed_body = _MALFORMED_CHAT
    malformed_event = _MALFORMED_EVENT

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
        return _plan_chat(config, request, body, valid)

    @staticmethod
    def _usage(plan: _Plan) -> dict[str, Any]:
        usage = _usage(plan.prompt_tokens, plan.completion_tokens, plan.cached_tokens)
        usage["completion_tokens_details"]["reasoning_tokens"] = plan.reasoning_tokens
        if plan.cache_write_tokens:
            usage["prompt_tokens_details"]["cache_write_tokens"] = plan.cache_write_tokens
        return usage

    def document(self, plan: _Plan, echo: str | None) -> bytes:
        text = _completion_text(plan.text_tokens)
        if echo is not None:
            text = echo + " " + text
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if plan.tool_calls:
            message["tool_calls"] = [
                {
                    "id": _tool_call_id(call.key),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in plan.tool_calls
            ]
        elif not text:
            message["content"] = ""
        return orjson.dumps(
            {
                "id": _new_id("chatcmpl-"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": plan.model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}
                ],
                "usage": self._usage(plan),
                "system_fingerprint": _SYSTEM_FINGERPRINT,
            }
        )

    def script(self, plan: _Plan, echo: str | None) -> _Script:
        base = {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": plan.model,
            "system_fingerprint": _SYSTEM_FINGERPRINT,
        }
        include_usage = plan.include_usage

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            chunk: dict[str, Any] = {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                chunk["usage"] = None  # OpenAI sends an explicit null on every non-usage chunk
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        head = event({"role": "assistant", "content": ""})
        if echo is not None:
            head += event({"content": echo + " "})
        token_count = len(_TOKENS)
        chunks = [event({"content": _TOKENS[i % token_count]}) for i in range(plan.text_tokens)]
        for index, call in enumerate(plan.tool_calls):
            first, second = _halves(call.arguments)
            opening = {
                "index": index,
                "id": _tool_call_id(call.key),
                "type": "function",
                "function": {"name": call.name, "arguments": first},
            }
            chunks.append(event({"tool_calls": [opening]}))
            chunks.append(event({"tool_calls": [{"index": index, "function": {"arguments": second}}]}))

        tail = event({}, plan.finish_reason)
        if include_usage:
            usage_chunk = {**base, "choices": [], "usage": self._usage(plan)}
            tail += b"data: " + orjson.dumps(usage_chunk) + b"\n\n"

        def fail(sent: int) -> bytes:
            error = {"message": f"mock fault: stream error after {sent} chunks", "type": "server_error"}
            return b"data: " + orjson.dumps({"error": {**error, "param": None, "code": None}}) + b"\n\n"

        return _Script(head=head, chunks=chunks, tail=tail + _DONE_EVENT, fail=fail)

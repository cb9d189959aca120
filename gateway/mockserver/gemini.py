"""Google Gemini as the mock writes it (``POST /v1beta/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse`` and ``:countTokens``): ``x-goog-api-key`` (or ``?key=``) auth,
the validation the real API applies (unknown field names, roles, one data field per part, function
response parts matching the function call turn, function names, thought signatures it made),
Google error bodies (``{"error": {"code", "message", "status"}}``), and GenerateContentResponse
documents and SSE chunks with candidates, parts (text, thought text, functionCall with
thoughtSignature), finishReason and usageMetadata (thoughtsTokenCount, cachedContentTokenCount).
Field names are accepted in lowerCamelCase or snake_case, as the real API's JSON parser does."""

from __future__ import annotations

import base64
import binascii
import re
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
    _new_id,
    _signature,
    _sse,
    _tokens_for,
)

_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_REQUEST_FIELDS = frozenset(
    {
        "contents",
        "tools",
        "toolConfig",
        "safetySettings",
        "systemInstruction",
        "generationConfig",
        "cachedContent",
    }
)
_CONTENT_FIELDS = frozenset({"role", "parts"})
_DATA_FIELDS = frozenset(
    {
        "text",
        "inlineData",
        "fileData",
        "functionCall",
        "functionResponse",
        "executableCode",
        "codeExecutionResult",
    }
)
_PART_FIELDS = _DATA_FIELDS | {"thought", "thoughtSignature", "videoMetadata", "mediaResolution"}
_GENERATION_FIELDS = frozenset(
    {
        "temperature",
        "topP",
        "topK",
        "candidateCount",
        "maxOutputTokens",
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "presencePenalty",
        "frequencyPenalty",
        "seed",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
        "responseModalities",
        "mediaResolution",
        "speechConfig",
        "enableEnhancedCivicAnswers",
    }
)
_THINKING_FIELDS = frozenset({"thinkingBudget", "includeThoughts", "thinkingLevel"})
_TOOL_FIELDS = frozenset(
    {
        "functionDeclarations",
        "googleSearch",
        "googleSearchRetrieval",
        "codeExecution",
        "urlContext",
        "computerUse",
    }
)
_DECLARATION_FIELDS = frozenset(
    {
        "name",
        "description",
        "parameters",
        "parametersJsonSchema",
        "response",
        "responseJsonSchema",
        "behavior",
    }
)
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,63}")
_MIME_TYPES = frozenset({"text/plain", "application/json", "text/x.enum"})
_FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
METHODS = frozenset({"generateContent", "streamGenerateContent", "countTokens"})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _fields(value: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    """A message of the API as a dict with lowerCamelCase keys; an unknown name is a 400, as in
    the real API (`Invalid JSON payload received. Unknown name "x" at 'where'`)."""
    if not isinstance(value, dict):
        raise _BadRequest(f"Invalid JSON payload received. Expected an object at '{where}'.", param=where)
    result = {}
    for key, item in value.items():
        name = _camel(key)
        if name not in allowed:
            at = f" at '{where}'" if where else ""
            raise _BadRequest(
                f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.',
                param=where or key,
            )
        result[name] = item
    return result


def _google_error(
    status: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    retry_after: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> web.Response:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"),
    }
    details = list(details or [])
    if retry_after is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"})
    if details:
        error["details"] = details
    response = web.Response(status=status, body=orjson.dumps({"error": error}), headers=_JSON_HEADERS)
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    if headers:
        response.headers.update(headers)
    return response


def _call_signature(name: str, args: Any) -> str:
    return _signature("functionCall", name, orjson.dumps(args, option=orjson.OPT_SORT_KEYS).decode())


def _check_signature(part: dict[str, Any], where: str) -> None:
    signature = part.get("thoughtSignature")
    if signature is None:
        return
    try:
        valid = isinstance(signature, str) and bool(base64.b64decode(signature, validate=True))
    except (binascii.Error, ValueError):
        valid = False
    call = part.get("functionCall")
    if valid and isinstance(call, dict):
        valid = signature == _call_signature(call.get("name", ""), call.get("args", {}))
    elif valid:
        valid = signature == _signature("text", part.get("text", ""))
    if not valid:
        raise _BadRequest(f"Corrupted thought signature at '{where}'.", param=where)


def _contents(value: Any, where: str = "contents") -> tuple[int, str]:
    """Validate `contents`; return (its prompt tokens, the last content's text)."""
    if not isinstance(value, list) or not value:
        raise _BadRequest("* GenerateContentRequest.contents: contents is not specified", param=where)
    tokens = 0
    text = ""
    calls_pending = 0
    for index, raw in enumerate(value):
        at = f"{where}[{index}]"
        content = _fields(raw, _CONTENT_FIELDS, at)
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise _BadRequest("Please use a valid role: user, model.", param=at)
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _BadRequest(
                f"* GenerateContentRequest.{at}.parts: contents.parts must not be empty.", param=at
            )
        pieces: list[str] = []
        calls = responses = 0
        for number, raw_part in enumerate(parts):
            part_at = f"{at}.parts[{number}]"
            part = _fields(raw_part, _PART_FIELDS, part_at)
            data = [name for name in part if name in _DATA_FIELDS]
            if len(data) != 1:
                raise _BadRequest(
                    f"* GenerateContentRequest.{part_at}.data: required oneof field 'data' must have one "
                    "initialized field",
                    param=part_at,
                )
            _check_signature(part, part_at)
            if "text" in part:
                if not isinstance(part["text"], str):
                    raise _BadRequest(f"Invalid value at '{part_at}.text': expected a string.", param=part_at)
                if not part.get("thought"):
                    pieces.append(part["text"])
            elif "functionCall" in part:
                call = part["functionCall"]
                if role != "model" or not isinstance(call, dict) or not isinstance(call.get("name"), str):
                    raise _BadRequest(f"Invalid functionCall at '{part_at}'.", param=part_at)
                calls += 1
            elif "functionResponse" in part:
                response = part["functionResponse"]
                if not isinstance(response, dict) or not isinstance(response.get("name"), str):
                    raise _BadRequest(f"Invalid functionResponse at '{part_at}'.", param=part_at)
                if not isinstance(response.get("response", {}), dict):
                    raise _BadRequest(
                        f"Invalid value at '{part_at}.function_response.response'.", param=part_at
                    )
                responses += 1
            elif "inlineData" in part:
                inline = part["inlineData"]
                if not isinstance(inline, dict) or not isinstance(inline.get("data"), str):
                    raise _BadRequest(f"Invalid inlineData at '{part_at}'.", param=part_at)
        if calls_pending and responses != calls_pending:
            raise _BadRequest(
                "Please ensure that the number of function response parts is equal to the number of "
                "function call parts of the function call turn.",
                param=at,
            )
        calls_pending = calls
        text = "".join(pieces)
        tokens += 4 + _tokens_for(text)
    return tokens, text


def _tools(value: Any) -> list[_Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadRequest("Invalid value at 'tools': expected a list.", param="tools")
    tools = []
    for index, raw in enumerate(value):
        tool = _fields(raw, _TOOL_FIELDS, f"tools[{index}]")
        declarations = tool.get("functionDeclarations", [])
        if not isinstance(declarations, list):
            raise _BadRequest(f"Invalid value at 'tools[{index}].function_declarations'.", param="tools")
        for number, raw_declaration in enumerate(declarations):
            at = f"tools[{index}].function_declarations[{number}]"
            declaration = _fields(raw_declaration, _DECLARATION_FIELDS, at)
            name = declaration.get("name")
            if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
                raise _BadRequest(
                    f"* GenerateContentRequest.{at}.name: Invalid function name. Must start with a letter "
                    "or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), "
                    "colons (:), or dashes (-), with a maximum length of 64.",
                    param=at,
                )
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                raise _BadRequest(f"{at}: parameters and parameters_json_schema are exclusive.", param=at)
            tools.append(_Tool(name, declaration.get("parametersJsonSchema", declaration.get("parameters"))))
    return tools


def _tool_choice(value: Any, tools: list[_Tool]) -> _ToolChoice:
    if value is None:
        return _AUTO
    config = _fields(value, frozenset({"functionCallingConfig", "retrievalConfig"}), "tool_config")
    calling = _fields(
        config.get("functionCallingConfig", {}),
        frozenset({"mode", "allowedFunctionNames"}),
        "tool_config.function_calling_config",
    )
    mode = calling.get("mode", "AUTO")
    allowed = calling.get("allowedFunctionNames")
    if mode not in ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"):
        raise _BadRequest(
            f"Invalid value at 'tool_config.function_calling_config.mode' ({mode!r})", param="tool_config"
        )
    if allowed is not None and mode != "ANY":
        raise _BadRequest("allowed_function_names may only be set when the mode is ANY.", param="tool_config")
    if mode == "NONE":
        return _ToolChoice("none")
    if mode == "ANY":
        names = allowed if isinstance(allowed, list) else []
        return _ToolChoice("required", names[0] if len(names) == 1 else None)
    return _AUTO


def _generation(value: Any) -> tuple[int | None, bool]:
    """Validate generationConfig; return (maxOutputTokens, includeThoughts)."""
    if value is None:
        return None, False
    config = _fields(value, _GENERATION_FIELDS, "generation_config")
    limit = config.get("maxOutputTokens")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise _BadRequest(
            "Invalid value at 'generation_config.max_output_tokens'.", param="generation_config"
        )
    for name, high in (("temperature", 2), ("topP", 1)):
        number = config.get(name)
        if number is not None and (
            isinstance(number, bool) or not isinstance(number, int | float) or not 0 <= number <= high
        ):
            raise _BadRequest(
                f"Invalid value at 'generation_config.{name}': out of range.", param="generation_config"
            )
    stop = config.get("stopSequences")
    if stop is not None and not (
        isinstance(stop, list) and len(stop) <= 5 and all(isinstance(s, str) for s in stop)
    ):
        raise _BadRequest(
            "Invalid value at 'generation_config.stop_sequences' (up to 5 strings).",
            param="generation_config",
        )
    mime = config.get("responseMimeType")
    if mime is not None and mime not in _MIME_TYPES:
        raise _BadRequest(f"Unsupported response_mime_type {mime!r}.", param="generation_config")
    thinking = _fields(
        config.get("thinkingConfig", {}), _THINKING_FIELDS, "generation_config.thinking_config"
    )
    budget = thinking.get("thinkingBudget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < -1):
        raise _BadRequest(
            "Invalid value at 'generation_config.thinking_config.thinking_budget'.", param="generation_config"
        )
    return limit, thinking.get("includeThoughts") is True


def _system(value: Any) -> int:
    if value is None:
        return 0
    content = _fields(value, _CONTENT_FIELDS, "system_instruction")
    parts = content.get("parts")
    if not isinstance(parts, list):
        raise _BadRequest("Invalid value at 'system_instruction.parts'.", param="system_instruction")
    text = ""
    for number, raw in enumerate(parts):
        part = _fields(raw, _PART_FIELDS, f"system_instruction.parts[{number}]")
        if not isinstance(part.get("text"), str):
            raise _BadRequest("system_instruction parts must be text.", param="system_instruction")
        text += part["text"]
    return 4 + _tokens_for(text)


def _target(request: web.Request) -> tuple[str, str]:
    model, _, method = request.match_info["target"].rpartition(":")
    return model, method


class _GeminiWire(_Wire):
    name = "gemini"
    malformed_body = b'{"candidates": [{"content": {"parts": ['
    malformed_event = b'data: {"candidates": [{"content": \r\n\r\n'

    def supplied_credential(self, request: web.Request) -> str:
        return request.headers.get("x-goog-api-key") or request.query.get("key", "")

    def unauthorized(self, request: web.Request, api_key: str) -> web.Response | None:
        supplied = self.supplied_credential(request)
        if supplied == api_key:
            return None
        if not supplied:
            return _google_error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        # The real API answers a wrong key with a 400, not a 401; only the details say why.
        reason = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
        }
        return _google_error(400, "API key not valid. Please pass a valid API key.", details=[reason])

    def error(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: str | None = None,
    ) -> web.Response:
        return _google_error(status, message, headers=headers, retry_after=retry_after)

    def count_tokens(self, request: web.Request, body: Any, valid: bool) -> int:
        if not valid or not isinstance(body, dict):
            raise _BadRequest("Invalid JSON payload received.")
        fields = _fields(body, frozenset({"contents", "generateContentRequest"}), "")
        if "generateContentRequest" in fields:
            inner = _fields(
                fields["generateContentRequest"], _REQUEST_FIELDS | {"model"}, "generate_content_request"
            )
            tokens, text = _contents(inner.get("contents"))
            tokens += _system(inner.get("systemInstruction"))
        else:
            tokens, text = _contents(fields.get("contents"))
        tokens += 3
        directives = _parse_directives(request, text)
        return directives.prompt_tokens if directives.prompt_tokens is not None else tokens

    def plan(self, config: MockConfig, request: web.Request, body: Any, valid: bool) -> _Plan:
        model, method = _target(request)
        if not valid or not isinstance(body, dict):
            raise _BadRequest("Invalid JSON payload received. Expected a JSON object.")
        stream = method == "streamGenerateContent"
        if stream and request.query.get("alt") != "sse":
            raise _BadRequest(
                "mock: streamGenerateContent needs ?alt=sse (JSON-array streams are not served)"
            )
        fields = _fields(body, _REQUEST_FIELDS, "")
        tokens, last_text = _contents(fields.get("contents"))
        tokens += 3 + _system(fields.get("systemInstruction"))
        tools = _tools(fields.get("tools"))
        choice = _tool_choice(fields.get("toolConfig"), tools)
        limit, include_thoughts = _generation(fields.get("generationConfig"))
        plan = _resolve_plan(
            config,
            request,
            model=model,
            stream=stream,
            prompt_tokens=tokens,
            last_text=last_text,
            limit=limit,
            tools=tools,
            choice=choice,
        )
        if plan.cache_write_tokens:
            raise _BadRequest("Gemini has no cache writes on a request", param="cache_write_tokens")
        plan.include_thoughts = include_thoughts
        return plan

    # -- answers -------------------------------------------------------------------------------

    @staticmethod
    def _usage(plan: _Plan, *, final: bool, sent_tokens: int = 0) -> dict[str, Any]:
        """usageMetadata; before the final chunk the counts so far (as the real stream does)."""
        output = plan.text_tokens + sum(call.tokens for call in plan.tool_calls) if final else sent_tokens
        usage: dict[str, Any] = {"promptTokenCount": plan.prompt_tokens}
        if final or output:
            usage["candidatesTokenCount"] = output
        usage["totalTokenCount"] = plan.prompt_tokens + output + plan.reasoning_tokens
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": plan.prompt_tokens}]
        if plan.reasoning_tokens:
            usage["thoughtsTokenCount"] = plan.reasoning_tokens
        if plan.cached_tokens:
            usage["cachedContentTokenCount"] = plan.cached_tokens
        return usage

    @staticmethod
    def _call_parts(plan: _Plan) -> list[dict[str, Any]]:
        parts = []
        for index, call in enumerate(plan.tool_calls):
            args = orjson.loads(call.arguments)
            part: dict[str, Any] = {"functionCall": {"name": call.name, "args": args}}
            if index == 0 and plan.reasoning_tokens:
                # A thinking model signs its first function call of the turn.
                part["thoughtSignature"] = _call_signature(call.name, args)
            parts.append(part)
        return parts

    @staticmethod
    def _response(plan: _Plan, response_id: str, parts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if "finishReason" in extra:
            candidate["finishReason"] = extra.pop("finishReason")
        candidate["index"] = 0
        return {"candidates": [candidate], **extra, "modelVersion": plan.model, "responseId": response_id}

    def document(self, plan: _Plan, echo: str | None) -> bytes:
        parts: list[dict[str, Any]] = []
        if plan.include_thoughts and plan.reasoning_tokens:
            parts.append({"text": _completion_text(plan.reasoning_tokens), "thought": True})
        text = _completion_text(plan.text_tokens)
        if echo is not None:
            text = echo + " " + text
        if text or not plan.tool_calls:
            parts.append({"text": text})
        parts += self._call_parts(plan)
        response = self._response(
            plan,
            _new_id(""),
            parts,
            finishReason=_FINISH_REASONS[plan.finish_reason],
            usageMetadata=self._usage(plan, final=True),
        )
        return orjson.dumps(response)

    def script(self, plan: _Plan, echo: str | None) -> _Script:
        response_id = _new_id("")
        token_count = len(_TOKENS)
        chunks: list[bytes] = []
        sent = 0

        def chunk(part: dict[str, Any]) -> bytes:
            usage = self._usage(plan, final=False, sent_tokens=sent)
            return _sse(self._response(plan, response_id, [part], usageMetadata=usage), crlf=True)

        if plan.include_thoughts:
            chunks += [
                chunk({"text": _TOKENS[i % token_count], "thought": True})
                for i in range(plan.reasoning_tokens)
            ]
        if echo is not None:
            chunks.append(chunk({"text": echo + " "}))
        for i in range(plan.text_tokens):
            sent += 1
            chunks.append(chunk({"text": _TOKENS[i % token_count]}))
        for part, call in zip(self._call_parts(plan), plan.tool_calls, strict=True):
            sent += call.tokens
            chunks.append(chunk(part))  # Gemini sends a function call whole, never in pieces
        tail = _sse(
            self._response(
                plan,
                response_id,
                [{"text": ""}],
                finishReason=_FINISH_REASONS[plan.finish_reason],
                usageMetadata=self._usage(plan, final=True),
            ),
            crlf=True,
        )

        def fail(sent_chunks: int) -> bytes:
            error = {
                "code": 500,
                "message": f"mock fault: stream error after {sent_chunks} chunks",
                "status": "INTERNAL",
            }
            return _sse({"error": error}, crlf=True)

        return _Script(head=b"", chunks=chunks, tail=tail, fail=fail)

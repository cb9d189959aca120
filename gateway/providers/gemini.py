"""The Google Gemini wire format (`POST {base_url}/models/{model}:generateContent`, and
`:streamGenerateContent?alt=sse`; base URL up to and including /v1beta, key in `x-goog-api-key`).

Canonical → Gemini: system messages become `systemInstruction`; turns become `contents` with roles
user / model (consecutive turns of one role merge, so the function responses of parallel calls
answer their call turn together); text, images (`inlineData` for data: URLs, `fileData` for
others), `functionCall` parts (with their `thoughtSignature` only when Gemini made them),
`functionResponse` parts (named after their call); tools as `functionDeclarations` with
`parametersJsonSchema`; `toolConfig` modes AUTO / NONE / ANY (with the named function);
`generationConfig`: temperature, topP, topK, stopSequences (5 at most), maxOutputTokens, seed,
penalties, JSON (`responseMimeType` + `responseJsonSchema`), `thinkingConfig`. Gemini → canonical:
text, thought text (provider "gemini"), function calls with their signatures (ids made here when
Gemini gives none), finish reasons (a function call ends a turn as TOOL_CALLS, not STOP), usage
(thoughtsTokenCount billed as output, cachedContentTokenCount as cached input), errors, and the SSE
stream chunk by chunk. Gemini has no client dialect of its own here, so no pass-through."""

from __future__ import annotations

import os
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from gateway import canonical
from gateway.canonical import Usage
from gateway.catalog import DeploymentInfo
from gateway.providers.base import Adapter, ProviderError, UpstreamRequest, upstream_error
from gateway.providers.sse import Event, EventStreamParser

KIND = "gemini"
MAX_STOP_SEQUENCES = 5
EFFORT_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576}
FINISH_REASONS = {
    "STOP": canonical.FinishReason.STOP,
    "MAX_TOKENS": canonical.FinishReason.LENGTH,
    "SAFETY": canonical.FinishReason.CONTENT_FILTER,
    "RECITATION": canonical.FinishReason.CONTENT_FILTER,
    "BLOCKLIST": canonical.FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": canonical.FinishReason.CONTENT_FILTER,
    "SPII": canonical.FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": canonical.FinishReason.CONTENT_FILTER,
    "MALFORMED_FUNCTION_CALL": canonical.FinishReason.ERROR,
    "UNEXPECTED_TOOL_CALL": canonical.FinishReason.ERROR,
}
_MEDIA_TYPES = {
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "pdf": "application/pdf",
}


def _bad_response() -> ProviderError:
    return ProviderError(
        "The upstream provider returned a malformed response.",
        status=502,
        retryable=True,
        kind="bad_response",
    )


def _args(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _image(part: canonical.ImagePart) -> dict[str, Any]:
    inline = part.inline
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    extension = part.url.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower()
    return {"fileData": {"mimeType": _MEDIA_TYPES.get(extension, "image/jpeg"), "fileUri": part.url}}


def _function_response(part: canonical.ToolResultPart, names: dict[str, str]) -> dict[str, Any]:
    name = part.name or names.get(part.tool_call_id, "") or "tool"
    key = "error" if part.is_error else "result"
    return {"functionResponse": {"name": name, "response": {key: part.text}}}


def _contents(request: canonical.Request) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name: a function response is named

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            merged = contents[-1]["parts"] + parts
            if role == "user":  # the function responses lead the turn that answers the calls
                merged.sort(key=lambda part: "functionResponse" not in part)
            contents[-1]["parts"] = merged
        else:
            contents.append({"role": role, "parts": parts})

    for message in request.messages:
        if message.role == canonical.Role.SYSTEM:
            if message.text:
                system.append({"text": message.text})
        elif message.role == canonical.Role.ASSISTANT:
            parts: list[dict[str, Any]] = []
            for part in message.content:
                if isinstance(part, canonical.TextPart) and part.text:
                    parts.append({"text": part.text})
                elif isinstance(part, canonical.ToolCallPart):
                    names[part.id] = part.name
                    call: dict[str, Any] = {
                        "functionCall": {"name": part.name, "args": _args(part.arguments)}
                    }
                    if part.signature and part.provider == KIND:  # only Gemini's own signature goes back
                        call["thoughtSignature"] = part.signature
                    parts.append(call)
                # Thought text is a summary for the client; Gemini does not take it back.
            add("model", parts)
        else:
            parts = [
                _function_response(p, names)
                for p in message.content
                if isinstance(p, canonical.ToolResultPart)
            ]
            for part in message.content:
                if isinstance(part, canonical.TextPart) and part.text:
                    parts.append({"text": part.text})
                elif isinstance(part, canonical.ImagePart):
                    parts.append(_image(part))
            add("user", parts)
    return system, contents


def _thinking(reasoning: canonical.Reasoning | None) -> dict[str, Any] | None:
    if reasoning is None:
        return None
    if reasoning.enabled is False:
        return {"thinkingBudget": 0}
    config: dict[str, Any] = {"includeThoughts": True}
    if reasoning.budget_tokens is not None:
        config["thinkingBudget"] = reasoning.budget_tokens
    elif reasoning.effort in EFFORT_BUDGETS:
        config["thinkingBudget"] = EFFORT_BUDGETS[reasoning.effort]
    return config


def generate_body(request: canonical.Request) -> dict[str, Any]:
    system, contents = _contents(request)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        declarations = [
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "parametersJsonSchema": {"type": "object", **tool.parameters},
            }
            for tool in request.tools
        ]
        body["tools"] = [{"functionDeclarations": declarations}]
    choice = request.tool_choice
    if choice is not None and (request.tools or choice.mode == "none"):
        mode = {"none": "NONE", "required": "ANY", "tool": "ANY"}.get(choice.mode, "AUTO")
        calling: dict[str, Any] = {"mode": mode}
        if choice.mode == "tool":
            calling["allowedFunctionNames"] = [choice.name]
        if request.tools:
            body["toolConfig"] = {"functionCallingConfig": calling}
    config: dict[str, Any] = {}
    sampling = request.sampling
    for name, key in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("seed", "seed"),
                      ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):  # fmt: skip
        value = getattr(sampling, name)
        if value is not None:
            config[key] = value
    if sampling.stop:
        config["stopSequences"] = list(sampling.stop)[:MAX_STOP_SEQUENCES]
    if request.max_output_tokens is not None:
        config["maxOutputTokens"] = request.max_output_tokens
    rf = request.response_format
    if rf is not None and rf.type in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        if rf.type == "json_schema" and rf.schema:
            config["responseJsonSchema"] = rf.schema
    thinking = _thinking(request.reasoning)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    if config:
        body["generationConfig"] = config
    return body


# -- Gemini → canonical ----------------------------------------------------------------------------


def usage_from(data: Any) -> Usage | None:
    """usageMetadata: thinking (thoughtsTokenCount) is output, billed as such; tool-use prompt
    tokens are input."""
    if not isinstance(data, dict) or not isinstance(data.get("promptTokenCount"), int):
        return None

    def count(name: str) -> int:
        value = data.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    thoughts = count("thoughtsTokenCount")
    return Usage(
        prompt_tokens=count("promptTokenCount") + count("toolUsePromptTokenCount"),
        cached_tokens=count("cachedContentTokenCount"),
        completion_tokens=count("candidatesTokenCount") + thoughts,
        reasoning_tokens=thoughts,
        reported=True,
    )


def _call_id() -> str:
    return "call_" + os.urandom(12).hex()


def _parts(data: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The first candidate's parts and finishReason."""
    candidates = data.get("candidates")
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
        return [], None
    candidate = candidates[0]
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    reason = candidate.get("finishReason")
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else [], (
        str(reason) if reason else None
    )


def _finish(reason: str | None, called: bool, blocked: bool) -> canonical.FinishReason:
    if blocked:
        return canonical.FinishReason.CONTENT_FILTER
    finish = FINISH_REASONS.get(reason or "STOP", canonical.FinishReason.STOP)
    return canonical.FinishReason.TOOL_CALLS if called and finish == canonical.FinishReason.STOP else finish


def _call(part: dict[str, Any]) -> canonical.ToolCallPart:
    call = part["functionCall"]
    return canonical.ToolCallPart(
        id=str(call.get("id") or _call_id()),
        name=str(call.get("name") or ""),
        arguments=orjson.dumps(call.get("args") or {}).decode(),
        signature=str(part.get("thoughtSignature") or ""),
        provider=KIND,
    )


def parse_generate_response(content: bytes) -> canonical.Response:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise _bad_response() from exc
    if not isinstance(data, dict) or ("candidates" not in data and "promptFeedback" not in data):
        raise _bad_response()
    raw_parts, reason = _parts(data)
    parts: list[canonical.Part] = []
    for part in raw_parts:
        if isinstance(part.get("functionCall"), dict):
            parts.append(_call(part))
        elif isinstance(part.get("text"), str):
            if part.get("thought"):
                parts.append(canonical.ThinkingPart(text=part["text"], provider=KIND))
            elif part["text"]:
                parts.append(canonical.TextPart(part["text"]))
    feedback = data.get("promptFeedback")
    blocked = isinstance(feedback, dict) and bool(feedback.get("blockReason")) and not raw_parts
    return canonical.Response(
        id=str(data.get("responseId") or ""),
        model=str(data.get("modelVersion") or ""),
        content=parts,
        finish_reason=_finish(reason, any(isinstance(p, canonical.ToolCallPart) for p in parts), blocked),
        usage=usage_from(data.get("usageMetadata")) or Usage(),
    )


class GenerateStreamParser(EventStreamParser):
    """`streamGenerateContent?alt=sse` chunks → canonical events. Gemini sends no terminal event:
    the stream ended properly when a chunk carried a finishReason and the body then ended."""

    def __init__(self, *, credential: str = "") -> None:
        super().__init__(credential=credential)
        self._started = False
        self._usage: Usage | None = None
        self._reason: str | None = None
        self._calls = 0

    def finish(self) -> list[canonical.StreamEvent]:
        out = super().finish()
        if self._reason is not None:
            self.done = True
            if self._usage is not None:
                out.append(canonical.UsageUpdate(self._usage))
            out.append(canonical.Finish(_finish(self._reason, self._calls > 0, False)))
        return out

    def read(self, event: Event, out: list[canonical.StreamEvent]) -> None:
        try:
            data = orjson.loads(event.data) if event.data else None
        except orjson.JSONDecodeError:
            return
        if not isinstance(data, dict):
            return
        if isinstance(data.get("error"), dict):
            status = data["error"].get("status")
            raise ProviderError(
                f"The upstream provider failed mid-stream ({status or 'error'}).",
                status=502,
                retryable=False,
                kind="upstream_stream_broken",
            )
        if not self._started:
            self._started = True
            out.append(
                canonical.Start(
                    id=str(data.get("responseId") or ""), model=str(data.get("modelVersion") or "")
                )
            )
        parts, reason = _parts(data)
        for part in parts:
            if isinstance(part.get("functionCall"), dict):
                call = _call(part)
                self.chunks += 1
                out.append(
                    canonical.ToolCallStart(
                        index=self._calls, id=call.id, name=call.name, signature=call.signature, provider=KIND
                    )
                )
                out.append(canonical.ToolCallDelta(self._calls, call.arguments))
                self._calls += 1
            elif isinstance(part.get("text"), str) and part["text"]:
                self.chunks += 1
                if part.get("thought"):
                    out.append(canonical.ThinkingDelta(text=part["text"], provider=KIND))
                else:
                    out.append(canonical.TextDelta(part["text"]))
        usage = usage_from(data.get("usageMetadata"))
        if usage is not None:
            self._usage = usage  # each chunk's usageMetadata is the total so far
        if reason is not None:
            self._reason = reason
        feedback = data.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason") and not parts:
            self._reason = "SAFETY"


class GeminiAdapter(Adapter):
    kind: ClassVar[str] = KIND
    label: ClassVar[str] = "Google Gemini"
    wire: ClassVar[str] = "gemini"

    def _request(
        self, deployment: DeploymentInfo, method: str, body: dict[str, Any], request_id: str
    ) -> UpstreamRequest:
        headers = {"content-type": "application/json", "x-request-id": request_id}
        if deployment.provider.credential:
            headers["x-goog-api-key"] = deployment.provider.credential
        model = quote(deployment.upstream_model.removeprefix("models/"), safe="-._~")
        url = f"{deployment.provider.base_url}/models/{model}:{method}"
        return UpstreamRequest(url=url, headers=headers, content=orjson.dumps(body))

    def build_request(
        self, *, deployment: DeploymentInfo, request: canonical.Request, request_id: str
    ) -> UpstreamRequest:
        method = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
        return self._request(deployment, method, generate_body(request), request_id)

    def parse_response(self, *, content: bytes) -> canonical.Response:
        return parse_generate_response(content)

    def stream_parser(self, *, credential: str) -> GenerateStreamParser:
        return GenerateStreamParser(credential=credential)

    def count_tokens_request(
        self, *, deployment: DeploymentInfo, request: canonical.Request, request_id: str
    ) -> UpstreamRequest:
        body = generate_body(request)
        inner: dict[str, Any] = {
            key: body[key] for key in ("contents", "systemInstruction", "tools") if key in body
        }
        inner["model"] = "models/" + deployment.upstream_model.removeprefix("models/")
        return self._request(deployment, "countTokens", {"generateContentRequest": inner}, request_id)

    def parse_count_tokens(self, *, content: bytes) -> int:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise _bad_response() from exc
        if not isinstance(data, dict) or not isinstance(data.get("totalTokens"), int):
            raise _bad_response()
        return int(data["totalTokens"])

    def error(
        self, *, status: int, headers: dict[str, str], content: bytes, credential: str
    ) -> ProviderError:
        message = ""
        reasons: set[str] = set()
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(data, list) and data and isinstance(data[0], dict):  # some proxies wrap it
            error = data[0].get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or "")
            for detail in error.get("details") or ():
                if isinstance(detail, dict) and detail.get("reason"):
                    reasons.add(str(detail["reason"]))
                # Google says when to retry in a RetryInfo detail ("3s"), not in Retry-After.
                delay = detail.get("retryDelay") if isinstance(detail, dict) else None
                if isinstance(delay, str) and "retry-after" not in headers:
                    seconds = delay.removesuffix("s").split(".")[0]
                    if seconds.isdigit():
                        headers = {**headers, "retry-after": str(int(seconds) + ("." in delay))}
        if "API_KEY_INVALID" in reasons:
            status = 401  # Google answers a wrong key with a 400; it is the gateway's credential
        too_long = status == 400 and "exceeds the maximum number of tokens" in message
        return upstream_error(
            status=status, headers=headers, message=message, credential=credential, context_exceeded=too_long
        )

"""Mock LLM provider speaking the OpenAI wire format, for tests and benchmarks.

A real HTTP server (aiohttp.web) that answers like OpenAI so the gateway, the official ``openai``
SDK and load generators can talk to it unchanged. It has no Django dependency: run it with
``python -m gateway.mockserver --port 8001`` or ``python manage.py mockprovider --port 8001``,
embed it in a running event loop with :func:`start_server`, or run it in a background thread
with :class:`MockServerThread`.

Endpoints
---------
``POST /v1/chat/completions``  non-stream and SSE stream (``"stream": true``, honours
                               ``stream_options.include_usage``).
``POST /v1/embeddings``        ``input`` as str, list[str], list[int] or list[list[int]];
                               ``dimensions`` (default 8); ``encoding_format`` "float" or "base64".
``GET  /v1/models``            the configured model ids (``GET /v1/models/{id}`` retrieves one).
``GET  /_mock/requests``       the last 200 requests, newest last (method, path, lower-cased
                               headers, parsed JSON body or null); ``DELETE`` clears the log.
Anything else is an OpenAI-shaped 404 (405 for a known path with the wrong method). Every
response echoes the request's ``X-Request-ID``. If ``MockConfig.api_key`` is set, ``/v1/*``
requires ``Authorization: Bearer <api_key>`` (401 otherwise); ``/_mock/*`` never does.

Token accounting (deterministic, so tests can assert exact usage numbers)
-------------------------------------------------------------------------
* Chat prompt tokens = 3 + sum over messages of ``4 + ceil(len(text) / 4)``, where ``text`` is
  the message ``content`` string, or the concatenation of the ``text`` of its content parts
  (non-text parts and ``null`` content count as ""). Directive text inside the prompt counts too.
* Completion tokens = the ``tokens`` directive if given (exactly, max_tokens is ignored); else
  ``max_completion_tokens`` / ``max_tokens`` (the smaller if both) when it is smaller than
  ``MockConfig.tokens``, with ``finish_reason "length"``; else ``MockConfig.tokens`` with
  ``finish_reason "stop"``.
* Completion text = that many words cycling over a fixed lorem-ipsum list, each followed by a
  space (so it ends with a space). A stream sends one chunk per word; the concatenated stream
  content equals the non-stream content.
* Embedding prompt tokens = sum of ``ceil(len(text) / 4)`` per string input, plus the length of
  each token-id input. Vectors are unit-length, derived from a SHAKE-128 hash of the input, and
  rounded to float32, so the "float" and "base64" (little-endian float32) forms agree exactly.

Directives (fault injection and scripting, per request)
-------------------------------------------------------
Given as request headers ``X-Mock-<Name>: <value>`` (e.g. ``X-Mock-Retry-After: 3``) and/or in
the text of the LAST chat message (the first string input for embeddings) as a token like
``[mock status=429 retry_after=3]`` (key=value pairs and bare flags separated by spaces or
commas; "-" and "_" are interchangeable in names). Headers win over prompt text. An unknown
name or an invalid value is answered with a 400 OpenAI error whose ``param`` names the
directive.

``status=N``         (400-599) answer HTTP N with an OpenAI error body, message
                     "mock fault: status N" and a type matching the code.
``retry_after=S``    with ``status``: add ``Retry-After: S`` (seconds, as given).
``hang``             never answer: park the request for up to 600 s; it ends silently when the
                     client disconnects or the server shuts down.
``malformed``        HTTP 200 whose body is not valid JSON; in a stream, one malformed
                     ``data:`` line right after the first (role) chunk, then the normal stream.
``drop``             close the connection before any response.
``drop_after=N``     stream: abort the connection after N token chunks (no terminating chunk, no
                     ``[DONE]``); N >= the token count aborts right after the last token.
``hang_after=N``     stream: hang after N token chunks (same clamping as drop_after).
                     Non-stream requests have no chunks, so drop_after/hang_after act like
                     drop/hang there.
``ttft_ms=X``        override ``MockConfig.ttft_ms``: the delay before the first byte of a
                     stream, or before a non-stream response. It also delays injected
                     ``status``/``malformed``/``drop`` outcomes (send ``ttft_ms=0`` for an
                     instant fault) but not 400 validation errors.
``chunk_ms=Y``       override ``MockConfig.chunk_ms``: the delay before each token chunk after
                     the first, so a stream lasts about ttft + (tokens - 1) * chunk_ms.
``tokens=N``         completion token count (see above).
``prompt_tokens=N``  override the computed prompt tokens (chat and embeddings).
``cached_tokens=N``  ``usage.prompt_tokens_details.cached_tokens`` (default 0, must be <= the
                     prompt tokens).

Flags given as headers take a boolean value: "" / 1 / true / yes / on, or 0 / false / no / off
(so a header can switch off a flag set in the prompt). The request log records a request before
any directive is applied.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import functools
import hashlib
import math
import os
import re
import signal
import struct
import sys
import threading
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "MockConfig",
    "MockServerThread",
    "RunningMock",
    "add_arguments",
    "build_app",
    "config_from_options",
    "main",
    "run",
    "start_server",
]

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4.1",
    "claude-sonnet-4.5",
    "gemini-2.5-flash",
    "deepseek-v3.2",
    "text-embedding-3-small",
)
REQUEST_LOG_SIZE = 200
HANG_MAX_S = 600.0
# How often a hung request re-checks its transport; only matters when the app runs under a
# runner without handler_cancellation (ours cancels the handler as soon as the client leaves).
HANG_POLL_S = 1.0
# Long enough for in-flight responses to finish on close(), short enough that stopping a test
# server never stalls a test run.
SHUTDOWN_TIMEOUT_S = 1.0
DEFAULT_EMBEDDING_DIMENSIONS = 8
MAX_EMBEDDING_DIMENSIONS = 8192
MAX_EMBEDDING_INPUTS = 2048
MAX_DELAY_MS = 600_000.0
# LLM prompts can be large; aiohttp's default 1 MiB body limit would reject long-context requests.
CLIENT_MAX_SIZE = 64 * 1024 * 1024

_LOREM_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut "
    "aliquip ex ea commodo consequat duis aute irure dolor in reprehenderit in voluptate velit esse "
    "cillum dolore eu fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt in "
    "culpa qui officia deserunt mollit anim id est laborum"
)
# One completion token = one word plus its trailing space.
_TOKENS: tuple[str, ...] = tuple(word + " " for word in _LOREM_TEXT.split(" "))

_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_DONE_EVENT = b"data: [DONE]\n\n"
_MALFORMED_CHAT = b'{"id": "chatcmpl-broken", "choices": ['
_MALFORMED_EMBEDDINGS = b'{"object": "list", "data": ['
_MALFORMED_EVENT = b"data: " + _MALFORMED_CHAT + b"\n\n"
_SYSTEM_FINGERPRINT = "fp_mock"

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


@dataclass(frozen=True)
class MockConfig:
    """Server-wide defaults; directives override the delays and token counts per request."""

    ttft_ms: float = 0.0
    chunk_ms: float = 0.0
    tokens: int = 16
    api_key: str | None = None
    models: tuple[str, ...] = DEFAULT_MODELS

    def __post_init__(self) -> None:
        if not (0 <= self.ttft_ms <= MAX_DELAY_MS and 0 <= self.chunk_ms <= MAX_DELAY_MS):
            raise ValueError(f"ttft_ms and chunk_ms must be within 0..{MAX_DELAY_MS:.0f}")
        if self.tokens < 0:
            raise ValueError("tokens must be >= 0")


# ---------------------------------------------------------------------------------------------
# Directives
# ---------------------------------------------------------------------------------------------


class _BadRequest(Exception):
    """A client error reported as an OpenAI 400; raised deep in parsing, caught in the handler."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(slots=True)
class _Directives:
    status: int | None = None
    retry_after: str | None = None
    hang: bool = False
    malformed: bool = False
    drop: bool = False
    drop_after: int | None = None
    hang_after: int | None = None
    ttft_ms: float | None = None
    chunk_ms: float | None = None
    tokens: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None


_NO_DIRECTIVES = _Directives()
# (min, max) for the integer directives.
_INT_DIRECTIVES: dict[str, tuple[int, int]] = {
    "status": (400, 599),
    "drop_after": (0, 1_000_000),
    "hang_after": (0, 1_000_000),
    "tokens": (0, 1_000_000),
    "prompt_tokens": (0, 1_000_000_000),
    "cached_tokens": (0, 1_000_000_000),
}
_MS_DIRECTIVES = frozenset({"ttft_ms", "chunk_ms"})
_FLAG_DIRECTIVES = frozenset({"hang", "malformed", "drop"})
_TRUE = frozenset({"", "1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_HEADER_PREFIX = "x-mock-"
_PROMPT_MARKER = "[mock"
_PROMPT_DIRECTIVE_RE = re.compile(r"\[mock(?=[\s,\]])([^\]]*)\]")
_INT_RE = re.compile(r"[0-9]+")


def _prompt_directives(text: str) -> dict[str, str | None]:
    """``[mock a=1, b]`` tokens in ``text`` -> {"a": "1", "b": None} (later tokens win)."""
    found: dict[str, str | None] = {}
    for match in _PROMPT_DIRECTIVE_RE.finditer(text):
        for item in re.split(r"[\s,]+", match.group(1)):
            if not item:
                continue
            name, sep, value = item.partition("=")
            found[name.lower().replace("-", "_")] = value if sep else None
    return found


def _header_directives(request: web.Request) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name, value in request.headers.items():
        if name[:7].lower() == _HEADER_PREFIX:
            found[name[7:].lower().replace("-", "_")] = value.strip()
    return found


def _parse_directives(request: web.Request, prompt_text: str | None) -> _Directives:
    raw = _prompt_directives(prompt_text) if prompt_text and _PROMPT_MARKER in prompt_text else {}
    raw.update(_header_directives(request))  # headers win over prompt text
    if not raw:
        return _NO_DIRECTIVES
    directives = _Directives()
    for name, value in raw.items():
        setattr(directives, name, _directive_value(name, value))
    return directives


def _directive_value(name: str, value: str | None) -> Any:
    def bad(expected: str) -> _BadRequest:
        return _BadRequest(f"invalid mock directive {name}={value!r}: expected {expected}", param=name)

    if name in _FLAG_DIRECTIVES:
        if value is None:
            return True
        lowered = value.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise bad("a boolean (1/0, true/false) or a bare flag")
    if name in _INT_DIRECTIVES:
        low, high = _INT_DIRECTIVES[name]
        if value is None or not _INT_RE.fullmatch(value) or not low <= int(value) <= high:
            raise bad(f"an integer in {low}..{high}")
        return int(value)
    if name in _MS_DIRECTIVES or name == "retry_after":
        limit = MAX_DELAY_MS if name in _MS_DIRECTIVES else 86_400.0
        try:
            number = float(value) if value is not None else math.nan
        except ValueError:
            number = math.nan
        if not 0 <= number <= limit:  # also rejects nan
            raise bad(f"a number in 0..{limit:.0f}")
        return value if name == "retry_after" else number
    raise _BadRequest(f"unknown mock directive {name!r}", param=name)


# ---------------------------------------------------------------------------------------------
# Request parsing helpers
# ---------------------------------------------------------------------------------------------


def _message_text(message: Any, index: int) -> str:
    if not isinstance(message, dict):
        raise _BadRequest(f"messages[{index}] must be an object", param=f"messages[{index}]")
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise _BadRequest(
        f"messages[{index}].content must be a string, an array or null", param=f"messages[{index}].content"
    )


def _optional_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int subclass; JSON true is not a valid token limit.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _BadRequest(f"{name} must be a positive integer", param=name)
    return value


def _tokens_for(text: str) -> int:
    return (len(text) + 3) // 4  # ceil(len / 4)


@functools.lru_cache(maxsize=512)
def _completion_text(n: int) -> str:
    count = len(_TOKENS)
    return "".join(_TOKENS[i % count] for i in range(n))


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def _usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@functools.lru_cache(maxsize=1024)
def _embedding(key: str, dimensions: int) -> tuple[tuple[float, ...], str]:
    """Deterministic unit vector for ``key`` as (float32-exact floats, base64 of LE float32)."""
    raw = struct.unpack(f"<{dimensions}I", hashlib.shake_128(key.encode()).digest(4 * dimensions))
    values = [u / 2147483648.0 - 1.0 for u in raw]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    vector = array("f", (v / norm for v in values))
    floats = tuple(vector.tolist())  # float32-rounded, so it matches the base64 form exactly
    if sys.byteorder == "big":
        vector.byteswap()
    return floats, base64.b64encode(vector.tobytes()).decode("ascii")


def _error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def _error_response(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    if type_ is None:
        type_ = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = _error_body(message, type_, param, code)
    response = web.Response(status=status, body=body, headers=_JSON_HEADERS)
    if headers:
        response.headers.update(headers)
    return response


def _json_response(body: bytes) -> web.Response:
    return web.Response(body=body, headers=_JSON_HEADERS)


# ---------------------------------------------------------------------------------------------
# The application
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _ChatPlan:
    """Everything a chat response needs, resolved from the body, config and directives."""

    directives: _Directives
    model: str
    stream: bool
    include_usage: bool
    completion_tokens: int
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    ttft_s: float
    chunk_s: float


class _MockProvider:
    """Request handlers plus per-app state (request log, shutdown signal)."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self._expected_auth = f"Bearer {config.api_key}" if config.api_key is not None else None
        created = 1700000000
        self._models = {
            model: {"id": model, "object": "model", "created": created, "owned_by": "mock"}
            for model in config.models
        }
        self._models_body = orjson.dumps({"object": "list", "data": list(self._models.values())})
        # Resolved on shutdown so hung requests end promptly instead of stalling runner.cleanup().
        self._shutdown: asyncio.Future[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def on_startup(self, app: web.Application) -> None:
        self._shutdown = asyncio.get_running_loop().create_future()

    async def on_shutdown(self, app: web.Application) -> None:
        if self._shutdown is not None and not self._shutdown.done():
            self._shutdown.set_result(None)

    @staticmethod
    async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
        request_id = request.headers.get("X-Request-ID")
        if request_id is not None:
            response.headers["X-Request-ID"] = request_id

    # -- shared steps --------------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> tuple[Any, bool]:
        """Read + record the request. Returns (parsed JSON or None, whether the body was valid JSON)."""
        raw = await request.read() if request.body_exists else b""
        parsed: Any = None
        valid = False
        if raw:
            try:
                parsed = orjson.loads(raw)
                valid = True
            except orjson.JSONDecodeError:
                pass  # reported as a 400 by the endpoint that needed a body
        self.log.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": {name.lower(): value for name, value in request.headers.items()},
                "json": parsed,
            }
        )
        return parsed, valid

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        expected = self._expected_auth
        if expected is None:
            return None
        supplied = request.headers.get("Authorization")
        if supplied == expected:
            return None
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            if not supplied
            else "Incorrect API key provided."
        )
        # Real OpenAI reports auth failures as invalid_request_error / invalid_api_key.
        return _error_response(401, message, type_="invalid_request_error", code="invalid_api_key")

    @staticmethod
    def _abort(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
        """Kill the connection without a (complete) response.

        aiohttp then tries to finish the returned response, finds the transport closing and treats
        it as a premature client disconnect: nothing is sent and nothing is logged.
        """
        transport = request.transport
        if transport is not None:
            transport.abort()
        return response if response is not None else web.Response()

    async def _hang(
        self, request: web.Request, response: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        """Never answer: park until the client leaves, the server shuts down or HANG_MAX_S pass.

        With handler_cancellation (as start_server configures it) a client disconnect cancels this
        coroutine directly; aiohttp handles that CancelledError silently.
        """
        loop = asyncio.get_running_loop()
        shutdown = self._shutdown if self._shutdown is not None else loop.create_future()
        deadline = loop.time() + HANG_MAX_S
        while not shutdown.done():
            transport = request.transport
            remaining = deadline - loop.time()
            if transport is None or transport.is_closing() or remaining <= 0:
                break
            await asyncio.wait((shutdown,), timeout=min(remaining, HANG_POLL_S))
        return self._abort(request, response)

    async def _pre_response_faults(
        self, request: web.Request, directives: _Directives, ttft_s: float
    ) -> web.StreamResponse | None:
        """Apply hang/ttft/drop/status (common to every endpoint); None means carry on."""
        if directives.hang:
            return await self._hang(request)
        if ttft_s > 0:
            await asyncio.sleep(ttft_s)
        if directives.drop:
            return self._abort(request)
        if directives.status is not None:
            status = directives.status
            headers = {"Retry-After": directives.retry_after} if directives.retry_after is not None else None
            return _error_response(
                status, f"mock fault: status {status}", code=_ERROR_CODES.get(status), headers=headers
            )
        return None

    # -- endpoints -----------------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body, valid = await self._receive(request)
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            plan = self._plan_chat(request, body, valid)
        except _BadRequest as exc:
            return _error_response(400, exc.message, param=exc.param)
        directives = plan.directives
        if (early := await self._pre_response_faults(request, directives, plan.ttft_s)) is not None:
            return early
        if plan.stream:
            return await self._stream_chat(request, plan)
        # A non-stream response is one unit, so "after N chunks" degenerates to "before it".
        if directives.drop_after is not None:
            return self._abort(request)
        if directives.hang_after is not None:
            return await self._hang(request)
        if directives.malformed:
            return _json_response(_MALFORMED_CHAT)
        text = _completion_text(plan.completion_tokens)
        return _json_response(
            orjson.dumps(
                {
                    "id": _new_id("chatcmpl-"),
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": plan.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None,
                            "finish_reason": plan.finish_reason,
                        }
                    ],
                    "usage": _usage(plan.prompt_tokens, plan.completion_tokens, plan.cached_tokens),
                    "system_fingerprint": _SYSTEM_FINGERPRINT,
                }
            )
        )

    def _plan_chat(self, request: web.Request, body: Any, valid: bool) -> _ChatPlan:
        if not valid:
            raise _BadRequest(
                "We could not parse the JSON body of your request. The request body must be valid JSON."
            )
        if not isinstance(body, dict):
            raise _BadRequest("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest("you must provide a model parameter", param="model")
        messages = body.get("messages")
        if messages is None:
            raise _BadRequest("Missing required parameter: 'messages'.", param="messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest("'messages' must be a non-empty array.", param="messages")
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise _BadRequest("'stream' must be a boolean.", param="stream")
        stream_options = body.get("stream_options")
        if stream_options is not None and not isinstance(stream_options, dict):
            raise _BadRequest("'stream_options' must be an object.", param="stream_options")
        include_usage = bool(stream_options and stream_options.get("include_usage") is True)

        prompt_tokens = 3
        text = ""
        for index, message in enumerate(messages):
            text = _message_text(message, index)
            prompt_tokens += 4 + _tokens_for(text)
        directives = _parse_directives(request, text)  # `text` is the last message's

        if directives.prompt_tokens is not None:
            prompt_tokens = directives.prompt_tokens
        cached_tokens = directives.cached_tokens or 0
        if cached_tokens > prompt_tokens:
            raise _BadRequest(
                f"invalid mock directive cached_tokens={cached_tokens}: "
                f"exceeds the prompt tokens ({prompt_tokens})",
                param="cached_tokens",
            )

        limits = [
            limit for name in ("max_tokens", "max_completion_tokens") if (limit := _optional_int(body, name))
        ]
        config = self.config
        finish_reason = "stop"
        if directives.tokens is not None:
            completion_tokens = directives.tokens
        elif limits and min(limits) < config.tokens:
            completion_tokens = min(limits)
            finish_reason = "length"
        else:
            completion_tokens = config.tokens

        ttft_ms = directives.ttft_ms if directives.ttft_ms is not None else config.ttft_ms
        chunk_ms = directives.chunk_ms if directives.chunk_ms is not None else config.chunk_ms
        return _ChatPlan(
            directives=directives,
            model=model,
            stream=stream is True,
            include_usage=include_usage,
            completion_tokens=completion_tokens,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            cached_tokens=cached_tokens,
            ttft_s=ttft_ms / 1000.0,
            chunk_s=chunk_ms / 1000.0,
        )

    async def _stream_chat(self, request: web.Request, plan: _ChatPlan) -> web.StreamResponse:
        # aiohttp buffers the headers until the first write, so after the ttft sleep (already done)
        # the headers and the first event leave together as the first byte.
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
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

        await response.write(event({"role": "assistant", "content": ""}))
        directives = plan.directives
        if directives.malformed:
            await response.write(_MALFORMED_EVENT)

        n = plan.completion_tokens
        # Faults always fire: N >= n means "after the last token, before the finish chunk".
        drop_at = min(directives.drop_after, n) if directives.drop_after is not None else -1
        hang_at = min(directives.hang_after, n) if directives.hang_after is not None else -1
        chunk_s = plan.chunk_s
        token_count = len(_TOKENS)
        for i in range(n + 1):
            if i and chunk_s > 0 and i < n:
                await asyncio.sleep(chunk_s)
            if i == drop_at:
                return self._abort(request, response)
            if i == hang_at:
                return await self._hang(request, response)
            if i == n:
                break
            await response.write(event({"content": _TOKENS[i % token_count]}))

        tail = event({}, plan.finish_reason)
        if include_usage:
            usage_chunk = {
                **base,
                "choices": [],
                "usage": _usage(plan.prompt_tokens, n, plan.cached_tokens),
            }
            tail += b"data: " + orjson.dumps(usage_chunk) + b"\n\n"
        await response.write(tail + _DONE_EVENT)
        return response

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body, valid = await self._receive(request)
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            model, keys, prompt_tokens, dimensions, as_base64, directives = self._plan_embeddings(
                request, body, valid
            )
        except _BadRequest as exc:
            return _error_response(400, exc.message, param=exc.param)
        ttft_ms = directives.ttft_ms if directives.ttft_ms is not None else self.config.ttft_ms
        if (early := await self._pre_response_faults(request, directives, ttft_ms / 1000.0)) is not None:
            return early
        if directives.drop_after is not None:
            return self._abort(request)
        if directives.hang_after is not None:
            return await self._hang(request)
        if directives.malformed:
            return _json_response(_MALFORMED_EMBEDDINGS)
        pick = 1 if as_base64 else 0
        data = [
            {"object": "embedding", "index": index, "embedding": _embedding(key, dimensions)[pick]}
            for index, key in enumerate(keys)
        ]
        return _json_response(
            orjson.dumps(
                {
                    "object": "list",
                    "data": data,
                    "model": model,
                    "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
                }
            )
        )

    def _plan_embeddings(
        self, request: web.Request, body: Any, valid: bool
    ) -> tuple[str, list[str], int, int, bool, _Directives]:
        if not valid:
            raise _BadRequest(
                "We could not parse the JSON body of your request. The request body must be valid JSON."
            )
        if not isinstance(body, dict):
            raise _BadRequest("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest("you must provide a model parameter", param="model")
        keys, prompt_tokens, first_text = _embedding_inputs(body.get("input"))

        dimensions = body.get("dimensions")
        if dimensions is None:
            dimensions = DEFAULT_EMBEDDING_DIMENSIONS
        elif (
            isinstance(dimensions, bool)
            or not isinstance(dimensions, int)
            or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS
        ):
            raise _BadRequest(
                f"dimensions must be an integer in 1..{MAX_EMBEDDING_DIMENSIONS}", param="dimensions"
            )
        encoding_format = body.get("encoding_format")
        if encoding_format not in (None, "float", "base64"):
            raise _BadRequest("encoding_format must be 'float' or 'base64'", param="encoding_format")

        directives = _parse_directives(request, first_text)
        if directives.prompt_tokens is not None:
            prompt_tokens = directives.prompt_tokens
        return model, keys, prompt_tokens, dimensions, encoding_format == "base64", directives

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        await self._receive(request)
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return _json_response(self._models_body)

    async def retrieve_model(self, request: web.Request) -> web.StreamResponse:
        await self._receive(request)
        if (denied := self._unauthorized(request)) is not None:
            return denied
        model_id = request.match_info["model"]
        model = self._models.get(model_id)
        if model is None:
            return _error_response(
                404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
            )
        return _json_response(orjson.dumps(model))

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        await self._receive(request)
        if request.path in _KNOWN_PATHS:
            return _error_response(
                405, f"Method not allowed ({request.method} {request.path})", type_="invalid_request_error"
            )
        return _error_response(
            404, f"Invalid URL ({request.method} {request.path})", type_="invalid_request_error"
        )

    async def get_requests(self, request: web.Request) -> web.StreamResponse:
        return _json_response(orjson.dumps({"requests": list(self.log)}))

    async def clear_requests(self, request: web.Request) -> web.StreamResponse:
        cleared = len(self.log)
        self.log.clear()
        return _json_response(orjson.dumps({"cleared": cleared}))


_KNOWN_PATHS = frozenset({"/v1/chat/completions", "/v1/embeddings", "/v1/models", "/_mock/requests"})


def _embedding_inputs(value: Any) -> tuple[list[str], int, str | None]:
    """Validate ``input``; return (cache keys, prompt tokens, first text input for directives)."""

    def bad(message: str) -> _BadRequest:
        return _BadRequest(message, param="input")

    if isinstance(value, str):
        if not value:
            raise bad("'input' cannot be an empty string.")
        return [value], _tokens_for(value), value
    if not isinstance(value, list) or not value:
        raise bad("'input' must be a non-empty string or array.")
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise bad(f"'input' must have at most {MAX_EMBEDDING_INPUTS} items.")

    def is_token(item: Any) -> bool:
        return isinstance(item, int) and not isinstance(item, bool)

    first = value[0]
    if isinstance(first, str):
        if not all(isinstance(item, str) and item for item in value):
            raise bad("'input' array items must all be non-empty strings.")
        return list(value), sum(_tokens_for(item) for item in value), first
    if is_token(first):
        if not all(is_token(item) for item in value):
            raise bad("'input' token array must contain only integers.")
        return ["tokens:" + ",".join(map(str, value))], len(value), None
    if isinstance(first, list):
        keys = []
        for item in value:
            if not isinstance(item, list) or not item or not all(is_token(token) for token in item):
                raise bad("'input' must be an array of non-empty integer token arrays.")
            keys.append("tokens:" + ",".join(map(str, item)))
        return keys, sum(len(item) for item in value), None
    raise bad("'input' must be a string, an array of strings, or token arrays.")


def build_app(config: MockConfig = MockConfig()) -> web.Application:
    """The aiohttp application; prefer start_server()/run() which also configure the runner."""
    provider = _MockProvider(config)
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    app.on_startup.append(provider.on_startup)
    app.on_shutdown.append(provider.on_shutdown)
    app.on_response_prepare.append(provider.echo_request_id)
    router = app.router
    router.add_post("/v1/chat/completions", provider.chat_completions)
    router.add_post("/v1/embeddings", provider.embeddings)
    router.add_get("/v1/models", provider.list_models, allow_head=False)
    router.add_get("/v1/models/{model}", provider.retrieve_model, allow_head=False)
    router.add_get("/_mock/requests", provider.get_requests, allow_head=False)
    router.add_delete("/_mock/requests", provider.clear_requests)
    # Registered last: everything unmatched (and wrong methods on known paths) gets an
    # OpenAI-shaped error instead of aiohttp's plain-text one.
    router.add_route("*", "/{tail:.*}", provider.not_found)
    return app


# ---------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------


def _format_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class RunningMock:
    """A server started by start_server() in the current event loop."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self._closed = False
        self.host = host
        self.port = port
        self.url = _format_url(host, port)

    async def close(self) -> None:
        """Stop listening, end hung requests, give in-flight ones SHUTDOWN_TIMEOUT_S. Idempotent."""
        if not self._closed:
            self._closed = True
            await self._runner.cleanup()

    async def __aenter__(self) -> RunningMock:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<RunningMock {self.url}>"


async def start_server(
    host: str = "127.0.0.1", port: int = 0, config: MockConfig = MockConfig()
) -> RunningMock:
    """Start serving inside the current event loop; port=0 binds a free port (see .port/.url)."""
    runner = web.AppRunner(
        build_app(config),
        access_log=None,  # no per-request logging on the hot path
        handler_cancellation=True,  # a client that goes away cancels its (possibly hung) handler
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return RunningMock(runner, host, site.port)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


async def _serve_until_signalled(host: str, port: int, config: MockConfig) -> None:
    mock = await start_server(host, port, config)
    print(f"mock provider listening on {mock.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGINT is handled by asyncio.Runner (it cancels this task); SIGTERM should stop us just as
    # cleanly, e.g. when a benchmark harness terminates the process. Where that can't be installed
    # (Windows, not the main thread) SIGTERM keeps its default behaviour.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await mock.close()


def run(host: str = "127.0.0.1", port: int = 8001, config: MockConfig = MockConfig()) -> None:
    """Serve in the foreground until Ctrl-C / SIGTERM; uses uvloop when it is installed."""
    # Ctrl-C is the normal way to stop the foreground server, not an error; the runner (inner
    # context) still closes the loop before the KeyboardInterrupt is suppressed.
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve_until_signalled(host, port, config))


class MockServerThread:
    """Run the mock in a daemon thread with its own event loop (for tests and benchmarks).

    >>> with MockServerThread(config=MockConfig(tokens=4)) as mock:
    ...     base_url = mock.url + "/v1"
    """

    START_TIMEOUT_S = 10.0

    def __init__(self, host: str = "127.0.0.1", port: int = 0, config: MockConfig = MockConfig()) -> None:
        self.host = host
        self.port = port
        self.config = config
        self.url = _format_url(host, port)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> MockServerThread:
        """Start the thread and block until the server is listening (raises if it could not)."""
        if self._thread is not None:
            raise RuntimeError("MockServerThread already started")
        self._thread = threading.Thread(target=self._thread_main, name="mock-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.START_TIMEOUT_S):
            raise RuntimeError(f"mock provider did not start within {self.START_TIMEOUT_S} s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Stop the server (in-flight requests get SHUTDOWN_TIMEOUT_S) and join the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None and thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(self.START_TIMEOUT_S)

    def __enter__(self) -> MockServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        try:
            mock = await start_server(self.host, self.port, self.config)
        except Exception as exc:  # handed to start()'s caller, who re-raises it
            self._error = exc
            self._ready.set()
            return
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.port = mock.port
        self.url = mock.url
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await mock.close()

    def __repr__(self) -> str:
        return f"<MockServerThread {self.url}>"


# ---------------------------------------------------------------------------------------------
# Command line (shared with the `mockprovider` management command)
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = MockConfig()
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port, 0 = any free port (default: 8001)")
    parser.add_argument("--ttft-ms", type=float, default=defaults.ttft_ms, help="delay before first byte")
    parser.add_argument("--chunk-ms", type=float, default=defaults.chunk_ms, help="delay between chunks")
    parser.add_argument("--tokens", type=int, default=defaults.tokens, help="default completion tokens")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <key>'")


def config_from_options(options: Mapping[str, Any]) -> MockConfig:
    """MockConfig from parsed add_arguments() options (argparse vars() or Django's options)."""
    return MockConfig(
        ttft_ms=options["ttft_ms"],
        chunk_ms=options["chunk_ms"],
        tokens=options["tokens"],
        api_key=options["api_key"],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.mockserver", description=__doc__.splitlines()[0])
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except ValueError as exc:
        parser.error(str(exc))
    run(options["host"], options["port"], config)


if __name__ == "__main__":
    main()

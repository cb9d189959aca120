"""The aiohttp application: the handlers for chat completions (JSON and SSE streaming), embeddings,
models and the /_mock request log, plus the shared steps every endpoint takes (recording the
request, the API-key check, and the injected faults: hang, drop, delay, status, malformed), and
build_app() which wires them into routes."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import orjson
from aiohttp import web

from gateway.mockserver.config import (
    CLIENT_MAX_SIZE,
    DEFAULT_CONFIG,
    FAULT_KEYS_KEPT,
    HANG_MAX_S,
    HANG_POLL_S,
    REQUEST_LOG_SIZE,
    MockConfig,
)
from gateway.mockserver.directives import _NO_DIRECTIVES, FAULT_FIELDS, _BadRequest, _Directives
from gateway.mockserver.plans import _ChatPlan, _plan_chat, _plan_embeddings
from gateway.mockserver.wire import (
    _DONE_EVENT,
    _ERROR_CODES,
    _MALFORMED_CHAT,
    _MALFORMED_EMBEDDINGS,
    _MALFORMED_EVENT,
    _SSE_HEADERS,
    _SYSTEM_FINGERPRINT,
    _TOKENS,
    _completion_text,
    _embedding,
    _error_response,
    _json_response,
    _new_id,
    _usage,
)


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
        # Requests seen per fault_key (the fault_times directive), for the keys used last.
        self._fault_counts: collections.OrderedDict[str, int] = collections.OrderedDict()
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
        self._run_fault_script(directives)
        if directives.hang:
            return await self._hang(request)
        if ttft_s > 0:
            await asyncio.sleep(ttft_s)
        if directives.drop:
            return self._abort(request)
        if directives.status is not None:
            status = directives.status
            headers = {"Retry-After": directives.retry_after} if directives.retry_after is not None else None
            message = f"mock fault: status {status}"
            if directives.echo_credential:
                message += "; " + self._quote_credential(request)
            return _error_response(status, message, code=_ERROR_CODES.get(status), headers=headers)
        return None

    def _run_fault_script(self, directives: _Directives) -> None:
        """Count a request of a fault script (fault_times + fault_key); once its faults are spent,
        switch them off for this request, in place (every later step reads the same object)."""
        if directives.fault_key is None or directives.fault_times is None:
            return
        seen = self._fault_counts.pop(directives.fault_key, 0)
        self._fault_counts[directives.fault_key] = seen + 1  # newest last: the oldest go first
        while len(self._fault_counts) > FAULT_KEYS_KEPT:
            self._fault_counts.popitem(last=False)
        if seen >= directives.fault_times:
            for name in FAULT_FIELDS:
                setattr(directives, name, getattr(_NO_DIRECTIVES, name))

    @staticmethod
    def _quote_credential(request: web.Request) -> str:
        """As some upstreams and relays do: quote the credential they were sent (tests the
        gateway's redaction)."""
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return f"the request carried the credential {sent}"

    # -- endpoints -----------------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body, valid = await self._receive(request)
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            plan = _plan_chat(self.config, request, body, valid)
        except _BadRequest as exc:
            return _error_response(400, exc.message, param=exc.param)
        directives = plan.directives
        if (early := await self._pre_response_faults(request, directives, plan.ttft_s)) is not None:
            return early
        if plan.stream and not directives.ignore_stream:
            return await self._stream_chat(request, plan)
        # A non-stream response is one unit, so "after N chunks" degenerates to "before it".
        if directives.drop_after is not None:
            return self._abort(request)
        if directives.hang_after is not None:
            return await self._hang(request)
        if directives.malformed:
            return _json_response(_MALFORMED_CHAT)
        text = _completion_text(plan.completion_tokens)
        if directives.echo_credential:
            text = self._quote_credential(request) + " " + text
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
        if directives.echo_credential:
            await response.write(event({"content": self._quote_credential(request) + " "}))
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
            model, keys, prompt_tokens, dimensions, as_base64, directives = _plan_embeddings(
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
                    "model": f"{model} ({self._quote_credential(request)})"
                    if directives.echo_credential
                    else model,
                    "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
                }
            )
        )

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


def build_app(config: MockConfig = DEFAULT_CONFIG) -> web.Application:
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

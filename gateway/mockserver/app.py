"""The aiohttp application: one handler for generation in every wire format (OpenAI chat, Anthropic
Messages, Gemini, OpenAI Responses: see dialect._Wire), the token counters, embeddings, models and
the /_mock request log, plus the shared steps every endpoint takes (recording the request, the
API-key check, the injected faults: hang, drop, delay, status, malformed, and the one stream loop
that paces chunks and cuts, hangs or fails a stream mid-way), and build_app() which wires them into
routes."""

from __future__ import annotations

import asyncio
import collections
import functools
from typing import Any

import orjson
from aiohttp import web

from gateway.mockserver.anthropic import _AnthropicWire
from gateway.mockserver.chat import _ChatWire, _openai_unauthorized
from gateway.mockserver.config import (
    CLIENT_MAX_SIZE,
    DEFAULT_CONFIG,
    FAULT_KEYS_KEPT,
    HANG_MAX_S,
    HANG_POLL_S,
    MAX_DELAY_MS,
    REQUEST_LOG_SIZE,
    MockConfig,
)
from gateway.mockserver.dialect import _Script, _Wire
from gateway.mockserver.directives import _NO_DIRECTIVES, FAULT_FIELDS, _BadRequest, _Directives
from gateway.mockserver.gemini import METHODS as GEMINI_METHODS
from gateway.mockserver.gemini import _GeminiWire
from gateway.mockserver.gemini import _target as _gemini_target
from gateway.mockserver.plans import _Plan, _plan_embeddings
from gateway.mockserver.responses import _ResponsesWire
from gateway.mockserver.wire import (
    _MALFORMED_EMBEDDINGS,
    _SSE_HEADERS,
    _embedding,
    _error_response,
    _json_response,
)


class _MockProvider:
    """Request handlers plus per-app state (request log, shutdown signal)."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
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
        # A delay before the first byte per model (PUT /_mock/delays), for a slow "deployment".
        self.model_ttft_ms: dict[str, float] = {}

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
        """The OpenAI bearer check, for the endpoints that are not a _Wire (embeddings, models)."""
        if self.config.api_key is None:
            return None
        return _openai_unauthorized(request, self.config.api_key)

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
        self, request: web.Request, wire: _Wire, directives: _Directives, ttft_s: float
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
            message = f"mock fault: status {status}"
            if directives.echo_credential:
                message += "; " + self._quote_credential(request, wire)
            return wire.error(status, message, retry_after=directives.retry_after)
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
    def _quote_credential(request: web.Request, wire: _Wire) -> str:
        """As some upstreams and relays do: quote the credential they were sent (tests the
        gateway's redaction)."""
        return f"the request carried the credential {wire.supplied_credential(request)}"

    # -- endpoints -----------------------------------------------------------------------------

    async def answer(self, request: web.Request, wire: _Wire) -> web.StreamResponse:
        """A generation request in any wire format: the same steps and directives for each."""
        body, valid = await self._receive(request)
        if (
            self.config.api_key is not None
            and (denied := wire.unauthorized(request, self.config.api_key)) is not None
        ):
            return denied
        try:
            plan = wire.plan(self.config, request, body, valid)
        except _BadRequest as exc:
            return wire.error(400, exc.message, param=exc.param)
        directives = plan.directives
        ttft_s = plan.ttft_s
        if directives.ttft_ms is None and plan.model in self.model_ttft_ms:
            ttft_s = self.model_ttft_ms[plan.model] / 1000.0
        if (early := await self._pre_response_faults(request, wire, directives, ttft_s)) is not None:
            return early
        echo = self._quote_credential(request, wire) if directives.echo_credential else None
        if plan.stream and not directives.ignore_stream:
            return await self._stream(request, wire.script(plan, echo), plan, wire.malformed_event)
        # A non-stream response is one unit, so "after N chunks" degenerates to "before it".
        if directives.drop_after is not None:
            return self._abort(request)
        if directives.hang_after is not None:
            return await self._hang(request)
        if directives.error_after is not None:
            return wire.error(500, "mock fault: error before the answer")
        if directives.malformed:
            return _json_response(wire.malformed_body)
        return _json_response(wire.document(plan, echo))

    async def _stream(
        self, request: web.Request, script: _Script, plan: _Plan, malformed_event: bytes
    ) -> web.StreamResponse:
        # aiohttp buffers the headers until the first write, so after the ttft sleep (already done)
        # the headers and the first event leave together as the first byte.
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        directives = plan.directives
        head = script.head + malformed_event if directives.malformed else script.head
        if head:
            await response.write(head)

        chunks = script.chunks
        n = len(chunks)
        # Faults always fire: N >= n means "after the last chunk, before the terminal events".
        drop_at = min(directives.drop_after, n) if directives.drop_after is not None else -1
        hang_at = min(directives.hang_after, n) if directives.hang_after is not None else -1
        error_at = min(directives.error_after, n) if directives.error_after is not None else -1
        chunk_s = plan.chunk_s
        for i in range(n + 1):
            if i and chunk_s > 0 and i < n:
                await asyncio.sleep(chunk_s)
            if i == drop_at:
                return self._abort(request, response)
            if i == hang_at:
                return await self._hang(request, response)
            if i == error_at:
                await response.write(script.fail(i))
                return response
            if i == n:
                break
            await response.write(chunks[i])
        await response.write(script.tail)
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
        if (
            early := await self._pre_response_faults(request, _CHAT, directives, ttft_ms / 1000.0)
        ) is not None:
            return early
        if directives.drop_after is not None:
            return self._abort(request)
        if directives.hang_after is not None:
            return await self._hang(request)
        if directives.error_after is not None:
            return _CHAT.error(500, "mock fault: error before the answer")
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
                    "model": f"{model} ({self._quote_credential(request, _CHAT)})"
                    if directives.echo_credential
                    else model,
                    "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
                }
            )
        )

    async def anthropic_count_tokens(self, request: web.Request) -> web.StreamResponse:
        body, valid = await self._receive(request)
        if (
            self.config.api_key is not None
            and (denied := _ANTHROPIC.unauthorized(request, self.config.api_key)) is not None
        ):
            return denied
        try:
            tokens = _ANTHROPIC.count_tokens(request, body, valid)
        except _BadRequest as exc:
            return _ANTHROPIC.error(400, exc.message)
        return _json_response(orjson.dumps({"input_tokens": tokens}))

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        """``/v1beta/models/{model}:{method}``: one route, as the colon is part of the segment."""
        model, method = _gemini_target(request)
        if not model or method not in GEMINI_METHODS:
            await self._receive(request)
            return _GEMINI.error(
                404, f"models/{request.match_info['target']} is not found for API version v1beta."
            )
        if method != "countTokens":
            return await self.answer(request, _GEMINI)
        body, valid = await self._receive(request)
        if (
            self.config.api_key is not None
            and (denied := _GEMINI.unauthorized(request, self.config.api_key)) is not None
        ):
            return denied
        try:
            tokens = _GEMINI.count_tokens(request, body, valid)
        except _BadRequest as exc:
            return _GEMINI.error(400, exc.message)
        details = [{"modality": "TEXT", "tokenCount": tokens}]
        return _json_response(orjson.dumps({"totalTokens": tokens, "promptTokensDetails": details}))

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
        if request.path.startswith("/v1beta/"):
            return _GEMINI.error(404, f"Invalid URL ({request.method} {request.path})")
        if request.path in _KNOWN_PATHS:
            return _error_response(
                405, f"Method not allowed ({request.method} {request.path})", type_="invalid_request_error"
            )
        return _error_response(
            404, f"Invalid URL ({request.method} {request.path})", type_="invalid_request_error"
        )

    async def get_requests(self, request: web.Request) -> web.StreamResponse:
        return _json_response(orjson.dumps({"requests": list(self.log)}))

    async def put_delay(self, request: web.Request) -> web.StreamResponse:
        """`{"model": M, "ttft_ms": X}`: answers for model M wait X ms before their first byte
        (a ttft_ms directive still wins); X = 0 removes the delay."""
        try:
            body = orjson.loads(await request.read())
            model, ttft_ms = body["model"], float(body["ttft_ms"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return _error_response(400, 'expected {"model": "...", "ttft_ms": 0..600000}')
        if not isinstance(model, str) or not 0 <= ttft_ms <= MAX_DELAY_MS:
            return _error_response(400, 'expected {"model": "...", "ttft_ms": 0..600000}')
        if ttft_ms:
            self.model_ttft_ms[model] = ttft_ms
        else:
            self.model_ttft_ms.pop(model, None)
        return _json_response(orjson.dumps({"delays": self.model_ttft_ms}))

    async def clear_delays(self, request: web.Request) -> web.StreamResponse:
        self.model_ttft_ms.clear()
        return _json_response(orjson.dumps({"delays": {}}))

    async def clear_requests(self, request: web.Request) -> web.StreamResponse:
        cleared = len(self.log)
        self.log.clear()
        return _json_response(orjson.dumps({"cleared": cleared}))


_KNOWN_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/responses",
        "/_mock/requests",
        "/_mock/delays",
    }
)
_CHAT = _ChatWire()
_ANTHROPIC = _AnthropicWire()
_GEMINI = _GeminiWire()
_RESPONSES = _ResponsesWire()


def build_app(config: MockConfig = DEFAULT_CONFIG) -> web.Application:
    """The aiohttp application; prefer start_server()/run() which also configure the runner."""
    provider = _MockProvider(config)
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    app.on_startup.append(provider.on_startup)
    app.on_shutdown.append(provider.on_shutdown)
    app.on_response_prepare.append(provider.echo_request_id)
    router = app.router
    router.add_post("/v1/chat/completions", functools.partial(provider.answer, wire=_CHAT))
    router.add_post("/v1/messages", functools.partial(provider.answer, wire=_ANTHROPIC))
    router.add_post("/v1/messages/count_tokens", provider.anthropic_count_tokens)
    router.add_post("/v1/responses", functools.partial(provider.answer, wire=_RESPONSES))
    router.add_post("/v1beta/models/{target}", provider.gemini)
    router.add_post("/v1/embeddings", provider.embeddings)
    router.add_get("/v1/models", provider.list_models, allow_head=False)
    router.add_get("/v1/models/{model}", provider.retrieve_model, allow_head=False)
    router.add_get("/_mock/requests", provider.get_requests, allow_head=False)
    router.add_delete("/_mock/requests", provider.clear_requests)
    router.add_put("/_mock/delays", provider.put_delay)
    router.add_delete("/_mock/delays", provider.clear_delays)
    # Registered last: everything unmatched (and wrong methods on known paths) gets an
    # OpenAI-shaped error instead of aiohttp's plain-text one.
    router.add_route("*", "/{tail:.*}", provider.not_found)
    return app

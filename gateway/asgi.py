"""A lean ASGI handler for the /v1 API, in front of the same adrf views.

Django's generic ASGIHandler costs more per call than the whole request path: it opens a
thread-sensitive context per request (a new executor thread the first time anything synchronous
runs), sends request_started / request_finished through synchronous receivers (thread hops), and
runs the session, CSRF, auth and messages middleware that an API key call never uses. The bench
measured it at several times the gateway's own work, so /v1 calls come straight here:

- the body is read (at most TOLLHOUSE_MAX_BODY_BYTES + 1 bytes are kept: enough to answer 413),
- the view runs as a task that is cancelled if the client disconnects (as Django does), so a
  stream's upstream call is cancelled and the call still settled,
- the response is sent as it is, streamed chunk by chunk.

Database connections are not recycled by request signals here; the only database reads on this
path (cache misses) go through `gateway.db.run_db`, which does it itself. Everything else (the
admin, the console, /v1 paths that are not API routes) goes to Django's handler.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponseBase
from django.http.request import HttpHeaders

from config.hot import hot
from gateway import errors
from gateway.dialects.base import Codec

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientGone(Exception):
    pass


class GatewayHandler:
    def __init__(
        self, routes: dict[str, tuple[str, Callable[..., Any]]], codecs: dict[str, Codec] | None = None
    ) -> None:
        self.routes = routes  # path -> (the one method it answers, view)
        self.codecs = codecs or {}  # path -> the codec whose shape its errors take (default OpenAI's)
        # A templated path (`/v1/models/{model}`) answers every non-empty rest after its prefix.
        self.prefixes = {path[: path.index("{")]: path for path in routes if "{" in path}

    def route_of(self, path: str) -> str | None:
        """The registered route (as written in the table) that answers `path`, if any."""
        if path in self.routes:
            return path
        for prefix, route in self.prefixes.items():
            if path.startswith(prefix) and len(path) > len(prefix):
                return route
        return None

    def handles(self, scope: Scope) -> bool:
        return scope["type"] in ("http", "websocket") and self.route_of(scope["path"]) is not None

    async def refuse_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket handshake (a server with WebSockets on): refused before it is accepted, with
        the 426 an HTTP upgrade gets where the server supports answering it, else a close."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if "websocket.http.response" not in (scope.get("extensions") or {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        codec = self.codecs.get(self.route_of(scope["path"]) or "")
        error = _upgrade_refused()
        response = codec.error_response(error) if codec is not None else error.response()
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
        await send(
            {"type": "websocket.http.response.start", "status": response.status_code, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": response.content})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.refuse_websocket(scope, receive, send)
            return
        route = self.route_of(scope["path"]) or scope["path"]
        method, view = self.routes[route]
        codec = self.codecs.get(route)
        if _wants_websocket(scope):
            # Codex tries a WebSocket on /v1/responses first; 426 is the one answer it takes as
            # "not supported here" and falls back to HTTP streaming at once, with no retries
            # (codex-rs/core/src/client.rs: UPGRADE_REQUIRED -> WebsocketStreamOutcome::FallbackToHttp).
            await self._send_error(send, _upgrade_refused(), codec)
            return
        if scope["method"] != method:
            await self._send_error(send, errors.method_not_allowed(scope["method"], method), codec)
            return
        try:
            body = await self._read_body(receive)
        except ClientGone:
            return
        request = GatewayRequest(scope, io.BytesIO(body))
        request.__dict__["headers"] = ScopeHeaders(scope["headers"])  # instead of HttpHeaders(META)
        # The view runs in this task; one watcher task cancels it if the client goes away (and with
        # it the upstream call). One task per call, not two: a task is a visible cost per call.
        this = asyncio.current_task()
        assert this is not None
        watcher = _Watcher(this)
        listen = asyncio.ensure_future(watcher.listen(receive))
        try:
            await self._respond(view, request, send)
        except asyncio.CancelledError:
            if not watcher.cancelled:
                raise  # the server's own cancellation (shutdown), not the client leaving
            this.uncancel()
        finally:
            watcher.done = True
            if not listen.done():
                listen.cancel()
            for rest in request.after_response:
                await _finish(rest, request)

    async def _send_error(self, send: Send, error: errors.GatewayError, codec: Codec | None) -> None:
        response = codec.error_response(error) if codec is not None else error.response()
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": response.content})

    async def _read_body(self, receive: Receive) -> bytes:
        keep = hot.TOLLHOUSE_MAX_BODY_BYTES + 1
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if size < keep and chunk:
                chunks.append(chunk[: keep - size])
                size += len(chunks[-1])
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _respond(self, view: Callable[..., Any], request: GatewayRequest, send: Send) -> None:
        try:
            response: HttpResponseBase = await view(request)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The views turn every failure into an error response; this is the last resort.
            logger.exception("unhandled error on %s", request.path)
            response = errors.InternalError("The gateway failed to handle this request.").response()
        if request.after_response:
            # Yield once: the Redis commands whose replies are awaited after the answer (queued, see
            # Call.settle_soon) are written by callbacks scheduled before this task resumes, so Redis
            # has them before the client has the answer; one write for all the calls that queued.
            await asyncio.sleep(0)
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        try:
            if response.streaming:
                # The executor's chunks are bytes already: read as they come, not through Django's
                # wrapper that converts each one again.
                chunks = response._iterator if response.is_async else response.streaming_content  # type: ignore[attr-defined]
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            else:
                await send({"type": "http.response.body", "body": response.content})  # type: ignore[attr-defined]
        finally:
            release(response)


class GatewayRequest(ASGIRequest):
    """Django's request, with what the call leaves to do once its answer has left: a settlement's
    reply (gateway/calls.py `Call.settle_soon`), awaited here after the last byte is sent."""

    def __init__(self, scope: Scope, body: io.BytesIO) -> None:
        super().__init__(scope, body)
        self.after_response: list[Coroutine[Any, Any, None]] = []


async def _finish(rest: Coroutine[Any, Any, None], request: ASGIRequest) -> None:
    try:
        await rest
    except Exception:  # each part handles its own failures; this is the last resort
        logger.exception("finishing %s after its answer failed", request.path)


class ScopeHeaders(HttpHeaders):
    """`request.headers` read straight from the ASGI scope, with HttpHeaders' meaning: names compared
    case-insensitively (`_` as `-` on lookup), names holding `_` dropped (they could pass for
    hyphenated ones), repeats joined with commas, iterated as `Title-Case`. Django builds the same
    from META, which it first builds from the scope: one pass instead of two per call."""

    def __init__(self, headers: Any) -> None:  # no super().__init__(): _store is built here
        store: dict[str, tuple[str, str]] = {}
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1").lower()
            if "_" in name:
                continue
            value = raw_value.decode("latin-1")
            seen = store.get(name)
            store[name] = (name.title(), value) if seen is None else (seen[0], f"{seen[1]},{value}")
        self._store = store

    def get(self, key: str, default: Any = None) -> Any:
        item = self._store.get(key.replace("_", "-").lower())
        return default if item is None else item[1]


def release(response: HttpResponseBase) -> None:
    """`response.close()` without its `request_finished` signal: Django's receivers recycle the
    database connections and caches of the request's context, which this path never opens (its one
    database read, a cache miss, runs in gateway/db.py's thread, which recycles its own)."""
    closers = response._resource_closers  # type: ignore[attr-defined]
    for closer in closers:
        try:
            closer()
        except Exception:  # as Django's close(): one failing closer must not keep the others from running
            logger.debug("a response resource failed to close", exc_info=True)
    closers.clear()
    response.closed = True


class _Watcher:
    """Waits for the client's disconnect while the view runs, and cancels the view's task then."""

    __slots__ = ("cancelled", "done", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelled = False  # set when this watcher cancelled the view
        self.done = False  # the view has finished: a late disconnect must cancel nothing

    async def listen(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not self.done:
                    self.cancelled = True
                    self.task.cancel()
                return


def _wants_websocket(scope: Scope) -> bool:
    """An HTTP request asking to become a WebSocket (the server runs with WebSockets off, so the
    upgrade reaches us as a plain request)."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


def _upgrade_refused() -> errors.GatewayError:
    error = errors.GatewayError(
        "WebSocket is not supported here; use HTTP (POST with stream: true for server-sent events).",
        code="websocket_not_supported",
    )
    error.status, error.type = 426, "invalid_request_error"
    return error


def gateway_handler() -> GatewayHandler:
    from gateway import views
    from gateway.dialects import ENDPOINTS

    return GatewayHandler(
        {endpoint.route.path: (endpoint.route.method, views.view_for(endpoint)) for endpoint in ENDPOINTS},
        {endpoint.route.path: endpoint.codec for endpoint in ENDPOINTS if endpoint.codec is not None},
    )

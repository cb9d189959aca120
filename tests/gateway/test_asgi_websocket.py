"""gateway/asgi.py: a WebSocket upgrade on a /v1 route is refused at once with 426, which Codex takes as
"use HTTP" (codex-rs: UPGRADE_REQUIRED -> FallbackToHttp), whether the server has WebSockets off (the
upgrade arrives as a plain HTTP request: `manage.py serve` runs uvicorn with ws="none") or on."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from gateway.asgi import gateway_handler


def run(scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    queue = list(incoming)

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(gateway_handler()(scope, receive, send))
    return sent


UPGRADE = [(b"connection", b"Upgrade"), (b"upgrade", b"websocket"), (b"sec-websocket-version", b"13")]


def test_it_answers_an_http_upgrade_with_426_in_the_routes_dialect():
    for path, shape in (("/v1/responses", "openai"), ("/v1/messages", "anthropic")):
        sent = run(
            {"type": "http", "path": path, "method": "GET", "headers": UPGRADE, "query_string": b""},
            [{"type": "http.request", "body": b"", "more_body": False}],
        )
        assert sent[0]["status"] == 426
        body = orjson.loads(sent[1]["body"])
        assert (
            body["type"] == "error"
            if shape == "anthropic"
            else body["error"]["code"] == "websocket_not_supported"
        )


def test_it_refuses_a_websocket_handshake_before_accepting_it():
    scope = {"type": "websocket", "path": "/v1/responses", "headers": UPGRADE, "query_string": b""}
    with_extension = run(
        {**scope, "extensions": {"websocket.http.response": {}}}, [{"type": "websocket.connect"}]
    )
    assert with_extension[0]["type"] == "websocket.http.response.start" and with_extension[0]["status"] == 426
    without = run(scope, [{"type": "websocket.connect"}])
    assert without == [{"type": "websocket.close", "code": 1008}]

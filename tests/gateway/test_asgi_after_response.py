"""gateway/asgi.py: what a call leaves for after its answer (a JSON answer's settlement reply, see
gateway/calls.py `Call.settle_soon`) is awaited once the last byte is sent, and always: when the
client has gone, and when one part fails."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.http import HttpResponse

from gateway.asgi import GatewayHandler, GatewayRequest

SCOPE = {
    "type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"", "headers": [],
    "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
}  # fmt: skip


def serve(view: Any, incoming: list[dict[str, Any]]) -> list[Any]:
    """Run one request through the handler; `sent` holds the messages sent and, in their place, what
    the parts left for later noted when they ran."""
    sent: list[Any] = []
    queue = list(incoming)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # the client waits for its answer
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    async def main() -> None:
        handler = GatewayHandler({"/v1/chat/completions": ("POST", lambda request: view(request, sent))})
        await asyncio.wait_for(handler(SCOPE, receive, send), 5)

    asyncio.run(main())
    return sent


BODY = {"type": "http.request", "body": b"{}", "more_body": False}


def test_what_a_call_leaves_runs_after_the_answer_is_sent():
    async def view(request: GatewayRequest, sent: list[Any]) -> HttpResponse:
        async def later(name: str) -> None:
            sent.append(name)
            await asyncio.sleep(0.01)  # a reply that takes its time: the answer has left already
            sent.append(f"{name} done")

        request.after_response.extend([later("first"), later("second")])
        return HttpResponse(b"{}")

    assert serve(view, [BODY]) == [
        "http.response.start",
        "http.response.body",
        "first",
        "first done",
        "second",
        "second done",
    ]


def test_it_runs_when_the_client_left_before_the_answer():
    async def view(request: GatewayRequest, sent: list[Any]) -> HttpResponse:
        async def later() -> None:
            await asyncio.sleep(0)
            sent.append("settled")

        request.after_response.append(later())
        await asyncio.sleep(3600)  # the upstream call, cancelled when the client goes
        raise AssertionError("not reached")

    assert serve(view, [BODY, {"type": "http.disconnect"}]) == ["settled"]


def test_a_part_that_fails_is_logged_and_the_others_still_run(caplog):
    async def view(request: GatewayRequest, sent: list[Any]) -> HttpResponse:
        async def broken() -> None:
            raise RuntimeError("boom")

        async def later() -> None:
            sent.append("settled")

        request.after_response.extend([broken(), later()])
        return HttpResponse(b"{}")

    with caplog.at_level(logging.ERROR, logger="gateway.asgi"):
        assert serve(view, [BODY]) == ["http.response.start", "http.response.body", "settled"]
    assert "finishing /v1/chat/completions after its answer failed" in caplog.text


def test_the_handler_yields_once_before_the_answer_so_writes_queued_by_the_view_go_first():
    """A settlement queued by the view (config/resp.py `send_soon`) is written by a callback the view
    scheduled; the answer must not leave before it."""

    async def view(request: GatewayRequest, sent: list[Any]) -> HttpResponse:
        async def later() -> None:
            sent.append("reply read")

        asyncio.get_running_loop().call_soon(sent.append, "redis write")
        request.after_response.append(later())
        return HttpResponse(b"{}")

    assert serve(view, [BODY]) == ["redis write", "http.response.start", "http.response.body", "reply read"]

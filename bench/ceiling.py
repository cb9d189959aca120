"""The Python ceiling: the least a Python gateway can do on this machine (issue 17).

A raw ASGI app — no Django, no authentication, no accounting — that reads the request body and
POSTs it, with its content-type and authorization headers, through ONE shared ``aiohttp.ClientSession``
(a keep-alive pool made in the lifespan startup) to the mock provider's chat completions URL, the
same path the gateway calls. It answers with the upstream's status, content-type and body; a
``text/event-stream`` answer is relayed chunk by chunk (``more_body``) as it arrives.

Served exactly like the gateway: uvicorn with uvloop and httptools, one worker, the access log
off, its proxy-header rewriting off; bench/run.py pins it to the gateway's core with taskset::

    python bench/ceiling.py --port 8001 --mock-url http://127.0.0.1:PORT

(or the mock URL in the environment variable CEILING_MOCK_URL). ``GET /healthz`` answers 200.
Whatever throughput it reaches at c=32 is the Python ceiling the gateway's governed path is
measured against (the target: at least a third of it).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import aiohttp
import uvicorn

UPSTREAM_PATH = "/v1/chat/completions"
_FORWARDED = (b"content-type", b"authorization")


class Ceiling:
    def __init__(self, mock_url: str) -> None:
        self.upstream = mock_url.rstrip("/") + UPSTREAM_PATH
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The same pool size as the load: no request ever waits for a connection.
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
                self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/healthz":
            await _answer(send, 200, b"text/plain", b"ok")
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _FORWARDED
        }
        assert self.session is not None
        try:
            async with self.session.post(self.upstream, data=b"".join(chunks), headers=headers) as upstream:
                content_type = upstream.headers.get("content-type", "application/octet-stream")
                if content_type.startswith("text/event-stream"):
                    await send(
                        {
                            "type": "http.response.start",
                            "status": upstream.status,
                            "headers": [(b"content-type", content_type.encode("latin-1"))],
                        }
                    )
                    async for chunk in upstream.content.iter_any():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b""})
                    return
                body = await upstream.read()
        except aiohttp.ClientError as exc:
            await _answer(send, 502, b"text/plain", f"upstream: {exc}".encode())
            return
        await _answer(send, upstream.status, content_type.encode("latin-1"), body)


async def _answer(send: Any, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="The bench's Python ceiling (raw ASGI + aiohttp pass-through)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--mock-url", default=os.environ.get("CEILING_MOCK_URL"), help="the mock provider's base URL"
    )
    args = parser.parse_args(argv)
    if not args.mock_url:
        parser.error("--mock-url (or CEILING_MOCK_URL) is required")
    uvicorn.run(
        Ceiling(args.mock_url),
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        proxy_headers=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

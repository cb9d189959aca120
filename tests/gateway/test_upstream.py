"""gateway/upstream.py: the hot path's HTTP client (aiohttp, pooled), against a real loopback
server: what it sends, what it keeps (nothing), what it follows (nothing), and its timeouts."""

from __future__ import annotations

import asyncio
import gzip

import aiohttp
import pytest
from aiohttp import web

from gateway.providers.base import UpstreamRequest
from gateway.upstream import UpstreamClient, close, lower_headers


async def _serve(routes: web.RouteTableDef) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def test_it_sends_the_adapters_headers_and_bytes_keeps_no_cookie_and_follows_no_redirect():
    seen: list[dict[str, str]] = []
    routes = web.RouteTableDef()

    @routes.post("/v1/chat")
    async def chat(request: web.Request) -> web.Response:
        seen.append({**request.headers, "body": (await request.read()).decode()})
        response = web.Response(body=gzip.compress(b'{"ok": true}'), headers={"Content-Encoding": "gzip"})
        response.set_cookie("session", "tenant-a")
        return response

    @routes.post("/moved")
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/v1/chat")

    async def go():
        runner, base = await _serve(routes)
        client = UpstreamClient()
        try:
            bodies = []
            for _ in range(2):
                response = await client.send(
                    UpstreamRequest(
                        url=base + "/v1/chat",
                        content=b'{"model": "m"}',
                        headers={"authorization": "Bearer upstream-key", "x-request-id": "r1"},
                    ),
                    connect_timeout=1,
                    read_timeout=1,
                )
                bodies.append((response.status, await response.read()))
                close(response)
            redirect = await client.send(
                UpstreamRequest(url=base + "/moved", content=b"", headers={}),
                connect_timeout=1,
                read_timeout=1,
            )
            location = lower_headers(redirect)["location"]
            close(redirect)
            return bodies, redirect.status, location
        finally:
            await client.close()
            await runner.cleanup()

    bodies, redirect_status, location = asyncio.run(go())
    assert bodies == [(200, b'{"ok": true}')] * 2  # decoded
    assert len(seen) == 2  # the redirect was not followed
    assert redirect_status == 302 and location == "/v1/chat"
    for headers in seen:
        assert headers["Authorization"] == "Bearer upstream-key" and headers["body"] == '{"model": "m"}'
        assert "Content-Type" not in headers  # none added to what the adapter said
        assert "Cookie" not in headers  # the first answer's cookie never rides on the next call


def test_a_slow_answer_times_out_and_a_closed_port_is_a_connection_error():
    routes = web.RouteTableDef()

    @routes.post("/slow")
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    async def go():
        runner, base = await _serve(routes)
        client = UpstreamClient()
        try:
            with pytest.raises(TimeoutError):
                await client.send(
                    UpstreamRequest(url=base + "/slow", content=b"", headers={}),
                    connect_timeout=1,
                    read_timeout=0.2,
                )
            with pytest.raises(aiohttp.ClientConnectionError):
                await client.send(
                    UpstreamRequest(url="http://127.0.0.1:9/", content=b"", headers={}),
                    connect_timeout=1,
                    read_timeout=1,
                )
        finally:
            await client.close()
            await runner.cleanup()

    asyncio.run(go())


def test_repeated_header_names_are_joined_and_lower_cased():
    routes = web.RouteTableDef()

    @routes.post("/")
    async def answer(request: web.Request) -> web.Response:
        response = web.Response(text="{}")
        response.headers.add("Retry-After", "3")
        response.headers.add("X-Thing", "a")
        response.headers.add("X-Thing", "b")
        return response

    async def go():
        runner, base = await _serve(routes)
        client = UpstreamClient()
        try:
            response = await client.send(
                UpstreamRequest(url=base + "/", content=b"", headers={}), connect_timeout=1, read_timeout=1
            )
            headers = lower_headers(response)
            close(response)
            return headers
        finally:
            await client.close()
            await runner.cleanup()

    headers = asyncio.run(go())
    assert headers["retry-after"] == "3" and headers["x-thing"] == "a, b"

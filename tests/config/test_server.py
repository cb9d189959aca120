"""config.server.CappedHttpToolsProtocol, the HTTP protocol of `manage.py serve`, over real sockets:
slow clients are cut off (a head within TOLLHOUSE_HEADER_TIMEOUT_SECONDS, a body within
TOLLHOUSE_BODY_TIMEOUT_SECONDS), an address holds at most TOLLHOUSE_MAX_CONNECTIONS_PER_ADDRESS
connections (trusted proxies are not counted), and calls and streams are not touched by any of it.

These run against the in-process gateway, which reads the settings at each connection, so each test
sets its own limits; tests/config/test_serve.py shows `manage.py serve` takes them from the
environment."""

from __future__ import annotations

import contextlib
import socket
import time
from ipaddress import ip_network

import httpx
import orjson
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def until_closed(sock: socket.socket, *, trickle: bytes = b"", every: float = 0.1) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took; meanwhile `trickle` is
    sent every `every` seconds (a slow client that never finishes)."""
    started = time.monotonic()
    received = b""
    sock.settimeout(every)
    while time.monotonic() - started < 20:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if trickle:
                with contextlib.suppress(OSError):
                    sock.sendall(trickle)
            continue
        except ConnectionResetError:
            break
        if not data:
            break
        received += data
    return received, time.monotonic() - started


def body_of(answer: bytes) -> dict:
    return orjson.loads(answer.split(b"\r\n\r\n", 1)[1])


def test_it_cuts_off_a_slowloris_client_within_the_header_timeout(gateway_server, world, settings):
    settings.TOLLHOUSE_HEADER_TIMEOUT_SECONDS = 1.0
    with connect(gateway_server) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        answer, took = until_closed(sock, trickle=b"X-Slow: a\r\n", every=0.2)
    assert 0.9 <= took < 2.0, took
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert body_of(answer)["error"]["code"] == "request_timeout"


def test_it_closes_a_connection_that_never_sends_a_byte(gateway_server, world, settings):
    settings.TOLLHOUSE_HEADER_TIMEOUT_SECONDS = 1.0
    with connect(gateway_server) as sock:
        answer, took = until_closed(sock)
    assert 0.9 <= took < 2.0 and answer == b""


def test_it_cuts_off_a_body_shorter_than_its_content_length_within_the_body_timeout(
    gateway_server, world, settings
):
    settings.TOLLHOUSE_BODY_TIMEOUT_SECONDS = 1.5
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + world.key.encode()
        + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with connect(gateway_server) as sock:
        sock.sendall(head + b'{"model": ')
        answer, took = until_closed(sock, trickle=b" ", every=0.2)  # a byte now and then is no excuse
    assert 1.4 <= took < 2.5, took
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert "body" in body_of(answer)["error"]["message"]


def test_the_connection_cap_holds_and_frees(gateway_server, world, settings):
    settings.TOLLHOUSE_MAX_CONNECTIONS_PER_ADDRESS = 3
    auth = {"Authorization": f"Bearer {world.key}"}
    held = [connect(gateway_server) for _ in range(3)]
    try:
        time.sleep(0.2)
        over = httpx.post(gateway_server + "/v1/chat/completions", headers=auth, json=CHAT)
        assert over.status_code == 429
        assert over.json()["error"]["code"] == "too_many_connections"
        assert over.headers["retry-after"] == "1" and over.headers["connection"] == "close"
        held.pop().close()
        time.sleep(0.2)
        assert httpx.post(gateway_server + "/v1/chat/completions", headers=auth, json=CHAT).status_code == 200
    finally:
        for sock in held:
            sock.close()


def test_connections_from_a_trusted_proxy_are_not_capped(gateway_server, world, settings):
    settings.TOLLHOUSE_MAX_CONNECTIONS_PER_ADDRESS = 2
    settings.TOLLHOUSE_TRUSTED_PROXIES = (ip_network("127.0.0.1/32"),)
    held = [connect(gateway_server) for _ in range(4)]
    try:
        time.sleep(0.2)
        response = httpx.post(
            gateway_server + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {world.key}"},
            json=CHAT,
        )
        assert response.status_code == 200
    finally:
        for sock in held:
            sock.close()


def test_calls_and_long_streams_are_not_cut_by_the_read_timeouts(gateway_server, world, settings):
    settings.TOLLHOUSE_HEADER_TIMEOUT_SECONDS = 0.5
    settings.TOLLHOUSE_BODY_TIMEOUT_SECONDS = 0.5
    auth = {"Authorization": f"Bearer {world.key}"}
    with httpx.Client(base_url=gateway_server, headers=auth, timeout=30) as client:
        # A stream of about 2.5 s, five times the body timeout: it is about reading the request.
        body = {
            "model": "gpt-4.1",
            "stream": True,
            "messages": [{"role": "user", "content": "[mock tokens=30 chunk_ms=80]"}],
        }
        started = time.monotonic()
        with client.stream("POST", "/v1/chat/completions", json=body) as stream:
            assert stream.status_code == 200
            events = [line for line in stream.iter_lines() if line.startswith("data: ")]
        assert time.monotonic() - started > 2.0
        assert events[-1] == "data: [DONE]" and len(events) >= 31
        # The same connection, kept alive, serves the next calls.
        for _ in range(3):
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
            assert client.get("/v1/models").status_code == 200


def test_a_head_pipelined_behind_a_stream_is_not_timed_while_the_stream_is_answered(
    gateway_server, world, settings
):
    settings.TOLLHOUSE_HEADER_TIMEOUT_SECONDS = 0.5
    body = orjson.dumps(
        {
            "model": "gpt-4.1",
            "stream": True,
            "messages": [{"role": "user", "content": "[mock tokens=20 chunk_ms=80]"}],
        }
    )
    stream = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + world.key.encode()
        + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with connect(gateway_server) as sock:
        sock.sendall(stream + b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the next head, unfinished
        time.sleep(1.0)  # twice the header timeout, while the stream is being answered
        sock.sendall(b"Connection: close\r\n\r\n")
        answer, _ = until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"data: [DONE]" in answer and b"408" not in answer.split(b"data: [DONE]")[1]
    assert answer.count(b"HTTP/1.1 200 ") == 2 and answer.endswith(b'{"status": "ok"}')

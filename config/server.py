"""How Tollhouse is served: uvicorn, with what its command line cannot say.

- The client IP is the gateway's to decide (config.clientip, from TOLLHOUSE_TRUSTED_PROXIES), so
  uvicorn's own proxy-header rewriting is off: by default it believes X-Forwarded-For from
  127.0.0.1, and any local process could then pick its address.
- The request head (request line + headers) is capped at TOLLHOUSE_MAX_HEADER_BYTES and a larger
  one is answered 431. httptools buffers a header until it is complete, so without a cap one
  50 MB header is held in memory, and the worker keeps that memory afterwards.
- Slow clients cannot hold connections: a request's head and body must arrive within
  TOLLHOUSE_HEADER_TIMEOUT_SECONDS and TOLLHOUSE_BODY_TIMEOUT_SECONDS (uvicorn has neither), and an
  address may hold at most TOLLHOUSE_MAX_CONNECTIONS_PER_ADDRESS connections per process.

`manage.py serve` runs it; `make run`, the README and the benchmark use that command. It also gives
the workers a fresh PROMETHEUS_MULTIPROC_DIR (`metrics_dir_prepare`), so /metrics sums them all.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from config import clientip


def _error_response(status: bytes, message: str, code: str, *extra: bytes) -> bytes:
    """A complete HTTP/1.1 answer in the API's error shape, written by the protocol itself (the app
    never sees these requests), always closing the connection."""
    body = orjson.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    )
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: application/json\r\n"
        b"content-length: "
        + str(len(body)).encode()
        + b"\r\n"
        + b"".join(extra)
        + b"connection: close\r\n\r\n"
        + body
    )


def _head_too_large_response() -> bytes:
    return _error_response(
        b"431 Request Header Fields Too Large",
        f"The request headers are larger than the limit of {settings.TOLLHOUSE_MAX_HEADER_BYTES} bytes.",
        "request_headers_too_large",
    )


def _timeout_response(what: str, seconds: float) -> bytes:
    return _error_response(
        b"408 Request Timeout",
        f"The request {what} did not arrive within {seconds:g} seconds.",
        "request_timeout",
    )


async def _too_many_connections(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI app of a connection over its address's cap: reads and drops the request's body (so
    the answer is not lost to a reset), then answers 429 and closes."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if not message.get("more_body", False):
            break
    limit = settings.TOLLHOUSE_MAX_CONNECTIONS_PER_ADDRESS
    body = orjson.dumps(
        {
            "error": {
                "message": f"Too many open connections from this address (at most {limit} per gateway "
                "process); reuse or close idle ones, then retry.",
                "type": "rate_limit_error",
                "param": None,
                "code": "too_many_connections",
            }
        }
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _open_connections(server_state: Any) -> Counter[str]:
    """Open connections per client address, shared by the protocols of one server (one process)."""
    counts: Counter[str] | None = getattr(server_state, "tollhouse_connections", None)
    if counts is None:
        counts = server_state.tollhouse_connections = Counter()
    return counts


class CappedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with what a gateway on the open internet needs on top:

    - a request head larger than TOLLHOUSE_MAX_HEADER_BYTES is answered 431. Two checks, because a
      head arrives either way: bytes still in the head after a chunk was parsed are counted as they
      come (so a 50 MB header is cut off after the cap, not buffered whole), and a head that arrived
      complete within one chunk is measured when it is complete;
    - time limits on reading a request: its head must be complete within
      TOLLHOUSE_HEADER_TIMEOUT_SECONDS of its first byte (or of the connection, for the first one),
      its body within TOLLHOUSE_BODY_TIMEOUT_SECONDS of the head; otherwise 408 and the connection is
      closed (a connection that never sent a byte is just closed). A slow client (slowloris, a body
      shorter than its Content-Length) held a connection for as long as it liked. Nothing limits
      the answer: a stream lasts as long as the upstream streams. Time the server itself holds a
      request back (reading paused while an earlier pipelined one is answered) does not count;
    - at most TOLLHOUSE_MAX_CONNECTIONS_PER_ADDRESS open connections per socket peer address, per
      process: a connection over it gets 429 `too_many_connections` to its first request, then is
      closed. Peers in TOLLHOUSE_TRUSTED_PROXIES are not counted: a load balancer carries everyone's
      connections, and the clients behind it are its to limit.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_limit = settings.TOLLHOUSE_MAX_HEADER_BYTES
        self._in_head = True
        self._head_bytes = 0
        self._rejected = False
        self._head_done = False  # a head was completed while parsing the current chunk
        # Reading deadlines: which part of a request is awaited ("head", "body", or "idle" between
        # requests, where uvicorn's keep-alive timeout applies), since when, and its timer. The
        # timer is armed after a chunk is parsed, so a request read in one chunk costs none.
        self._phase = "head"
        self._phase_since = 0.0
        self._head_begun = False  # a byte of the awaited head arrived
        self._deadline: asyncio.TimerHandle | None = None
        self._counted_peer: str | None = None

    # -- connections per address -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._phase_since = self.loop.time()
        self._arm_deadline()
        limit = settings.TOLLHOUSE_MAX_CONNECTIONS_PER_ADDRESS
        peer = clientip.parse_ip(self.client[0]) if self.client else None
        if not limit or peer is None or any(peer in net for net in settings.TOLLHOUSE_TRUSTED_PROXIES):
            return
        counts = _open_connections(self.server_state)
        self._counted_peer = str(peer)
        counts[self._counted_peer] += 1
        if counts[self._counted_peer] > limit:
            if counts[self._counted_peer] == limit + 1:  # once per crossing, not per connection
                self.logger.warning(
                    "%s has more than %d open connections: answering 429 to the extra ones", peer, limit
                )
            self.app = _too_many_connections

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self._counted_peer is not None:
            counts = _open_connections(self.server_state)
            counts[self._counted_peer] -= 1
            if counts[self._counted_peer] <= 0:
                del counts[self._counted_peer]
            self._counted_peer = None
        super().connection_lost(exc)

    # -- reading deadlines -------------------------------------------------------------------------

    def _enter(self, phase: str) -> None:
        self._cancel_deadline()
        self._phase = phase
        self._phase_since = self.loop.time()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _arm_deadline(self) -> None:
        if self._deadline is not None or self._phase == "idle" or self.transport.is_closing():
            return
        limit = (
            settings.TOLLHOUSE_HEADER_TIMEOUT_SECONDS
            if self._phase == "head"
            else settings.TOLLHOUSE_BODY_TIMEOUT_SECONDS
        )
        remaining = max(0.0, self._phase_since + limit - self.loop.time())
        self._deadline = self.loop.call_later(remaining, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._phase == "idle":
            return
        answering = self.cycle is not None and not self.cycle.response_complete
        if self.flow.read_paused or (self._phase == "head" and answering):
            # The server holds this request back, or is still answering the one before it (a
            # pipelined head): not the client's slowness, and no 408 may cut into that answer.
            # Its time starts again.
            self._phase_since = self.loop.time()
            self._arm_deadline()
            return
        if self._phase == "head":
            seconds = settings.TOLLHOUSE_HEADER_TIMEOUT_SECONDS
            if self._head_begun:
                self.logger.info("request head not complete after %g s: answered 408", seconds)
                self.transport.write(_timeout_response("headers", seconds))
        else:
            seconds = settings.TOLLHOUSE_BODY_TIMEOUT_SECONDS
            self.logger.info("request body not complete after %g s: answered 408", seconds)
            if self.cycle is not None and not self.cycle.response_started:
                self.transport.write(_timeout_response("body", seconds))
        # The app, if it is waiting for the body, is told the client went away.
        self._rejected = True
        self.transport.close()

    # -- parser callbacks --------------------------------------------------------------------------

    def _reject(self) -> None:
        self._rejected = True
        self.logger.warning("request head over %d bytes: answered 431", self._head_limit)
        self.transport.write(_head_too_large_response())
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase == "idle" or not self._head_begun:
            # The head's time runs from its first byte: the next request on a kept-alive
            # connection, or the first one (the connection's own idle time was bounded as well).
            self._enter("head")
        self._head_begun = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_done = True
        self._head_bytes = 0
        self._enter("body")
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self._head_limit:
            self._reject()  # and the app never sees this request
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        self._enter("idle")
        self._head_begun = False
        super().on_message_complete()
        self._in_head = True

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        self._parse(data)
        self._arm_deadline()

    def _parse(self, data: bytes) -> None:
        was_in_head = self._in_head
        self._head_done = False
        super().data_received(data)
        # Only chunks that were head from start to end are counted: a chunk in which a head was
        # completed (that head was measured whole) or a body ended is let through, so a body is
        # never mistaken for a header.
        if (
            self._rejected
            or self._head_done
            or not (was_in_head and self._in_head)
            or self.transport.is_closing()
        ):
            return
        self._head_bytes += len(data)
        if self._head_bytes > self._head_limit:
            self._reject()


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def uvicorn_options(*, host: str, port: int, workers: int, log_level: str) -> dict[str, Any]:
    """The uvicorn configuration of every Tollhouse gateway process."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "loop": "uvloop",
        "http": CappedHttpToolsProtocol,
        "ws": "none",  # nothing here speaks WebSocket; an upgrade would leave the connection limits
        "proxy_headers": False,
        "server_header": False,
        "access_log": False,
        "lifespan": "on",
        "log_level": log_level,
        "timeout_graceful_shutdown": 30,
    }


METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir_prepare(*, workers: int) -> tuple[Path | None, bool]:
    """Give the workers of this serve run an empty PROMETHEUS_MULTIPROC_DIR; returns it (None: one
    process, values in memory) and whether it is ours to remove when serving ends.

    prometheus_client chooses between in-memory and per-process-file values when it is first imported
    (gateway/metrics.py), so this runs before uvicorn starts the workers: they are spawned, not
    forked, and inherit the variable. Several workers get a fresh private temporary directory. A
    directory given in the variable is used whatever the number of workers, but the value files of
    an earlier run are removed from it: counters start again from zero with the server, as
    Prometheus expects of a restart, instead of adding up the workers of every run. (Two serve runs
    must not share one.) A single worker without the variable needs no files at all, and has no
    temporary directory to leave behind: uvicorn ends a single-process server with the SIGTERM it
    received, so nothing would run after it to remove one.
    """
    configured = os.environ.get(METRICS_DIR_VARIABLE, "").strip()
    if configured:
        path = Path(configured)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        return path, False
    if workers == 1:
        return None, False
    path = Path(tempfile.mkdtemp(prefix="tollhouse-metrics-"))  # 0700
    os.environ[METRICS_DIR_VARIABLE] = str(path)
    return path, True

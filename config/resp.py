"""A lean Redis client for the request path: one pipelined connection per event loop, URL and timeout.

Admission and settlement (gateway/governor.py) make two Redis calls per governed request. Through
redis-py's asyncio client one EVALSHA costs the gateway about 240 µs of CPU (connection pool, a
timeout context per read, argument packing in Python); written straight to one connection and read
with hiredis it costs about 70 µs (measured on this project's 2-core box, 30 arguments). That is the
difference between governance costing a quarter of the gateway's throughput and costing little.

What it does: commands are written to one connection as they come, replies are matched to them in
order (Redis answers in order); a reply parsed by hiredis; a timeout per command (a timer, not a
task); a reply that comes after its command timed out is read and dropped, so the order holds. A
broken connection fails every command in flight with ConnectionError and the next command opens
a new one. Errors are redis-py's exception classes, so callers handle both clients alike. URLs with
TLS (`rediss://`) or a unix socket are not handled here: `supports()` says so and callers use
redis-py for those.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import Any

import hiredis
import redis.exceptions
from redis.asyncio.connection import parse_url


def supports(url: str) -> bool:
    return url.startswith("redis://")


def _pack(parts: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if isinstance(part, bytes):
            data = part
        elif isinstance(part, str):
            data = part.encode()
        elif isinstance(part, int):
            data = b"%d" % part
        else:
            raise TypeError(f"cannot send a {type(part).__name__} to Redis")
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _error(message: str) -> redis.exceptions.RedisError:
    if message.startswith("NOSCRIPT"):
        return redis.exceptions.NoScriptError(message)
    return redis.exceptions.ResponseError(message)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        # In the order sent: each command's future and the loop time it times out at.
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.outgoing: list[bytes] = []  # commands of this loop iteration, written together
        self.sweep: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = transport  # type: ignore[assignment]

    def send(self, loop: asyncio.AbstractEventLoop, command: bytes, timeout: float) -> asyncio.Future[Any]:
        """Queue a command: the commands of one loop iteration go out in one write (at c=32 several
        calls admit in the same iteration: one system call instead of one each). Commands are
        queued only with a write already scheduled (`call_soon`, run in order): a task that yields
        once after queueing one resumes after it has been written."""
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append((future, loop.time() + timeout))
        if not self.outgoing:
            loop.call_soon(self._write)
        self.outgoing.append(command)
        if self.sweep is None:
            self.sweep = loop.call_at(loop.time() + timeout, self._expire, loop)
        return future

    def _write(self) -> None:
        data = b"".join(self.outgoing)
        self.outgoing.clear()
        if self.transport is not None and self.lost is None:
            self.transport.write(data)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time out every command past its time (one timer for all of them, not one per command:
        the deadlines are in sending order, so only the oldest ones can be due)."""
        self.sweep = None
        now = loop.time()
        for future, deadline in self.waiting:
            if deadline > now:
                self.sweep = loop.call_at(deadline, self._expire, loop)
                return
            if not future.done():
                future.set_exception(redis.exceptions.TimeoutError("Redis did not answer in time"))

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(redis.exceptions.ConnectionError(f"Redis protocol error: {exc}"))
                if self.transport is not None:
                    self.transport.close()
                return
            if reply is False:
                return
            future = self.waiting.popleft()[0]
            if future.done():
                continue  # its command timed out; the reply is dropped in order
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis.exceptions.ConnectionError(f"Redis closed the connection ({exc or 'EOF'})"))

    def _fail(self, error: Exception) -> None:
        self.lost = error
        self.outgoing.clear()
        if self.sweep is not None:
            self.sweep.cancel()
            self.sweep = None
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(error)


class RespClient:
    def __init__(self, url: str, *, timeout: float) -> None:
        options = parse_url(url)
        self.host = options.get("host", "localhost")
        self.port = int(options.get("port", 6379))
        self.db = int(options.get("db", 0))
        self.username = options.get("username")
        self.password = options.get("password")
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            protocol = self._protocol
            if protocol is not None and protocol.lost is None:
                return protocol
            loop = asyncio.get_running_loop()
            try:
                transport, fresh = await asyncio.wait_for(
                    loop.create_connection(_Protocol, self.host, self.port), self.timeout
                )
            except (OSError, TimeoutError) as exc:
                raise redis.exceptions.ConnectionError(
                    f"cannot connect to Redis at {self.host}:{self.port} ({type(exc).__name__})"
                ) from None
            fresh.transport = transport
            self._protocol = protocol = fresh
            if self.password:
                auth = (self.username, self.password) if self.username else (self.password,)
                await self.call("AUTH", *auth)
            if self.db:
                await self.call("SELECT", self.db)
            return protocol

    async def call(self, *parts: Any) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connection()
        return await protocol.send(asyncio.get_running_loop(), _pack(parts), self.timeout)

    def send_soon(self, *parts: Any) -> asyncio.Future[Any] | None:
        """Queue a command on the open connection and leave its reply to be awaited later; None if
        no connection is open yet (then `call`). It is written with this loop iteration's other
        commands, before a task that yields once (`asyncio.sleep(0)`) resumes: a JSON answer's
        settlement reaches Redis before the answer leaves (gateway/asgi.py yields so)."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            return None
        return protocol.send(asyncio.get_running_loop(), _pack(parts), self.timeout)

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


# A loop's clients, one per URL and timeout: a connection's commands all have the same timeout, so
# their deadlines are in sending order (what `_Protocol._expire` relies on), and a caller with a short
# timeout (the response cache, the usage sink) never changes a longer one's (admission, settlement).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, float], RespClient]] = (
    weakref.WeakKeyDictionary()
)


# The last loop, URL and timeout asked about and their client: a server has one loop, so the weak
# dictionary (a hash of the loop and a weak reference per call) is only consulted when they change.
_last: tuple[asyncio.AbstractEventLoop, str, float, RespClient] | None = None


def loop_client(url: str, *, timeout: float) -> RespClient:
    """The running event loop's client for `url` with this per-command timeout (an asyncio
    connection belongs to one loop)."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0] is loop and last[2] == timeout and last[1] == url:
        return last[3]
    clients = _clients.get(loop)
    if clients is None:
        clients = _clients[loop] = {}
    client = clients.get((url, timeout))
    if client is None:
        client = clients[(url, timeout)] = RespClient(url, timeout=timeout)
    _last = (loop, url, timeout, client)
    return client


def close_loop_client() -> None:
    global _last
    loop = asyncio.get_running_loop()
    if _last is not None and _last[0] is loop:
        _last = None
    for client in _clients.pop(loop, {}).values():
        client.close()

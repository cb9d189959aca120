"""gateway.invalidation.Subscriber: a worker never waits for Redis to start. With Redis hung or
refusing, start() returns at once with ONE warning naming REDIS_URL, keeps retrying in the
background, and logs once when the channel comes back and once when it is lost again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from urllib.parse import urlsplit

import orjson
import pytest
import redis
from django.conf import settings

from config import changes
from gateway.invalidation import Subscriber
from tests.support.process import SilentServer

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis")
REAL_REDIS_URL = settings.REDIS_URL


class FastSubscriber(Subscriber):
    # Short enough for a test; the logic is the same.
    startup_wait = 0.5
    connect_timeout = 0.5
    keepalive = 0.5
    pong_timeout = 0.5
    retry_min, retry_max = 0.05, 0.2


class SwitchableRedis:
    """A TCP proxy in front of the real Redis. Up: it forwards. Down: it accepts and never answers,
    and stops forwarding on the connections it has (a Redis that hangs)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port or 6379)
        self.db = parts.path
        self.up = False
        self.generation = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.sock.getsockname()[1]}{self.db}"
        self.held: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def set_up(self, up: bool) -> None:
        self.generation += 1
        self.up = up

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(client)
            if self.up:
                upstream = socket.create_connection(self.target)
                self.held.append(upstream)
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(
                        target=self._pump, args=(source, sink, self.generation), daemon=True
                    ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, generation: int) -> None:
        source.settimeout(0.05)
        while not self.closed:
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            if self.generation == generation:  # after a switch, this connection hangs
                with contextlib.suppress(OSError):
                    sink.sendall(data)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for held in self.held:
            held.close()


@pytest.fixture(autouse=True)
def _own_channel(settings):
    """A channel of these tests' own: the live gateway of other tests listens on the usual one."""
    settings.TOLLHOUSE_REDIS_PREFIX = "thd-subscriber-test:"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gateway.invalidation" and r.levelno >= logging.INFO
    ]


async def eventually(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


def publish_for_real(message: dict[str, str]) -> None:
    with redis.Redis.from_url(REAL_REDIS_URL) as client:
        client.publish(changes.channel(), orjson.dumps(message))


def test_it_subscribes_before_start_returns(caplog):
    received: list[dict] = []

    async def main() -> None:
        subscriber = FastSubscriber(received.append)
        await subscriber.start()
        publish_for_real({"kind": "key", "prefix": "abc"})
        await eventually(lambda: {"kind": "key", "prefix": "abc"} in received)
        await subscriber.stop()

    asyncio.run(main())
    assert received[0] == {"kind": "all"}  # a fresh subscription starts from a clean slate
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("redis_state", ["hung", "refusing"])
def test_it_starts_at_once_with_one_warning_when_redis_is_away(settings, caplog, redis_state):
    with contextlib.ExitStack() as stack:
        if redis_state == "hung":
            settings.REDIS_URL = stack.enter_context(SilentServer()).url.replace(
                "redis://", "redis://:pw-not-logged@"
            )
        else:
            with socket.create_server(("127.0.0.1", 0)) as closed:
                port = closed.getsockname()[1]
            settings.REDIS_URL = f"redis://:pw-not-logged@127.0.0.1:{port}/0"

        async def main() -> float:
            subscriber = Subscriber(lambda message: None)  # the real timings
            started = time.monotonic()
            await subscriber.start()
            elapsed = time.monotonic() - started
            await asyncio.sleep(2.5)  # several retries in the background
            stop_started = time.monotonic()
            await subscriber.stop()
            assert time.monotonic() - stop_started < 1.0
            return elapsed

        elapsed = asyncio.run(main())

    assert elapsed < Subscriber.startup_wait + 0.5
    logged = warnings_of(caplog)
    assert len(logged) == 1, logged
    assert "Redis at REDIS_URL is unreachable" in logged[0]
    assert "TOLLHOUSE_CACHE_TTL" in logged[0] and "retrying in the background" in logged[0]
    assert "pw-not-logged" not in caplog.text


def test_it_logs_once_per_state_change_and_catches_up_when_redis_returns(settings, caplog):
    proxy = SwitchableRedis(REAL_REDIS_URL)
    settings.REDIS_URL = proxy.url
    received: list[dict] = []

    async def main() -> None:
        subscriber = FastSubscriber(received.append)
        await subscriber.start()  # Redis hangs: degraded
        await asyncio.sleep(1.0)
        assert received == []

        proxy.set_up(True)  # back: resubscribed, caches dropped, messages flow
        await eventually(lambda: {"kind": "all"} in received)
        publish_for_real({"kind": "key", "prefix": "k1"})
        await eventually(lambda: {"kind": "key", "prefix": "k1"} in received)

        proxy.set_up(False)  # hangs mid-subscription: noticed by the keepalive PING
        await eventually(lambda: len(warnings_of(caplog)) == 3)
        await asyncio.sleep(1.0)  # retries, silently

        received.clear()
        proxy.set_up(True)
        await eventually(lambda: {"kind": "all"} in received)
        await subscriber.stop()

    try:
        asyncio.run(main())
    finally:
        proxy.close()
    logged = warnings_of(caplog)
    assert len(logged) == 4, logged
    assert "is unreachable" in logged[0]
    assert "reachable again" in logged[1]
    assert "stopped answering" in logged[2]
    assert "reachable again" in logged[3]


def test_it_ignores_an_unreadable_message(caplog):
    received: list[dict] = []

    async def main() -> None:
        subscriber = FastSubscriber(received.append)
        await subscriber.start()
        with redis.Redis.from_url(REAL_REDIS_URL) as client:
            client.publish(changes.channel(), b"not json")
            client.publish(changes.channel(), b"[1, 2]")
        publish_for_real({"kind": "all", "n": "2"})
        await eventually(lambda: {"kind": "all", "n": "2"} in received)
        await subscriber.stop()

    asyncio.run(main())
    assert received == [{"kind": "all"}, {"kind": "all", "n": "2"}]
    assert sum("unreadable" in m for m in warnings_of(caplog)) == 2


def test_a_subscriber_on_another_database_of_the_same_server_hears_nothing(settings):
    """Two installations on one Redis server, each in its own database: pub/sub channels are
    server-wide, so the channel names the database, and one's changes never drop the other's caches."""
    parts = urlsplit(REAL_REDIS_URL)
    own_db = int(parts.path.strip("/") or 0)
    other_url = parts._replace(path=f"/{(own_db + 1) % 16}").geturl()
    ours: list[dict] = []
    theirs: list[dict] = []
    change = {"kind": "key", "prefix": "ours"}

    async def main() -> None:
        settings.REDIS_URL = other_url  # the other installation's worker
        other = FastSubscriber(theirs.append)
        await other.start()
        settings.REDIS_URL = REAL_REDIS_URL
        mine = FastSubscriber(ours.append)
        await mine.start()
        changes.publish([change])  # how every committed change goes out
        await eventually(lambda: change in ours)
        await asyncio.sleep(0.5)
        await mine.stop()
        await other.stop()

    asyncio.run(main())
    assert theirs == [{"kind": "all"}]  # its own clean slate on subscribing, and nothing of ours

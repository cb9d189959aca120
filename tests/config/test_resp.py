"""The lean Redis client of the request path (config/resp.py), against a real Redis: replies in
order under pipelining, errors as redis-py's classes, timeouts that keep the order, and a new
connection after the old one broke."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
import redis
from django.conf import settings

from config import resp
from tests.support.process import SilentServer, free_port

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis")


def run(coroutine):
    return asyncio.run(coroutine)


def test_it_answers_pipelined_commands_in_order_in_the_selected_database():
    async def go():
        client = resp.RespClient(settings.REDIS_URL, timeout=2)
        key = "resp-test:counter"
        await client.call("DEL", key)
        replies = await asyncio.gather(*(client.call("INCR", key) for _ in range(200)))
        echo = await client.call("EVAL", "return {ARGV[1], 7, {'x'}}", 0, b"bytes\x00in")
        client.close()
        return replies, echo

    replies, echo = run(go())
    assert replies == list(range(1, 201))
    assert echo == [b"bytes\x00in", 7, [b"x"]]
    # The same database as REDIS_URL's (redis-py agrees on what the counter holds).
    assert int(redis.Redis.from_url(settings.REDIS_URL).get("resp-test:counter")) == 200


def test_errors_are_redis_pys_classes():
    async def go():
        client = resp.RespClient(settings.REDIS_URL, timeout=2)
        try:
            with pytest.raises(redis.exceptions.NoScriptError):
                await client.call("EVALSHA", "0" * 40, 0)
            with pytest.raises(redis.exceptions.ResponseError):
                await client.call("NOSUCHCOMMAND")
            return await client.call("PING")  # the connection is still usable
        finally:
            client.close()

    assert run(go()) == b"PONG"


def test_a_redis_that_never_answers_costs_one_timeout_and_a_refused_port_a_connection_error():
    async def go(url):
        client = resp.RespClient(url, timeout=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(redis.exceptions.RedisError) as caught:
            await client.call("PING")
        client.close()
        return caught.value, loop.time() - started

    with SilentServer() as silent:
        error, took = run(go(f"redis://127.0.0.1:{silent.port}/0"))
    assert isinstance(error, redis.exceptions.TimeoutError) and took < 1.0
    error, _ = run(go(f"redis://127.0.0.1:{free_port()}/0"))
    assert isinstance(error, redis.exceptions.ConnectionError)


def test_a_late_reply_is_dropped_in_order_and_a_broken_connection_is_replaced():
    """A fake Redis that answers the first command late and then hangs up: the timed-out command's
    reply must not be taken for the next command's, and the next call opens a new connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    connections = []

    def serve():
        for index in range(2):
            conn, _ = listener.accept()
            connections.append(conn)
            if index == 0:
                conn.recv(1024)  # first command: answered too late
                threading.Event().wait(0.4)
                conn.sendall(b"+LATE\r\n")
                conn.recv(1024)  # second command
                conn.sendall(b"+SECOND\r\n")
                conn.close()  # and the connection breaks
            else:
                conn.recv(1024)
                conn.sendall(b"+FRESH\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def go():
        client = resp.RespClient(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        with pytest.raises(redis.exceptions.TimeoutError):
            await client.call("PING")
        await asyncio.sleep(0.3)  # the late reply arrives meanwhile and is dropped
        second = await client.call("PING")
        await asyncio.sleep(0.1)  # the server hangs up
        fresh = await client.call("PING")
        client.close()
        return second, fresh

    try:
        assert run(go()) == (b"SECOND", b"FRESH")
    finally:
        thread.join(timeout=5)
        listener.close()
        for conn in connections:
            conn.close()


def test_it_refuses_what_it_cannot_send():
    with pytest.raises(TypeError):
        resp._pack(("SET", "k", 1.5))
    assert resp.supports("redis://h:6379/0") and not resp.supports("rediss://h:6379/0")


def test_the_commands_of_one_loop_iteration_go_out_in_one_write():
    async def go():
        client = resp.RespClient(settings.REDIS_URL, timeout=2)
        await client.call("PING")  # connected
        protocol = client._protocol
        assert protocol is not None and protocol.transport is not None
        writes = []
        write = protocol.transport.write

        def counted(data):
            writes.append(data)
            write(data)

        protocol.transport.write = counted  # type: ignore[method-assign]
        try:
            replies = await asyncio.gather(*(client.call("ECHO", str(n)) for n in range(50)))
        finally:
            client.close()
        return replies, writes

    replies, writes = run(go())
    assert replies == [str(n).encode() for n in range(50)]
    assert len(writes) == 1 and writes[0].count(b"ECHO") == 50


def test_each_command_times_out_at_its_own_deadline_with_one_timer():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(sock.accept()), daemon=True).start()

    async def go():
        client = resp.RespClient(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.ensure_future(client.call("PING"))
        await asyncio.sleep(0.15)
        second = asyncio.ensure_future(client.call("PING"))
        times = []
        for future in (first, second):
            with pytest.raises(redis.exceptions.TimeoutError):
                await future
            times.append(loop.time() - started)
        client.close()
        return times

    try:
        first, second = run(go())
    finally:
        sock.close()
    assert 0.25 <= first < 0.4  # its own 0.3 s, not the second's
    assert 0.4 <= second < 0.6  # 0.15 + 0.3


def test_a_loops_client_keeps_the_timeout_its_caller_asked_for():
    """The response cache asks with TOLLHOUSE_REDIS_TIMEOUT, admission with the governor's (longer)
    one: whoever asks first must not set the other's timeout."""

    async def go():
        short = resp.loop_client(settings.REDIS_URL, timeout=0.25)
        long = resp.loop_client(settings.REDIS_URL, timeout=1.0)
        again = (
            resp.loop_client(settings.REDIS_URL, timeout=0.25),
            resp.loop_client(settings.REDIS_URL, timeout=1.0),
        )
        pongs = await asyncio.gather(short.call("PING"), long.call("PING"))
        resp.close_loop_client()
        fresh = resp.loop_client(settings.REDIS_URL, timeout=1.0)
        resp.close_loop_client()
        return short, long, again, pongs, fresh

    short, long, again, pongs, fresh = run(go())
    assert (short.timeout, long.timeout) == (0.25, 1.0)
    assert again == (short, long) and pongs == [b"PONG", b"PONG"]
    assert fresh is not long  # closed with its loop's others, then made anew
    assert short._protocol is None and long._protocol is None


def test_a_command_sent_soon_is_written_before_a_task_that_yields_once_resumes():
    """Settlement's command must reach Redis before the answer it settles reaches the client: queued
    with this loop iteration's others (one write for all), by a callback scheduled before the task
    that queued it yields, so it is written by the time that task resumes; its reply is awaited
    later."""
    key = "resp-test:soon"

    async def go():
        client = resp.RespClient(settings.REDIS_URL, timeout=2)
        blocking = redis.Redis.from_url(settings.REDIS_URL)
        try:
            assert client.send_soon("PING") is None  # no connection yet: the caller uses `call`
            await client.call("DEL", key)
            protocol = client._protocol
            assert protocol is not None
            loop = asyncio.get_running_loop()
            queued = protocol.send(loop, resp._pack(("APPEND", key, "a")), 2)  # this iteration's write
            soon = client.send_soon("APPEND", key, "b")
            assert soon is not None and not soon.done()
            before = blocking.get(key)  # the loop has not run: nothing written yet
            await asyncio.sleep(0)
            after = blocking.get(key)  # written together, in order, before this task resumed
            return before, after, await queued, await soon
        finally:
            client.close()

    assert run(go()) == (None, b"ab", 1, 2)

"""The real gateway (uvicorn + config.asgi) in a background thread of the test process.

Running in-process means it shares Django's settings and the test database with the tests, and
tests can clear its in-process caches; it still serves real HTTP on a real socket.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import uvicorn


class GatewayServerThread:
    def __init__(self) -> None:
        # IPPROTO_TCP, so that asyncio sets TCP_NODELAY on accepted connections (with protocol 0 it
        # does not, and Nagle's algorithm adds ~40 ms to every answer).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        from config.asgi import application
        from config.server import CappedHttpToolsProtocol

        # As `manage.py serve` runs it: our protocol (header cap), no proxy-header rewriting.
        config = uvicorn.Config(
            application,
            lifespan="on",
            log_level="warning",
            access_log=False,
            loop="asyncio",
            http=CappedHttpToolsProtocol,
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="gateway-server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> GatewayServerThread:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            if not self.thread.is_alive():
                break
            threading.Event().wait(0.05)
        raise RuntimeError("the gateway server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

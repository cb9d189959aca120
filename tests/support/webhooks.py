"""A webhook receiver for the alert tests: a real local HTTP server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network

# The receiver listens on loopback, where webhooks may not go unless the operator allows it
# (config/egress.py): a test that sends to it sets `settings.TOLLHOUSE_WEBHOOK_ALLOW = LOOPBACK`.
LOOPBACK = (ip_network("127.0.0.0/8"),)


class Receiver:
    """A local HTTP endpoint answering each POST with the next status of `statuses` (the last one
    repeats), and keeping what it received."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses[min(len(receiver.received), len(receiver.statuses) - 1)]
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/budget?token=s3cr3t-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

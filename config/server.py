"""How Tollhouse is served: uvicorn, with two things its command line cannot say.

- The client IP is the gateway's to decide (config.clientip, from TOLLHOUSE_TRUSTED_PROXIES), so
  uvicorn's own proxy-header rewriting is off: by default it believes X-Forwarded-For from
  127.0.0.1, and any local process could then pick its address.
- The request head (request line + headers) is capped at TOLLHOUSE_MAX_HEADER_BYTES and a larger
  one is answered 431. httptools buffers a header until it is complete, so without a cap one
  50 MB header is held in memory, and the worker keeps that memory afterwards.

`manage.py serve` runs it; `make run`, the README and the benchmark use that command. It also gives
the workers a fresh PROMETHEUS_MULTIPROC_DIR (`metrics_dir_prepare`), so /metrics sums them all.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _head_too_large_response() -> bytes:
    body = orjson.dumps(
        {
            "error": {
                "message": "The request headers are larger than the limit of "
                f"{settings.TOLLHOUSE_MAX_HEADER_BYTES} bytes.",
                "type": "invalid_request_error",
                "param": None,
                "code": "request_headers_too_large",
            }
        }
    )
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


class CappedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 once a request head exceeds the cap.

    Two checks, because a head arrives either way: bytes still in the head after a chunk was parsed
    are counted as they come (so a 50 MB header is cut off after the cap, not buffered whole), and a
    head that arrived complete within one chunk is measured when it is complete.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_limit = settings.TOLLHOUSE_MAX_HEADER_BYTES
        self._in_head = True
        self._head_bytes = 0
        self._rejected = False
        self._head_done = False  # a head was completed while parsing the current chunk

    def _reject(self) -> None:
        self._rejected = True
        self.logger.warning("request head over %d bytes: answered 431", self._head_limit)
        self.transport.write(_head_too_large_response())
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_done = True
        self._head_bytes = 0
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
        super().on_message_complete()
        self._in_head = True

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
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

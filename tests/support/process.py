"""The gateway and the Celery worker as real subprocesses, and the outages they must survive:
a Redis that never answers, a database that cannot be reached.

A subprocess reads its settings fresh from the environment, as production does, so these are the
way to test what happens at start (a hung Redis) and across processes (a real worker draining
what a real gateway emitted). They see only committed data: use `transactional_db` (the `world`
fixture does) and `subprocess_env` to point them at the test database.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """A DATABASE_URL for the database Django is connected to (pytest-django's test database)."""
    user = quote(settings_dict.get("USER") or "postgres", safe="")
    password = settings_dict.get("PASSWORD")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{settings_dict['NAME']}"


def subprocess_env(*, settings_dict: Mapping[str, Any], redis_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(settings_dict),
        "REDIS_URL": redis_url,
        "TOLLHOUSE_TESTING": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class _Process:
    """A child process whose output goes to a temporary file (a pipe nobody reads would block it)."""

    name = "process"

    def __init__(self, command: list[str], *, env: Mapping[str, str]) -> None:
        self.command = command
        self.env = dict(env)
        # Closed (and removed) in stop().
        self._log: IO[bytes] = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"tollhouse-{self.name}-", suffix=".log"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        # Its output joins the run's logs that the session scans for secrets (tests/conftest.py).
        from tests.support.secrets import session_log_append

        session_log_append(self.log(), source=self.name)
        self._log.close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Any:
        raise NotImplementedError


class GatewayProcess(_Process):
    """`manage.py serve` on a free port, started when /healthz answers."""

    name = "gateway"

    def __init__(self, *, env: Mapping[str, str], startup_timeout: float = 30.0, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        command = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if workers != 1:
            command += ["--workers", str(workers)]
        # Started the way the README and `make run` start it.
        super().__init__(command, env=env)

    def start(self) -> GatewayProcess:
        self.spawn()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the gateway exited at start:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the gateway did not answer /healthz in {self.startup_timeout} s:\n{self.log()}")


class WorkerProcess(_Process):
    """`celery -A config worker` (solo pool); with `beat=True` it runs the schedule too (-B)."""

    name = "worker"

    def __init__(self, *, env: Mapping[str, str], beat: bool = False) -> None:
        self._schedule_dir = tempfile.TemporaryDirectory(prefix="tollhouse-beat-")
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo"]
        command += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
        if beat:
            command += ["-B", "--schedule", str(Path(self._schedule_dir.name) / "schedule")]
        super().__init__(command, env=env)

    def start(self) -> WorkerProcess:
        self.spawn()
        return self

    def stop(self) -> None:
        super().stop()
        self._schedule_dir.cleanup()


class SilentServer:
    """A TCP server that accepts every connection and never answers: a hung Redis."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.accepted.append(connection)  # held open, never read, never answered

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # shutdown() wakes the blocked accept(); close() alone does not on Linux.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)
        for connection in self.accepted:
            connection.close()


@contextlib.contextmanager
def database_down() -> Iterator[None]:
    """The database cannot be reached: every thread's next connection goes to a port nobody listens
    on (the settings dict is shared by all threads' connections). Enter it from synchronous code."""
    from django.db import connection

    saved = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(free_port())
    try:
        yield
    finally:
        connection.settings_dict["PORT"] = saved


class RedisServer:
    """A `redis-server` of the test's own on a spare port (never the shared one), persisting nothing:
    stop() and start() again on the same port play a Redis outage and its end."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", *self.extra]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start (port {self.port} taken?)")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not listen on port {self.port} in {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""`manage.py serve`, the one way the README and `make run` start the gateway: the client IP is the
gateway's own decision, request heads are capped, and a busy port is named, not a traceback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings as django_settings

from tests.support.process import ROOT, GatewayProcess, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def served(world):
    env = subprocess_env(
        settings_dict=django_settings.DATABASES["default"], redis_url=django_settings.REDIS_URL
    )
    with GatewayProcess(env=env) as gateway:
        yield gateway


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_it_runs_the_gateway_through_manage_py_serve(served):
    assert served.command[1:3] == ["manage.py", "serve"]


def test_it_does_not_believe_a_forwarded_address_from_localhost(served, world):
    from accounts.services import api_key_issue

    fenced = api_key_issue(tenant=world.acme, name="fenced", allowed_ips=["10.0.0.0/8"]).raw
    response = httpx.post(
        served.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {fenced}", "X-Forwarded-For": "10.1.1.1", "X-Real-IP": "10.1.1.1"},
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ip_not_allowed"


def test_it_cuts_off_a_50_mb_header_early_and_keeps_its_memory(served, world):
    before = rss_kb(served.process.pid)
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * (1024 * 1024)
        try:
            while sent < 50 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        with contextlib.suppress(ConnectionResetError):
            answer = sock.recv(4096)
    assert sent < 50 * 1024 * 1024 or answer.startswith(b"HTTP/1.1 431")
    if answer:
        assert answer.startswith(b"HTTP/1.1 431")
    time.sleep(0.5)
    assert rss_kb(served.process.pid) - before < 20 * 1024  # KB
    ok = httpx.post(
        served.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert ok.status_code == 200


def test_it_takes_the_read_timeouts_from_the_environment(world):
    env = subprocess_env(
        settings_dict=django_settings.DATABASES["default"],
        redis_url=django_settings.REDIS_URL,
        TOLLHOUSE_HEADER_TIMEOUT_SECONDS="1",
    )
    with GatewayProcess(env=env) as gateway, socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        # A slowloris client: a header line now and then, never the blank line that ends the head.
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.2)
        started, answer = time.monotonic(), b""
        while time.monotonic() - started < 10:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow: a\r\n")
                continue
            if not data:
                break
            answer += data
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ") and 0.9 <= took < 2.5, (answer[:40], took)


def _serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "serve", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_names_the_port_when_it_is_busy(world):
    env = subprocess_env(
        settings_dict=django_settings.DATABASES["default"], redis_url=django_settings.REDIS_URL
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _serve("--port", str(port), env=env)
    assert done.returncode != 0
    assert f"Port {port} on 127.0.0.1 is already in use" in done.stderr and "PORT=" in done.stderr
    assert "Traceback" not in done.stderr


def test_it_names_the_mock_port_when_the_embedded_mock_cannot_listen(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_", "TOLLHOUSE_"))
    }
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        mock_port = busy.getsockname()[1]
        env.update(
            TOLLHOUSE_VAR_DIR=str(tmp_path),
            TOLLHOUSE_EMBEDDED_MOCK="true",
            TOLLHOUSE_MOCK_PORT=str(mock_port),
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        done = _serve("--port", str(free), env=env)
    assert done.returncode != 0
    assert "TOLLHOUSE_MOCK_PORT" in done.stderr and "Traceback" not in done.stderr


def test_it_refuses_several_workers_in_the_embedded_mode(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_", "TOLLHOUSE_"))
    }
    env.update(TOLLHOUSE_VAR_DIR=str(tmp_path))
    done = _serve("--workers", "2", env=env)
    assert done.returncode != 0
    assert "--workers 1" in done.stderr and "Traceback" not in done.stderr

"""The embedded default (no DATABASE_URL, no REDIS_URL) governs calls too, in-process: the same
limits, budgets and credits as with Redis, set up with the same operator commands."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.process import GatewayProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def embedded(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_", "TOLLHOUSE_"))
    }
    mock_port = free_port()
    env.update(
        TOLLHOUSE_VAR_DIR=str(tmp_path),
        TOLLHOUSE_EMBEDDED_MOCK="true",
        TOLLHOUSE_MOCK_PORT=str(mock_port),
        TOLLHOUSE_MOCK_URL=f"http://127.0.0.1:{mock_port}",
        TOLLHOUSE_LOG_LEVEL="WARNING",
    )

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    manage("migrate", "--no-input", "-v", "0")
    manage("demo", "--key-only")
    with GatewayProcess(env=env) as gateway:
        yield gateway, manage


def call(gateway, key: str, content: str = "Hi [mock prompt_tokens=10 tokens=100]") -> httpx.Response:
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": content}]}
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=10,
    )


def test_limits_budgets_and_credits_hold_without_redis(embedded):
    gateway, manage = embedded
    limited = manage("key_issue", "--tenant", "demo", "--name", "limited", "--rpm", "3").splitlines()[-1]
    statuses = [call(gateway, limited).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]

    # A hard daily budget that pays for two calls ($0.00082 each), then a capped one, then 402.
    budgeted = manage(
        "key_issue", "--tenant", "demo", "--name", "budgeted", "--budget", "0.0017", "--period", "day"
    ).splitlines()[-1]
    responses = [call(gateway, budgeted) for _ in range(4)]
    assert [r.status_code for r in responses][:2] == [200, 200]
    assert responses[-1].status_code == 402
    assert responses[-1].json()["error"]["code"] == "budget_exceeded"

    # Prepaid credits: a tenant that starts with $0.001 (one call), topped up from another process.
    manage("tenant_create", "shop", "--credits", "0.001")
    shop = manage("key_issue", "--tenant", "shop").splitlines()[-1]
    assert call(gateway, shop).status_code == 200
    refused = call(gateway, shop)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "credits_exhausted"
    manage("credits_topup", "--tenant", "shop", "--usd", "1")
    deadline = time.monotonic() + 15  # the in-process counter re-reads the ledger every few seconds
    while time.monotonic() < deadline:
        response = call(gateway, shop)
        if response.status_code == 200:
            break
        time.sleep(0.5)
    assert response.status_code == 200, response.text
    assert "Traceback" not in gateway.log()

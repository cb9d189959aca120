"""CI smoke test of the embedded default: `make run` exactly as the README says, one OpenAI SDK
call (plain and streamed), /metrics, the usage rows and hourly rollups in SQLite, then a clean stop."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
PORT = os.environ.get("SMOKE_PORT", "8765")


def fail(message: str, log: Path) -> None:
    print(f"SMOKE FAILED: {message}\n--- make run output ---\n{log.read_text()[-5000:]}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    var = Path(tempfile.mkdtemp(prefix="tollhouse-smoke-"))
    log = var / "run.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_", "TOLLHOUSE_"))
    }
    env.update({"PORT": PORT, "TOLLHOUSE_VAR_DIR": str(var), "TOLLHOUSE_MOCK_PORT": "8766"})
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["make", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        base = f"http://127.0.0.1:{PORT}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if server.poll() is not None:
                fail("make run exited", log)
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            fail("the gateway did not answer within 120 s", log)
        match = re.search(r"API key \(shown once\): (th-\S+)", log.read_text())
        if not match:
            fail("make run did not print a demo key", log)
        client = openai.OpenAI(base_url=base + "/v1", api_key=match.group(1), max_retries=0)
        reply = client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "Hello!"}]
        )
        assert reply.choices[0].message.content, reply
        streamed = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model="claude-sonnet-4.5", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            if chunk.choices
        )
        assert streamed, "empty stream"
        print(f"smoke: non-stream and stream calls answered ({reply.usage.total_tokens} tokens)")
        assert httpx.get(base + "/admin/login/").status_code == 200
        # The console: the demo owner printed once signs in and sees the demo tenant's keys;
        # Chart.js (npm ci by make install) and the console's own files are served.
        owner = re.search(r"email (\S+), password (\S+)\s+\(shown once\)", log.read_text())
        if not owner:
            fail("make run did not print the console's demo owner", log)
        with httpx.Client(base_url=base) as browser:
            page = browser.get("/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert page.status_code == 200 and token, page.text[:500]
            signed_in = browser.post(
                "/login/",
                data={
                    "username": owner.group(1),
                    "password": owner.group(2),
                    "csrfmiddlewaretoken": token.group(1),
                },
            )
            assert signed_in.status_code == 302, signed_in.text[:500]
            keys = browser.get("/t/demo/keys/")
            assert keys.status_code == 200 and "API keys" in keys.text, keys.text[:500]
            for asset in (
                "/static/console/console.css",
                "/static/console/charts.js",
                "/static/vendor/chart.umd.min.js",
            ):
                assert browser.get(asset).status_code == 200, asset
        print("smoke: the demo owner signs in to the console")
        # Metrics, from this machine (loopback may read them when no token is configured).
        metrics = httpx.get(base + "/metrics", timeout=10)
        requests = sum(
            sample.value
            for family in text_string_to_metric_families(metrics.text)
            for sample in family.samples
            if sample.name == "tollhouse_requests_total"
        )
        if metrics.status_code != 200 or requests != 2:
            fail(f"/metrics answered {metrics.status_code} counting {requests} requests, not 2", log)
        print("smoke: /metrics counts both calls")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
            # make itself exits at once on SIGTERM; the gateway (its child) is still shutting down,
            # flushing usage: wait for the whole process group to be gone.
            deadline = time.monotonic() + 30
            while True:
                try:
                    os.killpg(server.pid, 0)
                except ProcessLookupError:
                    break
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired("make run", 30)
                time.sleep(0.1)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            fail("the gateway did not stop within 30 s of SIGTERM", log)
    # Shutdown flushes the in-process usage buffer: both calls must be in the database now.
    rows = (
        sqlite3.connect(var / "tollhouse.sqlite3")
        .execute("SELECT status, streamed, prompt_tokens, completion_tokens, cost FROM billing_usagerecord")
        .fetchall()
    )
    if len(rows) != 2 or any(row[0] != 200 or row[3] == 0 or Decimal(str(row[4])) <= 0 for row in rows):
        fail(f"expected two priced usage rows, found {rows}", log)
    print(f"smoke: usage recorded: {rows}")
    database = sqlite3.connect(var / "tollhouse.sqlite3")
    hourly = [
        database.execute(f"SELECT SUM(requests), SUM(completion_tokens) FROM {table}").fetchone()  # noqa: S608
        for table in ("billing_usagehourly", "billing_usagehourlytenant")
    ]
    if any(counted != (2, sum(row[3] for row in rows)) for counted in hourly):
        fail(f"the hourly rollups do not hold the two calls: {hourly}", log)
    print(f"smoke: hourly rollups hold both calls: {hourly}")


if __name__ == "__main__":
    main()

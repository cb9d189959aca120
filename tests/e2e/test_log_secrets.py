"""No log line holds an API key, a provider credential, a JWT or prompt text (issue 7, item 6).

A real `manage.py serve` process in production mode (PostgreSQL, Redis) logs JSON lines at DEBUG
while it is driven through every kind of call: success, stream, bad and unknown keys, a revoked
key, end-user tokens good and expired, upstream errors (one that quotes the credential), a rate
limit, an unknown model, a model with no price, hostile headers and bodies. Every prompt carries a
unique marker. Then the usage drain runs in-process (caplog, DEBUG). Everything either logged is
grepped for every key, token, credential and marker: none may appear. Every line is JSON, and the
lines one call causes share its request id.

With body logging turned on for the tenant, its bodies (markers included) land in BodyLog rows,
secrets redacted, and still in no log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from django.conf import settings
from django.db import connection

from accounts.models import ApiKey, Tenant
from accounts.services import api_key_issue, api_key_revoke, tenant_save
from accounts.signing import signing_key_add
from config.logs import JsonFormatter
from gateway.models import BodyLog
from gateway.services import deployment_upsert, route_upsert
from tests.conftest import UPSTREAM_SECRET
from tests.support.process import GatewayProcess, subprocess_env
from tests.support.secrets import SecretRegistry, registry
from tests.support.tokens import ISSUER, SECRET, mint

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
    ),
]


@pytest.fixture(scope="module")
def _gateway(django_db_setup: Any) -> Iterator[GatewayProcess]:
    env = subprocess_env(
        settings_dict=connection.settings_dict,
        redis_url=settings.REDIS_URL,
        TOLLHOUSE_LOG_FORMAT="json",
        TOLLHOUSE_LOG_LEVEL="debug",
    )
    with GatewayProcess(env=env) as gateway:
        yield gateway


@pytest.fixture
def gateway(world: Any, _gateway: GatewayProcess) -> GatewayProcess:
    from config.changes import publish

    publish([{"kind": "all"}])  # forget earlier tests' keys and routes (their rows are gone)
    time.sleep(0.3)
    return _gateway


@pytest.fixture
def secrets(world: Any) -> Iterator[SecretRegistry]:
    found = SecretRegistry()
    found.api_key(world.key)
    found.api_key(world.globex_key)
    found.credential(UPSTREAM_SECRET)
    found.credential(SECRET)  # the tenant's JWT signing secret
    found.credential(settings.SECRET_KEY)
    for key in settings.ENCRYPTION_KEYS:
        found.credential(key)
    yield found
    registry.values.update(found.values)  # for a session-wide check


def chat(
    client: httpx.Client, key: str, content: str, *, model: str = "gpt-4.1", **extra: Any
) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def json_lines(log: str) -> list[dict[str, Any]]:
    lines = []
    for line in log.splitlines():
        if line.strip():
            try:
                lines.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                pytest.fail(f"a log line is not JSON: {line[:300]!r}")
    return lines


def drain_logged(caplog: pytest.LogCaptureFixture) -> str:
    """The usage drain, in-process, at DEBUG: everything it logs, with every extra field."""
    from billing.usage import usage_drain

    with caplog.at_level(logging.DEBUG):
        usage_drain(claim_idle_ms=0)
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records) + "\n" + caplog.text


def wait_for(predicate: Any, *, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_no_log_line_holds_a_key_token_credential_or_prompt(gateway, world, secrets, caplog):
    acme = world.acme
    signing_key_add(tenant=acme, name="backend", issuer=ISSUER, algorithm="HS256", secret=SECRET)
    unpriced = route_upsert(name="unpriced-model")
    deployment_upsert(route=unpriced, provider=world.provider, upstream_model="unpriced-model")
    limited = secrets.api_key(api_key_issue(tenant=acme, name="limited", rpm_limit=1).raw)
    doomed_issue = api_key_issue(tenant=acme, name="doomed")
    doomed = secrets.api_key(doomed_issue.raw)
    token = secrets.jwt(mint(sub="end-user-9"))
    expired = secrets.jwt(mint(lifetime=-300))
    wrong_secret = secrets.api_key(world.key[:15] + "Z" * 40)
    unknown = secrets.api_key("th-" + "q" * 12 + "W" * 40)
    marker = secrets.prompt_marker

    statuses: dict[str, int] = {}
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        statuses["ok"] = chat(
            client, world.key, f"Hello {marker()} [mock prompt_tokens=20 tokens=5]"
        ).status_code
        statuses["stream"] = chat(
            client, world.key, f"Stream {marker()} [mock tokens=8]", stream=True
        ).status_code
        statuses["wrong secret"] = chat(client, wrong_secret, f"Hi {marker()}").status_code
        statuses["unknown key"] = chat(client, unknown, f"Hi {marker()}").status_code
        statuses["x-api-key"] = client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4.1", "messages": [{"role": "user", "content": f"Hi {marker()}"}]},
            headers={"x-api-key": world.globex_key},
        ).status_code
        statuses["doomed before"] = chat(client, doomed, f"Hi {marker()}").status_code
        api_key_revoke(api_key=ApiKey.objects.get(pk=doomed_issue.api_key.pk))
        statuses["revoked"] = wait_for(
            lambda: chat(client, doomed, f"Hi {marker()}").status_code == 403 and 403
        )
        statuses["token"] = chat(client, token, f"Token {marker()}").status_code
        statuses["expired token"] = chat(client, expired, f"Token {marker()}").status_code
        statuses["upstream 500"] = chat(client, world.key, f"Boom {marker()} [mock status=500]").status_code
        statuses["credential echoed"] = chat(
            client, world.key, f"Boom {marker()} [mock status=400 echo_credential]"
        ).status_code
        chat(client, limited, f"First {marker()}")
        statuses["rate limited"] = chat(client, limited, f"Second {marker()}").status_code
        statuses["unknown model"] = chat(
            client, world.key, f"Hi {marker()}", model="no-such-model"
        ).status_code
        unpriced_call = chat(client, world.key, f"Free {marker()}", model="unpriced-model")
        statuses["no price"] = unpriced_call.status_code
        statuses["forged request id"] = client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4.1", "messages": [{"role": "user", "content": f"Hi {marker()}"}]},
            headers={"Authorization": f"Bearer {world.key}", "X-Request-ID": '"},{"level":"CRITICAL'},
        ).status_code
        statuses["huge bearer"] = client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4.1", "messages": []},
            headers={"Authorization": "Bearer " + secrets.add("x" * 9000 + marker(), "bogus key")},
        ).status_code
        statuses["hostile body"] = client.post(
            "/v1/chat/completions",
            content=b'{"model": "gpt-4.1", "messages": [{"role": "user", "content": "'
            + marker().encode()
            + b' \\ud800 \\u0000"}], "user": "\\ud800"}',
            headers={"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"},
        ).status_code
        statuses["not json"] = client.post(
            "/v1/chat/completions",
            content=marker().encode() + b"\xff{",
            headers={"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"},
        ).status_code

    assert statuses["ok"] == statuses["stream"] == statuses["token"] == statuses["no price"] == 200, statuses
    assert statuses["wrong secret"] == statuses["unknown key"] == statuses["expired token"] == 401, statuses
    assert statuses["revoked"] == 403 and statuses["rate limited"] == 429, statuses
    assert statuses["unknown model"] == 404 and statuses["upstream 500"] >= 500, statuses
    assert statuses["credential echoed"] >= 400 and statuses["hostile body"] >= 400, statuses

    drained = drain_logged(caplog)
    time.sleep(0.5)  # the gateway's last lines (settlement runs after the answer)
    log = gateway.log()
    lines = json_lines(log)
    assert [f for f in secrets.scan(log, source="gateway")] == []
    assert [f for f in secrets.scan(drained, source="drain")] == []

    # One call line per identified call, with the key's prefix, never more of the key.
    calls = [line for line in lines if line["logger"] == "tollhouse.calls"]
    prefix = world.key[3:15]
    assert any(line["key_prefix"] == prefix and line["status"] == 200 for line in calls), calls
    assert any(line["status"] == 429 for line in calls) and any(line["status"] == 403 for line in calls)
    assert all(isinstance(line["cost_usd"], str | None) for line in calls)

    # The call with no price logs a warning and its call line under the same request id.
    rid = unpriced_call.headers["x-request-id"]
    own = [line for line in lines if line.get("request_id") == rid]
    assert {line["logger"] for line in own} >= {"gateway.calls", "tollhouse.calls"}, own
    assert any("no price for model" in line["message"] for line in own), own


def test_body_logging_keeps_bodies_in_rows_never_in_log_lines(gateway, world, secrets, caplog):
    acme = Tenant.objects.get(pk=world.acme.pk)
    acme.body_logging = True
    tenant_save(tenant=acme)
    time.sleep(0.5)  # the change reaches the gateway over Redis
    plain, streamed, globex = secrets.prompt_marker(), secrets.prompt_marker(), secrets.prompt_marker()
    leaked = secrets.add("sk-proj-Ab12Cd34Ef56Gh78Ij90Kl", "secret in a prompt")
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        first = chat(client, world.key, f"Body {plain} my key {leaked} and {world.globex_key}")
        second = chat(client, world.key, f"Body {streamed} [mock tokens=4]", stream=True)
        other = chat(client, world.globex_key, f"Not logged {globex}")
    assert first.status_code == second.status_code == other.status_code == 200

    rows = wait_for(lambda: list(BodyLog.objects.order_by("id")) if BodyLog.objects.count() >= 2 else [])
    assert len(rows) == 2, rows
    assert {row.tenant_id for row in rows} == {acme.id}  # globex did not turn it on
    by_id = {row.request_id: row for row in rows}
    row = by_id[first.headers["x-request-id"]]
    assert (
        plain in row.request_body
        and leaked not in row.request_body
        and world.globex_key not in row.request_body
    )
    assert row.status == 200 and '"choices"' in row.response_body
    stream_row = by_id[second.headers["x-request-id"]]
    assert streamed in stream_row.request_body and "data: " in stream_row.response_body

    drained = drain_logged(caplog)
    time.sleep(0.3)
    assert secrets.scan(gateway.log(), source="gateway") == []
    assert secrets.scan(drained, source="drain") == []

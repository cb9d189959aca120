"""An agent session named by the client (X-Claude-Code-Session-Id, X-Session-Id)
reaches the usage row and the session rollup, so spend can be grouped by session (issue 14)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import openai
import pytest
from django.utils import timezone

from billing.events import SESSION_MAX
from billing.selectors import usage_by_session

pytestmark = pytest.mark.django_db(transaction=True)


def sdk(gateway_server: str, key: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway_server + "/v1", api_key=key, max_retries=0, timeout=10, default_headers=headers
    )


def chat(client: openai.OpenAI, tokens: int) -> None:
    client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": f"Hi [mock tokens={tokens} prompt_tokens=100]"}],
    )


def test_each_call_of_a_session_is_grouped_under_it(gateway_server, world, usage_rows):
    claude = sdk(gateway_server, world.key, **{"X-Claude-Code-Session-Id": "cc-5f1e7a"})
    codex = sdk(gateway_server, world.key, **{"X-Session-Id": "codex-0199"})
    chat(claude, 10)
    chat(claude, 20)
    chat(codex, 5)
    chat(sdk(gateway_server, world.key), 7)
    rows = usage_rows(4)
    assert [row.session for row in rows] == ["cc-5f1e7a", "cc-5f1e7a", "codex-0199", ""]
    assert all(not row.error_type for row in rows)  # stored as sent, nothing sanitised

    now = timezone.now()
    sessions = {
        s.session: s
        for s in usage_by_session(
            tenant_id=world.acme.id, since=now - timedelta(hours=1), until=now + timedelta(hours=1)
        )
    }
    assert set(sessions) == {"cc-5f1e7a", "codex-0199"}
    assert (sessions["cc-5f1e7a"].requests, sessions["cc-5f1e7a"].completion_tokens) == (2, 30)
    assert sessions["cc-5f1e7a"].cost == rows[0].cost + rows[1].cost
    assert (sessions["codex-0199"].requests, sessions["codex-0199"].prompt_tokens) == (1, 100)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("s" * SESSION_MAX, "s" * SESSION_MAX),
        ("t" * (SESSION_MAX + 50), "t" * SESSION_MAX),  # cut to what the ledger holds, as the writer would
    ],
)
def test_a_session_is_stored_as_the_writer_reads_it_and_the_row_stays_clean(
    gateway_server, world, usage_rows, sent, stored
):
    response = httpx.post(
        gateway_server + "/v1/chat/completions",
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi [mock tokens=3]"}]},
        headers={"Authorization": f"Bearer {world.key}", "X-Session-Id": sent.encode("utf-8")},
        timeout=10,
    )
    assert response.status_code == 200
    [row] = usage_rows(1)
    assert row.session == stored and row.status == 200 and row.error_type == ""

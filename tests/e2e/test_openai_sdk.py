"""The official `openai` SDK against the live gateway, and the usage row each call leaves."""

from __future__ import annotations

import logging
from decimal import Decimal

import httpx
import openai
import orjson
import pytest

from accounts.services import api_key_issue
from billing.models import UsageHourly
from tests.conftest import UPSTREAM_SECRET

pytestmark = pytest.mark.django_db(transaction=True)


def sdk(gateway_server: str, key: str) -> openai.OpenAI:
    # No SDK retries: every call must leave exactly one row, and a retry would be a second call.
    return openai.OpenAI(base_url=gateway_server + "/v1", api_key=key, max_retries=0, timeout=10)


def test_it_answers_a_chat_completion_and_records_it_exactly(gateway_server, world, usage_rows):
    reply = sdk(gateway_server, world.key).chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "Hi [mock prompt_tokens=1234 cached_tokens=200 tokens=77]"}],
        user="end-user-7",
    )
    assert reply.choices[0].message.content
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (1234, 77)

    [row] = usage_rows(1)
    assert row.status == 200 and row.error_type == "" and not row.usage_estimated
    assert row.tenant_id == world.acme.id and row.api_key_id is not None
    assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens) == (1234, 200, 77)
    # gpt-4.1: $2.00 in, $0.50 cached in, $8.00 out per million tokens
    assert row.cost == (Decimal(1034) * 2 + Decimal(200) * Decimal("0.5") + Decimal(77) * 8) / 1_000_000
    assert row.cost == Decimal("0.002784")
    assert row.requested_model == "gpt-4.1" and row.served_model == "gpt-4.1" and row.provider == "mock"
    assert row.end_user == "end-user-7"
    assert not row.streamed and row.attempts == 1
    assert row.latency_ms > 0 and row.upstream_latency_ms > 0 and row.overhead_ms >= 0
    assert row.latency_ms >= row.upstream_latency_ms
    assert row.client_ip == "127.0.0.1"


def test_it_streams_and_records_the_usage_the_upstream_reported(
    gateway_server, world, usage_rows, mock_upstream
):
    stream = sdk(gateway_server, world.key).chat.completions.create(
        model="claude-sonnet-4.5",
        messages=[{"role": "user", "content": "Tell me [mock tokens=12 prompt_tokens=40]"}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 12
    # The client did not ask for usage: the gateway asked upstream for it, and hid it.
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)

    [row] = usage_rows(1)
    assert row.status == 200 and row.streamed
    assert (row.prompt_tokens, row.completion_tokens) == (40, 12)
    assert row.cost == Decimal("0.000300")  # 40 × $3 + 12 × $15 per million
    assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms

    upstream = httpx.get(mock_upstream.url + "/_mock/requests").json()["requests"][-1]
    assert upstream["json"]["stream_options"] == {"include_usage": True}
    assert upstream["json"]["model"] == "claude-sonnet-4.5"


def test_it_passes_the_usage_chunk_to_clients_that_ask_for_it(gateway_server, world, usage_rows):
    chunks = list(
        sdk(gateway_server, world.key).chat.completions.create(
            model="gpt-4.1",
            messages=[{"role": "user", "content": "[mock tokens=5]"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    [row] = usage_rows(1)
    assert row.completion_tokens == 5


def test_it_echoes_the_request_id_and_passes_it_upstream_with_the_credential(
    gateway_server, world, usage_rows, mock_upstream
):
    response = httpx.post(
        gateway_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}", "X-Request-ID": "trace-42"},
        json={"model": "gpt4", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-42"
    upstream = httpx.get(mock_upstream.url + "/_mock/requests").json()["requests"][-1]
    assert upstream["headers"]["x-request-id"] == "trace-42"
    assert upstream["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert upstream["json"]["model"] == "gpt-4.1"  # the alias resolved to the route's upstream model
    [row] = usage_rows(1)
    assert row.client_request_id == "trace-42" and row.request_id != "trace-42"
    assert row.requested_model == "gpt4"


def test_it_makes_a_request_id_when_the_client_sends_none_or_garbage(gateway_server, world, usage_rows):
    response = httpx.post(
        gateway_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}", "X-Request-ID": "bad id\twith spaces"},
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
    )
    [row] = usage_rows(1)
    assert response.headers["x-request-id"] == row.request_id
    assert row.client_request_id == ""


def test_it_counts_a_reused_client_request_id_as_two_calls(gateway_server, world, usage_rows):
    for _ in range(2):
        httpx.post(
            gateway_server + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {world.key}", "X-Request-ID": "same"},
            json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert len(usage_rows(2)) == 2


def test_it_rejects_a_bad_key(gateway_server, world, usage_rows):
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(gateway_server, "th-" + "x" * 52).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.body["type"] == "authentication_error"
    # A stranger's call is counted per client IP, not written to the ledger.
    assert usage_rows(0) == []


def test_it_rejects_a_missing_key(gateway_server, world, usage_rows):
    response = httpx.post(gateway_server + "/v1/chat/completions", json={"model": "gpt-4.1", "messages": []})
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert usage_rows(0) == []


def test_it_forbids_a_model_the_key_may_not_use(gateway_server, world, usage_rows):
    narrow = api_key_issue(tenant=world.acme, name="narrow", allowed_models=["claude-sonnet-4.5"]).raw
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk(gateway_server, narrow).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["code"] == "model_not_allowed"
    [row] = usage_rows(1)
    assert (row.status, row.error_type, row.tenant_id) == (403, "model_not_allowed", world.acme.id)


def test_it_forbids_a_client_ip_outside_the_allow_list(gateway_server, world, usage_rows):
    fenced = api_key_issue(tenant=world.acme, name="fenced", allowed_ips=["10.0.0.0/8"]).raw
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk(gateway_server, fenced).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["code"] == "ip_not_allowed"
    assert [row.status for row in usage_rows(1)] == [403]


def test_it_allows_a_client_ip_inside_the_allow_list(gateway_server, world, usage_rows):
    fenced = api_key_issue(tenant=world.acme, name="local", allowed_ips=["127.0.0.0/8", "::1"]).raw
    sdk(gateway_server, fenced).chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
    )
    assert [row.status for row in usage_rows(1)] == [200]


def test_it_says_not_found_for_an_unknown_model(gateway_server, world, usage_rows):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gateway_server, world.key).chat.completions.create(
            model="gpt-17-ultra", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["code"] == "model_not_found"
    assert [row.status for row in usage_rows(1)] == [404]


def test_it_rejects_malformed_json(gateway_server, world, usage_rows):
    response = httpx.post(
        gateway_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"},
        content=b'{"model": "gpt-4.1", "messages": [',
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert [row.status for row in usage_rows(1)] == [400]


def test_it_rejects_missing_messages(gateway_server, world, usage_rows):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway_server, world.key).chat.completions.create(model="gpt-4.1", messages=[])
    assert caught.value.body["param"] == "messages"
    response = httpx.post(
        gateway_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": "gpt-4.1"},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
    assert [row.status for row in usage_rows(2)] == [400, 400]


def test_it_rejects_an_oversized_body(gateway_server, world, usage_rows, settings):
    settings.TOLLHOUSE_MAX_BODY_BYTES = 10_000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway_server, world.key).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "x" * 20_000}]
        )
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"
    [row] = usage_rows(1)
    assert row.status == 413 and row.tenant_id == world.acme.id


def test_it_answers_502_when_the_upstream_fails(gateway_server, world, usage_rows):
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway_server, world.key).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "[mock status=500]"}]
        )
    assert caught.value.status_code == 502
    [row] = usage_rows(1)
    assert (row.status, row.error_type, row.cost) == (502, "upstream_error", 0)


def test_it_answers_504_when_the_upstream_hangs(gateway_server, world, usage_rows):
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway_server, world.key).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "[mock hang]"}]
        )
    assert caught.value.status_code == 504
    [row] = usage_rows(1)
    assert (row.status, row.error_type) == (504, "upstream_timeout")


def test_it_answers_502_for_a_malformed_upstream_response(gateway_server, world, usage_rows):
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway_server, world.key).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "[mock malformed]"}]
        )
    assert caught.value.status_code == 502
    assert [row.status for row in usage_rows(1)] == [502]


def test_it_passes_upstream_rate_limits_on_with_retry_after(gateway_server, world, usage_rows):
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(gateway_server, world.key).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "[mock status=429 retry_after=7]"}]
        )
    assert caught.value.response.headers["retry-after"] == "7"
    assert [row.status for row in usage_rows(1)] == [429]


def test_it_caps_an_upstream_retry_after(gateway_server, world, usage_rows):
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(gateway_server, world.key).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "[mock status=429 retry_after=86400]"}]
        )
    assert caught.value.response.headers["retry-after"] == "60"  # TOLLHOUSE_UPSTREAM_RETRY_AFTER_MAX_SECONDS
    assert [row.status for row in usage_rows(1)] == [429]


def test_it_reports_a_stream_that_breaks_midway_and_bills_what_was_sent(
    gateway_server, world, usage_rows, caplog
):
    with caplog.at_level(logging.INFO, logger="tollhouse.calls"):
        stream = sdk(gateway_server, world.key).chat.completions.create(
            model="gpt-4.1",
            messages=[{"role": "user", "content": "[mock tokens=20 drop_after=5 chunk_ms=30]"}],
            stream=True,
        )
        received = []
        with pytest.raises(openai.APIError):
            for chunk in stream:
                received.append(chunk)
        assert stream.response.status_code == 200 and received  # the first chunks came before the break
        [row] = usage_rows(1)
    # The status the client saw, with the error type that says what happened after it.
    assert (row.status, row.error_type) == (200, "upstream_stream_broken") and row.streamed
    assert row.completion_tokens == 5  # estimated from what was streamed: the upstream never said
    assert row.usage_estimated
    [line] = [record for record in caplog.records if record.name == "tollhouse.calls"]
    assert (line.status, line.error_type) == (200, "upstream_stream_broken")
    # ...and the rollups count it as an error, where the 502 it used to be recorded as counted.
    cell = UsageHourly.objects.get()
    assert (cell.requests, cell.errors_5xx) == (1, 1)


def test_a_json_answer_to_a_stream_request_becomes_an_error_event_and_is_billed(
    gateway_server, world, usage_rows
):
    with httpx.stream(
        "POST",
        gateway_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={
            "model": "gpt-4.1",
            "stream": True,
            "messages": [{"role": "user", "content": "[mock ignore_stream tokens=6]"}],
        },
    ) as response:
        body = response.read()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    [event] = body.split(b"\n\n")[:-1]  # one event, and nothing of the upstream's document
    assert event.startswith(b"data: ") and b"chat.completion" not in event
    error = orjson.loads(event.removeprefix(b"data: "))["error"]
    assert "instead of a stream" in error["message"] and error["code"] == "bad_response"
    [row] = usage_rows(1)
    assert (row.status, row.error_type) == (200, "upstream_stream_broken")
    assert row.completion_tokens == 6 and not row.usage_estimated  # what the upstream reported and bills


def test_it_bills_what_was_generated_when_the_client_goes_away(gateway_server, world, usage_rows):
    with httpx.stream(
        "POST",
        gateway_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={
            "model": "gpt-4.1",
            "stream": True,
            "messages": [{"role": "user", "content": "[mock tokens=200 chunk_ms=20]"}],
        },
    ) as response:
        lines = response.iter_lines()
        data = [line for line, _ in zip(lines, range(8), strict=False) if line.startswith("data:")]
        assert data
    [row] = usage_rows(1, timeout=8)
    assert (row.status, row.error_type) == (499, "client_disconnected")
    assert 0 < row.completion_tokens < 200 and row.usage_estimated
    assert row.cost > 0


def test_it_lists_only_the_models_the_key_may_use(gateway_server, world):
    narrow = api_key_issue(tenant=world.acme, name="narrow", allowed_models=["deepseek-v3.2"]).raw
    assert [m.id for m in sdk(gateway_server, narrow).models.list()] == ["deepseek-v3.2"]
    every = {m.id for m in sdk(gateway_server, world.key).models.list()}
    assert {"gpt-4.1", "gpt4", "claude-sonnet-4.5", "gemini-2.5-flash", "deepseek-v3.2"} <= every
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway_server, "nope").models.list()


def test_it_proxies_embeddings_and_prices_them(gateway_server, world, usage_rows):
    result = sdk(gateway_server, world.key).embeddings.create(
        model="text-embedding-3-small", input="hello world"
    )
    assert len(result.data) == 1 and result.data[0].embedding
    [row] = usage_rows(1)
    assert row.endpoint == "embeddings" and row.prompt_tokens == result.usage.prompt_tokens
    assert row.cost == Decimal(row.prompt_tokens) * Decimal("0.02") / 1_000_000


def test_it_never_puts_a_secret_in_logs_or_errors(gateway_server, world, usage_rows, caplog, mock_upstream):
    # The upstream refuses the gateway's credential: the client learns nothing about it.
    world.provider.set_credential("sk-wrong-credential-abcdef123456")
    world.provider.save()
    with caplog.at_level("DEBUG"), pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway_server, world.key).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502
    body = str(caught.value.body)
    assert "sk-wrong" not in body and "abcdef123456" not in body and mock_upstream.url not in body
    assert "sk-wrong-credential" not in caplog.text and world.key not in caplog.text
    assert UPSTREAM_SECRET not in caplog.text
    [row] = usage_rows(1)
    assert row.error_type == "upstream_auth"


def test_it_records_a_call_whose_client_gives_up_before_the_answer(gateway_server, world, usage_rows):
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gateway_server + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {world.key}"},
            json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "[mock ttft_ms=1000]"}]},
            timeout=0.3,
        )
    [row] = usage_rows(1, timeout=8)
    assert (row.status, row.error_type, row.streamed) == (499, "client_disconnected", False)
    assert row.prompt_tokens > 0 and row.completion_tokens == 0 and row.usage_estimated

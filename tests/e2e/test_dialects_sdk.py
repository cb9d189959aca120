"""Every client dialect through the live gateway with the official SDKs, and the one usage row
each call leaves: the `anthropic` SDK on /v1/messages, the `openai` SDK's `responses` on
/v1/responses, each to upstreams of another wire format (translated) and of their own (passed
through)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import anthropic
import httpx
import openai
import orjson
import pytest

from accounts.services import api_key_issue

pytestmark = pytest.mark.django_db(transaction=True)

# claude-sonnet-4.5 in the demo catalog: $3.00 in, $0.30 cached in, $15.00 out per million tokens.
CLAUDE_IN, CLAUDE_OUT = Decimal(3), Decimal(15)


def claude(gateway_server: str, key: str) -> anthropic.Anthropic:
    # No SDK retries: every call must leave exactly one row.
    return anthropic.Anthropic(base_url=gateway_server, api_key=key, max_retries=0, timeout=10)


def cost(
    prompt: int, completion: int, price_in: Decimal = CLAUDE_IN, price_out: Decimal = CLAUDE_OUT
) -> Decimal:
    return (prompt * price_in + completion * price_out) / 1_000_000


# -- anthropic SDK → OpenAI-format upstream (the mock) ------------------------------------------------


def test_it_answers_the_anthropic_sdk_from_an_openai_format_upstream(gateway_server, world, usage_rows):
    message = claude(gateway_server, world.key).messages.create(
        model="claude-sonnet-4.5",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hi [mock prompt_tokens=40 tokens=12]"}],
        extra_headers={
            "X-Claude-Code-Session-Id": "sess-42",
            "anthropic-beta": "some-future-flag-2030-01-01",
        },
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and len(message.content[0].text.split()) == 12
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (40, 12)

    [row] = usage_rows(1)
    assert row.status == 200 and row.endpoint == "messages"
    assert (row.prompt_tokens, row.completion_tokens) == (40, 12)
    assert row.cost == cost(40, 12)
    assert row.ingress == "anthropic_messages" and row.upstream_format == "mock"
    assert row.session == "sess-42"
    assert [a["status"] for a in row.attempt_log] == [200]


def test_it_streams_to_the_anthropic_sdk_with_the_full_event_sequence(gateway_server, world, usage_rows):
    with claude(gateway_server, world.key).messages.stream(
        model="claude-sonnet-4.5",
        max_tokens=100,
        messages=[{"role": "user", "content": "Tell me [mock prompt_tokens=30 tokens=9]"}],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert len(final.content[0].text.split()) == 9
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 9)
    [row] = usage_rows(1)
    assert row.streamed and (row.prompt_tokens, row.completion_tokens) == (30, 9)
    assert row.cost == cost(30, 9)


def test_a_stream_that_pauses_gets_keep_alive_pings_and_then_the_rest_of_its_answer(
    gateway_server, world, usage_rows, settings
):
    # Pauses of 300 ms between tokens against pings every 50 ms: the read cut short by each ping
    # must lose nothing of what the upstream sends next.
    settings.TOLLHOUSE_STREAM_KEEPALIVE_SECONDS = 0.05
    body = {
        "model": "claude-sonnet-4.5",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "Slowly [mock prompt_tokens=30 tokens=4 chunk_ms=300]"}],
    }
    headers = {"x-api-key": world.key, "anthropic-version": "2023-06-01"}
    with httpx.stream(
        "POST", gateway_server + "/v1/messages", json=body, headers=headers, timeout=10
    ) as reply:
        assert reply.status_code == 200
        names = [line.removeprefix("event: ") for line in reply.iter_lines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    deltas = [i for i, name in enumerate(names) if name == "content_block_delta"]
    assert len(deltas) == 4
    pings_between = [names[a:b].count("ping") for a, b in itertools.pairwise(deltas)]
    assert all(count >= 2 for count in pings_between), names
    [row] = usage_rows(1)
    assert row.status == 200 and not row.error_type and (row.prompt_tokens, row.completion_tokens) == (30, 4)


def test_it_ends_a_broken_anthropic_stream_with_an_error_event_and_bills_what_was_sent(
    gateway_server, world, usage_rows
):
    with (
        pytest.raises(anthropic.APIStatusError),
        claude(gateway_server, world.key).messages.stream(
            model="claude-sonnet-4.5",
            max_tokens=100,
            messages=[{"role": "user", "content": "Tell me [mock tokens=20 drop_after=5 chunk_ms=10]"}],
        ) as stream,
    ):
        for _event in stream:
            pass
    [row] = usage_rows(1)
    assert row.status == 200 and row.error_type == "upstream_stream_broken"
    assert row.completion_tokens == 5 and row.usage_estimated


def test_it_counts_tokens_for_free(gateway_server, world, usage_rows):
    counted = claude(gateway_server, world.key).messages.count_tokens(
        model="claude-sonnet-4.5",
        system="You are terse.",  # 14 characters
        messages=[{"role": "user", "content": "x" * 386}],
    )
    assert counted.input_tokens == 100  # the documented estimate: (14 + 386) / 4
    assert usage_rows(0, timeout=0.5) == []


def test_it_raises_the_anthropic_sdk_exceptions(gateway_server, world, usage_rows):
    client = claude(gateway_server, world.key)
    hello = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.AuthenticationError) as caught:
        claude(gateway_server, "th-nope").messages.create(
            model="claude-sonnet-4.5", max_tokens=10, messages=hello
        )
    assert (
        caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "authentication_error"
    )
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=10, messages=hello)
    assert caught.value.body["error"]["type"] == "not_found_error"
    narrow = api_key_issue(tenant=world.acme, name="narrow", allowed_models=["gpt-4.1"]).raw
    with pytest.raises(anthropic.PermissionDeniedError):
        claude(gateway_server, narrow).messages.create(
            model="claude-sonnet-4.5", max_tokens=10, messages=hello
        )
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(
            model="claude-sonnet-4.5",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi [mock status=429 retry_after=30]"}],
        )
    assert caught.value.response.headers["retry-after"] == "30"
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="claude-sonnet-4.5", max_tokens=0, messages=hello)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    # The 401 leaves none (no key); the 404, 403, 429 and 400 one each.
    assert sorted(row.status for row in usage_rows(4)) == [400, 403, 404, 429]


def test_it_refuses_a_websocket_upgrade_with_426(gateway_server, world):
    response = httpx.get(
        gateway_server + "/v1/messages",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "x-api-key": world.key,
        },
    )
    assert response.status_code == 426
    assert response.json()["error"]["type"] == "invalid_request_error"


# -- openai SDK responses → OpenAI-chat upstream (the mock) ----------------------------------------

GPT_IN, GPT_OUT = Decimal(2), Decimal(8)  # gpt-4.1: $2.00 in, $8.00 out per million tokens


def gpt(gateway_server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_server + "/v1", api_key=key, max_retries=0, timeout=10)


def test_it_answers_responses_create_from_a_chat_upstream(gateway_server, world, usage_rows):
    response = gpt(gateway_server, world.key).responses.create(
        model="gpt-4.1",
        instructions="Be brief.",
        input="Hello [mock prompt_tokens=50 tokens=7]",
        store=False,
        extra_headers={"session_id": "codex-session-1"},
    )
    assert response.status == "completed" and len(response.output_text.split()) == 7
    assert (response.usage.input_tokens, response.usage.output_tokens) == (50, 7)
    [row] = usage_rows(1)
    assert row.endpoint == "responses" and row.ingress == "openai_responses"
    assert (row.prompt_tokens, row.completion_tokens) == (50, 7)
    assert row.cost == cost(50, 7, GPT_IN, GPT_OUT)
    assert row.session == "codex-session-1"


def test_it_streams_responses_events_ending_in_response_completed(gateway_server, world, usage_rows):
    events = list(
        gpt(gateway_server, world.key).responses.create(
            model="gpt-4.1", input="Hello [mock prompt_tokens=20 tokens=5]", stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds and "response.output_text.delta" in kinds
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert len(text.split()) == 5
    completed = events[-1].response
    assert (completed.usage.input_tokens, completed.usage.output_tokens) == (20, 5)
    assert completed.output_text == text
    [row] = usage_rows(1)
    assert row.streamed and (row.prompt_tokens, row.completion_tokens) == (20, 5)


def test_it_refuses_previous_response_id_for_an_upstream_without_state(gateway_server, world, usage_rows):
    with pytest.raises(openai.BadRequestError) as caught:
        gpt(gateway_server, world.key).responses.create(
            model="gpt-4.1", input="and then?", previous_response_id="resp_123"
        )
    assert caught.value.body["param"] == "previous_response_id"
    assert "previous_response_id" in caught.value.body["message"]
    assert [row.status for row in usage_rows(1)] == [400]


def test_it_ends_a_broken_responses_stream_with_response_failed(gateway_server, world, usage_rows):
    events = list(
        gpt(gateway_server, world.key).responses.create(
            model="gpt-4.1", input="Hello [mock tokens=20 drop_after=4 chunk_ms=10]", stream=True
        )
    )
    assert events[-1].type == "response.failed"
    assert "error" in [event.type for event in events]
    [row] = usage_rows(1)
    assert row.error_type == "upstream_stream_broken" and row.completion_tokens == 4


# -- tool use across formats (the mock speaking OpenAI chat, Anthropic and OpenAI Responses) ----------

WEATHER = {"name": "get_weather", "description": "Weather in a city.", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip
CLOCK = {"name": "get_time", "description": "The time.", "input_schema": {"type": "object", "properties": {}}}


def test_the_anthropic_sdk_uses_tools_through_an_openai_format_upstream(gateway_server, world, usage_rows):
    client = claude(gateway_server, world.key)
    ask = [{"role": "user", "content": "weather and time? [mock tool_calls=2 prompt_tokens=60]"}]
    first = client.messages.create(
        model="claude-sonnet-4.5", max_tokens=200, tools=[WEATHER, CLOCK], messages=ask
    )
    assert first.stop_reason == "tool_use"
    calls = [block for block in first.content if block.type == "tool_use"]
    assert [c.name for c in calls] == ["get_weather", "get_time"] and calls[0].id != calls[1].id
    assert calls[0].input == {"city": "lorem"}
    history = [
        *ask,
        {"role": "assistant", "content": [c.model_dump() for c in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": calls[0].id, "content": "sunny"},
            {"type": "tool_result", "tool_use_id": calls[1].id, "content": "noon"},
            {"type": "text", "text": "thanks [mock prompt_tokens=90 tokens=5]"},
        ]},
    ]  # fmt: skip
    with client.messages.stream(
        model="claude-sonnet-4.5", max_tokens=200, tools=[WEATHER, CLOCK], messages=history
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and len(final.content[0].text.split()) == 5
    assert (final.usage.input_tokens, final.usage.output_tokens) == (90, 5)
    rows = usage_rows(2)
    assert [r.prompt_tokens for r in rows] == [60, 90]
    assert rows[1].completion_tokens == 5 and rows[1].cost == cost(90, 5)


@pytest.fixture
def upstream_formats(world, mock_upstream):
    """gpt-4.1 also served by the mock in OpenAI Responses' format; claude-sonnet-4.5 in Anthropic's;
    gemini-2.5-flash in Gemini's (each route's other deployments off)."""
    from gateway.models import Deployment, ModelRoute
    from gateway.services import deployment_upsert, provider_upsert
    from tests.conftest import UPSTREAM_SECRET

    for model, kind, path in (
        ("gpt-4.1", "openai-responses", "/v1"),
        ("claude-sonnet-4.5", "anthropic", "/v1"),
        ("gemini-2.5-flash", "gemini", "/v1beta"),
    ):
        provider = provider_upsert(
            name=f"mock-{kind}", kind=kind, base_url=mock_upstream.url + path, credential=UPSTREAM_SECRET
        )
        route = ModelRoute.objects.get(name=model)
        Deployment.objects.filter(route=route).update(enabled=False)
        deployment_upsert(route=route, provider=provider, upstream_model=model)


FUNCTION = {"type": "function", "name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip


@pytest.mark.parametrize(
    ("model", "wire"),
    [("gpt-4.1", "openai_responses"), ("claude-sonnet-4.5", "anthropic"), ("deepseek-v3.2", "mock")],
)
def test_responses_create_round_trips_a_function_call_to_every_upstream_format(
    gateway_server, world, upstream_formats, usage_rows, model, wire
):
    client = gpt(gateway_server, world.key)
    first = client.responses.create(
        model=model, input="weather? [mock tool_calls=1 prompt_tokens=40]", tools=[FUNCTION], store=False
    )
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and orjson.loads(call.arguments) == {"city": "lorem"}
    items = [
        {"role": "user", "content": "weather? [mock tool_calls=1 prompt_tokens=40]"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        {"role": "user", "content": "thanks [mock prompt_tokens=70 tokens=6]"},
    ]
    events = list(
        client.responses.create(model=model, input=items, tools=[FUNCTION], store=False, stream=True)
    )
    assert events[-1].type == "response.completed"
    final = events[-1].response
    assert len(final.output_text.split()) == 6
    assert (final.usage.input_tokens, final.usage.output_tokens) == (70, 6)
    rows = usage_rows(2)
    assert [r.prompt_tokens for r in rows] == [40, 70] and rows[1].completion_tokens == 6
    assert {r.upstream_format for r in rows} == {wire} and {r.ingress for r in rows} == {"openai_responses"}


def test_the_anthropic_sdk_streams_from_a_gemini_format_upstream(
    gateway_server, world, upstream_formats, usage_rows
):
    with claude(gateway_server, world.key).messages.stream(
        model="gemini-2.5-flash",
        max_tokens=100,
        messages=[{"role": "user", "content": "Tell me [mock prompt_tokens=30 tokens=8]"}],
    ) as stream:
        final = stream.get_final_message()
    assert len(final.content[0].text.split()) == 8 and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 8)
    [row] = usage_rows(1)
    assert row.upstream_format == "gemini" and (row.prompt_tokens, row.completion_tokens) == (30, 8)

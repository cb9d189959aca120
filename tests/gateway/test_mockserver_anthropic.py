"""The mock provider speaks Anthropic Messages: proved with the official `anthropic` SDK (which
parses every answer into its types) and raw HTTP for the exact event sequence, errors and faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from gateway.mockserver import MockConfig, MockServerThread
from tests.support.mockhttp import parse_sse, post, stream_until_closed

pytestmark = pytest.mark.timeout(30)

KEY = "sk-ant-mock-key-0123456789"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}


def tokens(text: str) -> int:
    return (len(text) + 3) // 4


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServerThread]:
    with MockServerThread(config=MockConfig(tokens=8, api_key=KEY)) as server:
        yield server


@pytest.fixture
def client(mock: MockServerThread) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=mock.url, api_key=KEY, max_retries=0, timeout=10)


def messages(mock: MockServerThread, body: dict[str, Any], **headers: str) -> Any:
    return post(
        mock.url + "/v1/messages",
        {"model": "claude-sonnet-4.5", "max_tokens": 100, **body},
        headers={**HEADERS, **headers},
    )


def test_it_answers_a_message_the_sdk_parses(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-sonnet-4.5",
        max_tokens=100,
        system="You are terse.",
        messages=[
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "again"},
        ],
    )
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.model == "claude-sonnet-4.5" and message.stop_reason == "end_turn"
    [block] = message.content
    assert block.type == "text" and len(block.text.split()) == 8
    prompt = (
        3
        + (4 + tokens("You are terse."))
        + (4 + tokens("hello"))
        + (4 + tokens("hi"))
        + (4 + tokens("again"))
    )
    assert message.usage.input_tokens == prompt and message.usage.output_tokens == 8
    assert message.usage.cache_read_input_tokens == 0 and message.usage.cache_creation_input_tokens == 0

    counted = client.messages.count_tokens(
        model="claude-sonnet-4.5",
        system="You are terse.",
        messages=[
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "again"},
        ],
    )
    assert counted.input_tokens == prompt


def test_it_stops_at_max_tokens(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="m", max_tokens=3, messages=[{"role": "user", "content": "hello"}])
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3


def test_it_streams_the_full_event_sequence(mock: MockServerThread, client: anthropic.Anthropic) -> None:
    body = {
        "stream": True,
        "tools": [WEATHER, TIME],
        "messages": [{"role": "user", "content": "weather? [mock tool_calls=2 reasoning_tokens=3 tokens=2]"}],
    }
    reply = messages(mock, body)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    names = reply.names()
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    for event in reply.events:
        assert event.data["type"] == event.name
    start = reply.events[0].data["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == reply.events[0].data["message"]["usage"]["input_tokens"] > 0

    blocks: dict[int, dict[str, Any]] = {}
    for event in reply.events:
        data = event.data
        if event.name == "content_block_start":
            assert data["index"] == len(blocks)  # indexes count up from 0
            blocks[data["index"]] = {**data["content_block"], "deltas": []}
        elif event.name == "content_block_delta":
            blocks[data["index"]]["deltas"].append(data["delta"])
        elif event.name == "content_block_stop":
            blocks[data["index"]]["stopped"] = True
    assert [block["type"] for block in blocks.values()] == ["thinking", "text", "tool_use", "tool_use"]
    assert all(block.get("stopped") for block in blocks.values())
    thinking = blocks[0]["deltas"]
    assert [d["type"] for d in thinking] == ["thinking_delta"] * 3 + ["signature_delta"]
    assert [d["type"] for d in blocks[1]["deltas"]] == ["text_delta"] * 2
    calls = [blocks[2], blocks[3]]
    assert [call["name"] for call in calls] == ["get_weather", "get_time"]
    assert calls[0]["id"] != calls[1]["id"] and all(call["id"].startswith("toolu_") for call in calls)
    for call in calls:
        assert call["input"] == {} and [d["type"] for d in call["deltas"]] == ["input_json_delta"] * 2
    assert json.loads("".join(d["partial_json"] for d in calls[0]["deltas"])) == {"city": "lorem", "days": 0}
    assert json.loads("".join(d["partial_json"] for d in calls[1]["deltas"])) == {"call": 1}

    delta = reply.events[-2].data
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    weather_tokens = tokens("get_weather") + tokens('{"city":"lorem","days":0}')
    time_tokens = tokens("get_time") + tokens('{"call":1}')
    assert delta["usage"] == {"output_tokens": 3 + 2 + weather_tokens + time_tokens}

    # The SDK assembles the same message from the stream.
    with client.messages.stream(
        model="claude-sonnet-4.5", max_tokens=100, tools=[WEATHER, TIME], messages=body["messages"]
    ) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == delta["usage"]["output_tokens"]
    assert final.content[2].input == {"city": "lorem", "days": 0}  # type: ignore[union-attr]


def test_it_relays_its_own_thinking_and_rejects_a_forged_signature(client: anthropic.Anthropic) -> None:
    first = client.messages.create(
        model="m",
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[WEATHER],
        messages=[{"role": "user", "content": "go [mock tool_calls=2 reasoning_tokens=4]"}],
    )
    thinking, call_a, call_b = first.content
    assert thinking.type == "thinking" and len(thinking.thinking.split()) == 4 and thinking.signature
    assert call_a.type == "tool_use" and call_b.type == "tool_use" and call_a.id != call_b.id
    assert first.usage.output_tokens == 4 + 2 * (tokens("get_weather") + tokens('{"city":"lorem","days":0}'))

    assistant = {
        "role": "assistant",
        "content": [block.model_dump(exclude_none=True) for block in first.content],
    }
    results = [
        {"type": "tool_result", "tool_use_id": call_a.id, "content": "sunny"},
        {"type": "tool_result", "tool_use_id": call_b.id, "content": [{"type": "text", "text": "rain"}]},
    ]
    history = [{"role": "user", "content": "go"}, assistant, {"role": "user", "content": results}]
    answer = client.messages.create(model="m", max_tokens=4000, tools=[WEATHER], messages=history)
    assert answer.stop_reason == "end_turn"
    prompt = 3 + (4 + tokens("go")) + (4 + 0) + (4 + tokens("sunnyrain"))
    assert answer.usage.input_tokens == prompt

    forged = {
        **assistant,
        "content": [{**assistant["content"][0], "thinking": "something else"}, *assistant["content"][1:]],
    }
    with pytest.raises(anthropic.BadRequestError, match="Invalid `signature` in `thinking` block"):
        client.messages.create(model="m", max_tokens=4000, messages=[history[0], forged, history[2]])

    with pytest.raises(
        anthropic.BadRequestError, match="without `tool_result` blocks immediately after: " + call_b.id
    ):
        client.messages.create(
            model="m",
            max_tokens=100,
            messages=[history[0], assistant, {"role": "user", "content": results[:1]}],
        )
    stray = {"type": "tool_result", "tool_use_id": "toolu_other", "content": "x"}
    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id`"):
        client.messages.create(model="m", max_tokens=100, messages=[{"role": "user", "content": [stray]}])


def test_it_follows_tool_choice(client: anthropic.Anthropic) -> None:
    forced = client.messages.create(
        model="m",
        max_tokens=100,
        tools=[WEATHER, TIME],
        tool_choice={"type": "tool", "name": "get_time"},
        messages=[{"role": "user", "content": "hi"}],
    )
    assert [(b.type, getattr(b, "name", None)) for b in forced.content] == [("tool_use", "get_time")]
    assert forced.stop_reason == "tool_use"
    anything = client.messages.create(
        model="m",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "hi"}],
    )
    assert anything.content[0].type == "tool_use"
    none = client.messages.create(
        model="m",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "hi [mock tool_calls=3]"}],
    )
    assert [b.type for b in none.content] == ["text"] and none.stop_reason == "end_turn"


def test_it_reports_cache_reads_and_writes(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="m",
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": "x [mock prompt_tokens=100 cached_tokens=40 cache_write_tokens=10 cache_write_1h_tokens=5]",
            }
        ],
    )
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (
        45,
        40,
        15,
    )
    assert usage.cache_creation is not None
    assert (
        usage.cache_creation.ephemeral_5m_input_tokens,
        usage.cache_creation.ephemeral_1h_input_tokens,
    ) == (10, 5)


def test_it_answers_faults_with_anthropic_errors(mock: MockServerThread, client: anthropic.Anthropic) -> None:
    user = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=mock.url, api_key="wrong", max_retries=0).messages.create(
            model="m", max_tokens=5, messages=user
        )
    cases = [
        (429, anthropic.RateLimitError),
        (403, anthropic.PermissionDeniedError),
        (404, anthropic.NotFoundError),
        (500, anthropic.InternalServerError),
        (529, anthropic.OverloadedError),
    ]
    for status, error in cases:
        with pytest.raises(error) as caught:
            client.messages.create(
                model="m",
                max_tokens=5,
                messages=[{"role": "user", "content": f"[mock status={status} retry_after=2]"}],
            )
        assert caught.value.response.headers["retry-after"] == "2"

    reply = messages(mock, {"messages": user}, **{"X-Mock-Status": "429"})
    body = reply.json()
    assert (
        reply.status == 429 and body["type"] == "error" and body["request_id"] == reply.headers["request-id"]
    )
    assert body["error"] == {"type": "rate_limit_error", "message": "mock fault: status 429"}
    assert (
        messages(mock, {"messages": user}, **{"X-Mock-Status": "529"}).json()["error"]["type"]
        == "overloaded_error"
    )

    echoed = messages(mock, {"messages": [{"role": "user", "content": "[mock echo_credential]"}]})
    assert KEY in echoed.json()["content"][0]["text"]
    Message.model_validate(echoed.json())  # the raw document is one of the SDK's types


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"frequency_penalty": 0.5}, "frequency_penalty: Extra inputs are not permitted"),
        ({"temperature": 1.5}, "temperature"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
            "messages.0.content.0",
        ),
        ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2000}}, "`max_tokens` must be greater"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
        ({"tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
        ({"messages": [{"role": "user", "content": "[mock tool_calls=1]"}]}, "needs tools"),
        (
            {
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "max_tokens": 3000,
                "tools": [WEATHER],
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
                    },
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
                    },
                ],
            },
            "must start with a thinking block",
        ),
    ],
)
def test_it_rejects_what_the_messages_api_rejects(
    mock: MockServerThread, change: dict[str, Any], message: str
) -> None:
    body = {"model": "m", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}], **change}
    body = {key: value for key, value in body.items() if value is not None}
    reply = post(mock.url + "/v1/messages", body, headers=HEADERS)
    assert reply.status == 400, reply.body
    assert reply.json()["type"] == "error" and reply.json()["error"]["type"] == "invalid_request_error"
    assert message in reply.json()["error"]["message"]


def test_it_requires_the_anthropic_version_header(mock: MockServerThread) -> None:
    reply = post(
        mock.url + "/v1/messages",
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": KEY},
    )
    assert reply.status == 400 and "anthropic-version" in reply.json()["error"]["message"]


def test_it_breaks_streams_as_directed(mock: MockServerThread) -> None:
    body = {"model": "m", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    received, clean = stream_until_closed(
        mock.url + "/v1/messages", body, headers={**HEADERS, "X-Mock-Drop-After": "3"}
    )
    events = parse_sse(received)
    assert not clean and [e.data["delta"]["text"] for e in events if e.name == "content_block_delta"] == [
        "lorem ",
        "ipsum ",
        "dolor ",
    ]
    assert "message_stop" not in [e.name for e in events]

    reply = messages(
        mock, {"stream": True, "messages": [{"role": "user", "content": "hi"}]}, **{"X-Mock-Error-After": "2"}
    )
    assert reply.names()[-1] == "error" and reply.events[-1].data["error"]["type"] == "api_error"
    assert reply.names().count("content_block_delta") == 2

    malformed = messages(
        mock, {"stream": True, "messages": [{"role": "user", "content": "hi [mock malformed]"}]}
    )
    assert any(isinstance(e.data, str) for e in malformed.events) and malformed.names()[-1] == "message_stop"

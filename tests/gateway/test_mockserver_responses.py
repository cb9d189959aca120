"""The mock provider speaks OpenAI's Responses API: proved with the official `openai` SDK
(`responses.create`, JSON and streaming, parsed into its types) and raw HTTP for the typed event
sequence, errors and faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.responses import Response

from gateway.mockserver import MockConfig, MockServerThread
from tests.support.mockhttp import post

pytestmark = pytest.mark.timeout(30)

KEY = "sk-mock-responses-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    },
}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}


def tokens(text: str) -> int:
    return (len(text) + 3) // 4


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServerThread]:
    with MockServerThread(config=MockConfig(tokens=20, api_key=KEY)) as server:
        yield server


@pytest.fixture
def client(mock: MockServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=mock.url + "/v1", api_key=KEY, max_retries=0, timeout=10)


def responses(mock: MockServerThread, body: dict[str, Any], **headers: str) -> Any:
    return post(mock.url + "/v1/responses", {"model": "gpt-4.1", **body}, headers={**HEADERS, **headers})


def test_it_answers_a_response_the_sdk_parses(mock: MockServerThread, client: openai.OpenAI) -> None:
    response = client.responses.create(model="gpt-4.1", instructions="Be terse.", input="hello", store=False)
    assert (
        response.object == "response" and response.status == "completed" and response.id.startswith("resp_")
    )
    assert len(response.output_text.split()) == 20
    [item] = response.output
    assert item.type == "message" and item.role == "assistant"
    assert response.usage is not None
    assert response.usage.input_tokens == 3 + (4 + tokens("Be terse.")) + (4 + tokens("hello"))
    assert response.usage.output_tokens == 20 and response.usage.input_tokens_details.cached_tokens == 0
    # The raw document validates strictly against the SDK's type, not only its lenient parser.
    Response.model_validate(responses(mock, {"input": "hello"}).json(), strict=False)

    items = client.responses.create(
        model="gpt-4.1",
        input=[
            {"role": "developer", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "abc"},
                    {"type": "input_image", "image_url": "https://x/y.png"},
                ],
            },
        ],
    )
    assert items.usage is not None and items.usage.input_tokens == 3 + (4 + tokens("sys")) + (
        4 + tokens("abc")
    )


def test_it_is_incomplete_at_max_output_tokens(client: openai.OpenAI) -> None:
    response = (
        client.responses.create(
            model="m", input="hello", max_output_tokens=16, extra_headers={"X-Mock-Tokens": ""}
        )
        if False
        else client.responses.create(model="m", input="hello", max_output_tokens=17)
    )
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert (
        response.incomplete_details.reason == "max_output_tokens"
        and response.usage
        and response.usage.output_tokens == 17
    )


def test_it_makes_parallel_function_calls_and_takes_their_outputs(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="m",
        input="go [mock tool_calls=2 reasoning_tokens=6 cached_tokens=4]",
        tools=[WEATHER, TIME],
        include=["reasoning.encrypted_content"],
    )  # type: ignore[list-item]
    reasoning, first, second = response.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert first.type == "function_call" and second.type == "function_call"
    assert (first.name, json.loads(first.arguments)) == ("get_weather", {"city": "lorem", "unit": "c"})
    assert (second.name, json.loads(second.arguments)) == ("get_time", {"call": 1})
    assert first.call_id != second.call_id and first.id != second.id
    usage = response.usage
    calls = tokens("get_weather") + tokens(first.arguments) + tokens("get_time") + tokens(second.arguments)
    assert usage is not None and usage.output_tokens == 6 + calls
    assert usage.output_tokens_details.reasoning_tokens == 6 and usage.input_tokens_details.cached_tokens == 4
    assert usage.input_tokens_details.cache_write_tokens == 0

    follow_up: list[Any] = [
        {"role": "user", "content": "go"},
        reasoning.model_dump(exclude_none=True),
        first.model_dump(exclude_none=True),
        second.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": first.call_id, "output": "sunny"},
        {"type": "function_call_output", "call_id": second.call_id, "output": "noon"},
    ]
    answer = client.responses.create(model="m", input=follow_up, tools=[WEATHER, TIME])  # type: ignore[list-item]
    assert answer.status == "completed" and answer.output_text

    forged = [*follow_up]
    forged[1] = {**forged[1], "encrypted_content": "bm90IG1pbmU="}
    with pytest.raises(openai.BadRequestError, match="could not be verified"):
        client.responses.create(model="m", input=forged)
    with pytest.raises(openai.BadRequestError, match="No tool call found for function call output"):
        client.responses.create(
            model="m", input=[{"type": "function_call_output", "call_id": "call_x", "output": "?"}]
        )


def test_it_reports_cache_writes(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="m",
        input="x [mock prompt_tokens=90 cached_tokens=30 cache_write_tokens=20 cache_write_1h_tokens=5]",
    )
    assert response.usage is not None and response.usage.input_tokens == 90
    details = response.usage.input_tokens_details
    assert (details.cached_tokens, details.cache_write_tokens) == (30, 25)
    assert details.cache_write_tokens_details is not None
    assert (
        details.cache_write_tokens_details.ttl_30m_tokens,
        details.cache_write_tokens_details.ttl_12h_tokens,
    ) == (20, 5)


def test_it_follows_tool_choice(client: openai.OpenAI) -> None:
    forced = client.responses.create(
        model="m", input="hi", tools=[WEATHER, TIME], tool_choice={"type": "function", "name": "get_time"}
    )  # type: ignore[list-item]
    assert [(item.type, getattr(item, "name", None)) for item in forced.output] == [
        ("function_call", "get_time")
    ]
    none = client.responses.create(
        model="m", input="hi [mock tool_calls=2]", tools=[WEATHER], tool_choice="none"
    )  # type: ignore[list-item]
    assert [item.type for item in none.output] == ["message"]


def test_it_streams_typed_events_through_response_completed(
    mock: MockServerThread, client: openai.OpenAI
) -> None:
    reply = responses(
        mock,
        {"stream": True, "tools": [WEATHER], "input": "go [mock tool_calls=1 reasoning_tokens=2 tokens=2]"},
    )
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    for event in reply.events:
        assert event.data["type"] == event.name
    assert [event.data["sequence_number"] for event in reply.events] == list(range(len(reply.events)))
    assert reply.names() == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.output_item.done",  # reasoning
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    completed = reply.events[-1].data["response"]
    assert completed["status"] == "completed" and [item["type"] for item in completed["output"]] == [
        "reasoning",
        "message",
        "function_call",
    ]
    deltas = "".join(
        e.data["delta"] for e in reply.events if e.name == "response.function_call_arguments.delta"
    )
    assert deltas == completed["output"][2]["arguments"]
    assert completed["usage"]["output_tokens"] == 2 + 2 + tokens("get_weather") + tokens(deltas)

    with client.responses.stream(model="m", input="hello", tools=[TIME], tool_choice="required") as stream:  # type: ignore[list-item]
        arguments = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
        final = stream.get_final_response()
    assert final.status == "completed" and [item.type for item in final.output] == ["function_call"]
    assert (
        arguments == '{"call":0}'
        and final.usage is not None
        and final.usage.input_tokens == 3 + 4 + tokens("hello")
    )

    # At the output limit the real API ends with response.incomplete (not .completed).
    events = list(client.responses.create(model="m", input="hello", max_output_tokens=16, stream=True))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    last = events[-1]
    assert last.type == "response.incomplete" and last.response.status == "incomplete"
    assert text == last.response.output_text and len(text.split()) == 16
    assert last.response.usage is not None and last.response.usage.output_tokens == 16


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"max_output_tokens": 5}, "max_output_tokens"),
        ({"messages": []}, "messages"),
        ({"input": None}, "input"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        ({"text": {"format": {"type": "json_schema"}}}, "text.format"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ],
)
def test_it_rejects_what_the_responses_api_rejects(
    mock: MockServerThread, change: dict[str, Any], param: str
) -> None:
    reply = responses(mock, {"input": "hi", **change})
    assert reply.status == 400, reply.body
    assert (
        reply.json()["error"]["type"] == "invalid_request_error" and reply.json()["error"]["param"] == param
    )


def test_it_answers_faults_and_breaks_streams(mock: MockServerThread, client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="m", input="[mock status=429 retry_after=2]")
    assert caught.value.response.headers["retry-after"] == "2"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=mock.url + "/v1", api_key="wrong", max_retries=0).responses.create(
            model="m", input="hi"
        )

    failed = responses(mock, {"stream": True, "input": "hi"}, **{"X-Mock-Error-After": "3"})
    assert failed.names()[-1] == "response.failed" and failed.names().count("response.output_text.delta") == 3
    assert failed.events[-1].data["response"]["error"]["code"] == "server_error"

"""The OpenAI Responses adapter against the mock's /v1/responses, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway import canonical
from gateway.canonical import FinishReason, Role
from gateway.mockserver import MockConfig, MockServerThread
from gateway.providers.openai_responses import OpenAIResponsesAdapter
from tests.support.upstream import call, deployment, last_upstream_body, send, stream, system, tokens, user

pytestmark = pytest.mark.timeout(30)

KEY = "sk-upstream-responses-0123456789"
ADAPTER = OpenAIResponsesAdapter()
WEATHER = canonical.Tool(
    "get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServerThread]:
    with MockServerThread(config=MockConfig(tokens=20, api_key=KEY)) as server:
        yield server


@pytest.fixture
def dep(mock: MockServerThread):  # type: ignore[no-untyped-def]
    return deployment("openai-responses", mock.url + "/v1", credential=KEY, model="gpt-5")


def test_it_translates_a_conversation_and_reads_the_answer(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(
        model="gpt-5",
        messages=[
            system("Be terse."),
            canonical.Message(
                Role.USER, [canonical.TextPart("look"), canonical.ImagePart("https://x.test/a.png", "low")]
            ),
            canonical.Message(Role.ASSISTANT, [canonical.TextPart("ok")]),
            system("Now English."),
            user("again"),
        ],
        sampling=canonical.Sampling(temperature=0.5, top_p=0.9, stop=["x"]),
        max_output_tokens=5,
        response_format=canonical.ResponseFormat("json_schema", {"type": "object"}, "answer", True),
        user="u-1",
    )
    answer = call(ADAPTER, dep, request)
    assert answer.response is not None, answer.body
    logged = last_upstream_body(mock.url)
    assert logged["path"] == "/v1/responses" and logged["headers"]["authorization"] == f"Bearer {KEY}"
    body = logged["json"]
    assert body["instructions"] == "Be terse." and body["store"] is False
    assert body["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
            ],
        },
        {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
        {"role": "developer", "content": "Now English."},
        {"role": "user", "content": [{"type": "input_text", "text": "again"}]},
    ]
    # The API's floor is 16 output tokens; stop sequences do not exist there.
    assert body["max_output_tokens"] == 16 and "stop" not in body
    assert body["text"] == {
        "format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}
    }
    response = answer.response
    assert response.finish_reason == FinishReason.LENGTH and len(response.text.split()) == 16
    prompt = (
        3
        + (4 + tokens("Be terse."))
        + (4 + tokens("look"))
        + (4 + tokens("ok"))
        + (4 + tokens("Now English."))
        + (4 + tokens("again"))
    )
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (prompt, 16)


def test_it_makes_parallel_calls_and_relays_its_reasoning(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(
        model="m",
        messages=[user("go [mock tool_calls=2 reasoning_tokens=5 cached_tokens=4 cache_write_tokens=2]")],
        tools=[WEATHER, canonical.Tool("get_time")],
        tool_choice=canonical.ToolChoice("auto", parallel=True),
        reasoning=canonical.Reasoning(effort="high", summary="auto"),
    )
    first = call(ADAPTER, dep, request).response
    body = last_upstream_body(mock.url)["json"]
    assert body["reasoning"] == {"effort": "high", "summary": "auto"} and body["include"] == [
        "reasoning.encrypted_content"
    ]
    assert body["tools"][0] == {
        "type": "function",
        "name": "get_weather",
        "description": "Weather",
        "parameters": WEATHER.parameters,
        "strict": False,
    }
    assert body["parallel_tool_calls"] is True and body["tool_choice"] == "auto"
    assert first is not None and first.finish_reason == FinishReason.TOOL_CALLS
    reasoning, *calls = first.content
    assert (
        isinstance(reasoning, canonical.ReasoningPart)
        and reasoning.encrypted_content
        and reasoning.provider == "openai-responses"
    )
    assert [c.name for c in first.tool_calls] == ["get_weather", "get_time"] and calls[0] != calls[1]
    usage = first.usage
    assert (usage.reasoning_tokens, usage.cached_tokens, usage.cache_write_tokens) == (5, 4, 2)

    def follow(content: list[canonical.Part]) -> canonical.Request:
        return canonical.Request(
            model="m",
            messages=[
                user("go"),
                canonical.Message(Role.ASSISTANT, content),
                canonical.Message(
                    Role.TOOL,
                    [canonical.ToolResultPart(c.id, [canonical.TextPart("r")]) for c in first.tool_calls],
                ),
            ],
        )

    assert call(ADAPTER, dep, follow(list(first.content))).status == 200
    items = last_upstream_body(mock.url)["json"]["input"]
    assert [item.get("type", "message") for item in items] == [
        "message",
        "reasoning",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]
    assert items[1]["encrypted_content"] == reasoning.encrypted_content
    assert [items[2]["call_id"], items[3]["call_id"]] == [items[4]["call_id"], items[5]["call_id"]]

    foreign = canonical.ReasoningPart(reasoning.id, reasoning.encrypted_content, provider="openai")
    assert call(ADAPTER, dep, follow([foreign, *calls])).status == 200
    assert "reasoning" not in [item.get("type") for item in last_upstream_body(mock.url)["json"]["input"]]
    forged = canonical.ReasoningPart("rs_other", reasoning.encrypted_content, provider="openai-responses")
    refused = call(ADAPTER, dep, follow([forged, *calls]))
    assert refused.status == 400 and refused.error is not None and refused.error.kind == "upstream_rejected"


def test_it_maps_tool_choice(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    forced = call(
        ADAPTER,
        dep,
        canonical.Request(
            model="m",
            messages=[user("hi")],
            tools=[WEATHER],
            tool_choice=canonical.ToolChoice("tool", "get_weather"),
        ),
    ).response
    assert forced is not None and [c.name for c in forced.tool_calls] == ["get_weather"]
    assert last_upstream_body(mock.url)["json"]["tool_choice"] == {"type": "function", "name": "get_weather"}
    none = call(
        ADAPTER,
        dep,
        canonical.Request(
            model="m",
            messages=[user("[mock tool_calls=1]")],
            tools=[WEATHER],
            tool_choice=canonical.ToolChoice("none"),
        ),
    ).response
    assert none is not None and none.tool_calls == [] and none.finish_reason == FinishReason.STOP


def test_it_streams_the_same_answer_event_by_event(dep) -> None:  # type: ignore[no-untyped-def]
    base = canonical.Request(
        model="m",
        messages=[user("go [mock tool_calls=2 reasoning_tokens=2 tokens=3]")],
        tools=[WEATHER],
        reasoning=canonical.Reasoning(effort="low"),
    )
    whole = call(ADAPTER, dep, base).response
    streamed = stream(ADAPTER, dep, canonical.Request(**{**base.__dict__, "stream": True}), slice_size=13)
    assert streamed.error is None and streamed.done and whole is not None
    got = streamed.response
    assert got.text == whole.text and got.finish_reason == FinishReason.TOOL_CALLS
    assert [(c.name, c.arguments) for c in got.tool_calls] == [
        (c.name, c.arguments) for c in whole.tool_calls
    ]
    assert got.usage == whole.usage
    assert any(isinstance(p, canonical.ReasoningPart) and p.encrypted_content for p in got.content)

    limited = stream(
        ADAPTER, dep, canonical.Request(model="m", messages=[user("hi")], max_output_tokens=16, stream=True)
    )
    assert limited.done and limited.response.finish_reason == FinishReason.LENGTH  # response.incomplete
    failed = stream(
        ADAPTER,
        dep,
        canonical.Request(model="m", messages=[user("hi")], stream=True),
        **{"X-Mock-Error-After": "2"},
    )
    assert failed.error is not None and failed.error.kind == "upstream_stream_broken"
    cut = stream(
        ADAPTER,
        dep,
        canonical.Request(model="m", messages=[user("hi")], stream=True),
        **{"X-Mock-Drop-After": "2"},
    )
    assert not cut.done and not any(isinstance(e, canonical.Finish) for e in cut.events)


def test_it_passes_responses_clients_through(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "gpt-5", "input": "hi [mock cached_tokens=1]", "store": False}
    upstream = ADAPTER.passthrough_request(
        deployment=dep, dialect="openai_responses", body=body, request=None, request_id="r"
    )
    reply = send(upstream)
    relayed, usage, served = ADAPTER.passthrough_response(dialect="openai_responses", content=reply.content)
    assert (
        relayed == reply.content
        and served == "gpt-5"
        and (usage.cached_tokens, usage.completion_tokens) == (1, 20)
    )

    upstream = ADAPTER.passthrough_request(
        deployment=dep,
        dialect="openai_responses",
        body={**body, "stream": True},
        request=None,
        request_id="r",
    )
    translator = ADAPTER.passthrough_stream(
        dialect="openai_responses", client_wants_usage=False, credential=KEY
    )
    raw = out = b""
    with httpx.stream("POST", upstream.url, content=upstream.content, headers=upstream.headers) as response:
        for chunk in response.iter_raw():
            raw += chunk
            out += translator.feed(chunk)
    out += translator.finish()
    assert (
        out == raw
        and translator.done
        and translator.usage.completion_tokens == 20
        and translator.chunks == 20
    )


def test_it_reads_openai_errors(dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(model="m", messages=[user("hi")])
    limited = call(ADAPTER, dep, request, **{"X-Mock-Status": "429", "X-Mock-Retry-After": "3"}).error
    assert limited is not None and limited.retryable and limited.retry_after == "3"
    server = call(ADAPTER, dep, request, **{"X-Mock-Status": "500"}).error
    assert server is not None and server.retryable and server.status == 502

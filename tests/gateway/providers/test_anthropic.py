"""The Anthropic adapter against the mock's Anthropic Messages endpoint, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from gateway import canonical
from gateway.canonical import FinishReason, Role
from gateway.mockserver import MockConfig, MockServerThread
from gateway.providers.anthropic import AnthropicAdapter
from tests.support.upstream import call, deployment, last_upstream_body, send, stream, system, tokens, user

pytestmark = pytest.mark.timeout(30)

KEY = "sk-ant-upstream-credential-0123456789"
ADAPTER = AnthropicAdapter()
WEATHER = canonical.Tool(
    "get_weather", "Weather in a city", {"type": "object", "properties": {"city": {"type": "string"}}}
)
TIME = canonical.Tool("get_time")
PIXEL = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServerThread]:
    with MockServerThread(config=MockConfig(tokens=8, api_key=KEY)) as server:
        yield server


@pytest.fixture
def dep(mock: MockServerThread):  # type: ignore[no-untyped-def]
    return deployment("anthropic", mock.url + "/v1", credential=KEY, model="claude-sonnet-4-5")


def test_it_translates_a_conversation_and_reads_the_answer(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(
        model="claude-sonnet-4.5",
        messages=[
            system("Be terse."),
            canonical.Message(Role.USER, [canonical.TextPart("look"), canonical.ImagePart(PIXEL)]),
            canonical.Message(Role.ASSISTANT, [canonical.TextPart("a pixel")]),
            system("Answer in English."),
            user("again"),
        ],
        sampling=canonical.Sampling(temperature=1.7, top_p=0.5, top_k=5, stop=["END"]),
        max_output_tokens=100,
        user="end-user-1",
    )
    answer = call(ADAPTER, dep, request)
    assert answer.response is not None, answer.body
    logged = last_upstream_body(mock.url)
    assert logged["path"] == "/v1/messages" and logged["headers"]["x-api-key"] == KEY
    assert logged["headers"]["anthropic-version"] == "2023-06-01" and "authorization" not in logged["headers"]
    body = logged["json"]
    assert body["model"] == "claude-sonnet-4-5" and body["max_tokens"] == 100
    assert body["system"] == [
        {"type": "text", "text": "Be terse."},
        {"type": "text", "text": "Answer in English."},
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    # Anthropic takes temperature in 0..1, and temperature or top_p, not both.
    assert body["temperature"] == 1.0 and "top_p" not in body and body["top_k"] == 5
    assert body["stop_sequences"] == ["END"] and body["metadata"] == {"user_id": "end-user-1"}

    response = answer.response
    assert response.finish_reason == FinishReason.STOP and len(response.text.split()) == 8
    prompt = (
        3
        + (4 + tokens("Be terse.Answer in English."))
        + (4 + tokens("look"))
        + (4 + tokens("a pixel"))
        + (4 + tokens("again"))
    )
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (prompt, 8)
    assert response.usage.reported


def test_it_makes_parallel_tool_calls_and_returns_their_results(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(
        model="m",
        messages=[user("weather and time? [mock tool_calls=2]")],
        tools=[WEATHER, TIME],
        tool_choice=canonical.ToolChoice("auto", parallel=True),
    )
    first = call(ADAPTER, dep, request).response
    assert first is not None and first.finish_reason == FinishReason.TOOL_CALLS
    calls = first.tool_calls
    assert [c.name for c in calls] == ["get_weather", "get_time"] and calls[0].id != calls[1].id
    assert orjson.loads(calls[0].arguments) == {"city": "lorem"} and orjson.loads(calls[1].arguments) == {
        "call": 1
    }
    body = last_upstream_body(mock.url)["json"]
    assert body["tools"][1] == {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
    assert body["tool_choice"] == {"type": "auto"}

    # OpenAI-style: one TOOL message per result, then a user message. They merge into one user turn
    # with the results first, which is what Anthropic requires.
    follow = canonical.Request(
        model="m",
        messages=[
            user("weather and time?"),
            canonical.Message(Role.ASSISTANT, list(first.content)),
            canonical.Message(
                Role.TOOL, [canonical.ToolResultPart(calls[0].id, [canonical.TextPart("sunny")])]
            ),
            canonical.Message(
                Role.TOOL,
                [canonical.ToolResultPart(calls[1].id, [canonical.TextPart("noon")], is_error=True)],
            ),
            user("thanks"),
        ],
        tools=[WEATHER, TIME],
    )
    second = call(ADAPTER, dep, follow)
    assert second.response is not None, second.body
    turn = last_upstream_body(mock.url)["json"]["messages"][2]
    assert [b["type"] for b in turn["content"]] == ["tool_result", "tool_result", "text"]
    assert turn["content"][1]["is_error"] is True and turn["content"][0]["tool_use_id"] == calls[0].id


def test_it_follows_tool_choice(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    forced = canonical.Request(
        model="m",
        messages=[user("hi")],
        tools=[WEATHER, TIME],
        tool_choice=canonical.ToolChoice("tool", "get_time"),
    )
    response = call(ADAPTER, dep, forced).response
    assert response is not None and [c.name for c in response.tool_calls] == ["get_time"]
    assert last_upstream_body(mock.url)["json"]["tool_choice"] == {"type": "tool", "name": "get_time"}
    none = canonical.Request(
        model="m",
        messages=[user("hi [mock tool_calls=2]")],
        tools=[WEATHER],
        tool_choice=canonical.ToolChoice("none"),
    )
    response = call(ADAPTER, dep, none).response
    assert response is not None and response.tool_calls == [] and response.finish_reason == FinishReason.STOP
    assert last_upstream_body(mock.url)["json"]["tool_choice"] == {"type": "none"}


def test_it_relays_thinking_only_to_anthropic(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(
        model="m",
        messages=[user("think [mock tool_calls=1 reasoning_tokens=4]")],
        tools=[WEATHER],
        reasoning=canonical.Reasoning(effort="low"),
        max_output_tokens=500,
    )
    first = call(ADAPTER, dep, request).response
    body = last_upstream_body(mock.url)["json"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048} and body["max_tokens"] == 2548
    assert "temperature" not in body
    assert first is not None
    thinking = first.content[0]
    assert (
        isinstance(thinking, canonical.ThinkingPart)
        and thinking.provider == "anthropic"
        and thinking.signature
    )
    arguments = first.tool_calls[0].arguments
    assert first.usage.completion_tokens == 4 + tokens("get_weather") + tokens(arguments)

    def follow(content: list[canonical.Part]) -> canonical.Request:
        call_id = first.tool_calls[0].id
        return canonical.Request(
            model="m",
            messages=[
                user("think"),
                canonical.Message(Role.ASSISTANT, content),
                canonical.Message(Role.TOOL, [canonical.ToolResultPart(call_id, [canonical.TextPart("ok")])]),
            ],
            tools=[WEATHER],
        )

    assert call(ADAPTER, dep, follow(list(first.content))).status == 200  # its own signature: accepted
    relayed = last_upstream_body(mock.url)["json"]["messages"][1]["content"][0]
    assert relayed == {"type": "thinking", "thinking": thinking.text, "signature": thinking.signature}

    foreign = canonical.ThinkingPart(text=thinking.text, signature=thinking.signature, provider="gemini")
    assert call(ADAPTER, dep, follow([foreign, *first.content[1:]])).status == 200
    assert [b["type"] for b in last_upstream_body(mock.url)["json"]["messages"][1]["content"]] == ["tool_use"]

    # Without thinking of its own in the tool-calling turn, Anthropic refuses thinking: it is left off.
    assert (
        call(
            ADAPTER,
            dep,
            canonical.Request(
                **{
                    **follow([foreign, *first.content[1:]]).__dict__,
                    "reasoning": canonical.Reasoning(effort="low"),
                }
            ),
        ).status
        == 200
    )
    assert "thinking" not in last_upstream_body(mock.url)["json"]

    forged = canonical.ThinkingPart(text="other thoughts", signature=thinking.signature, provider="anthropic")
    answer = call(ADAPTER, dep, follow([forged, *first.content[1:]]))
    assert answer.status == 400 and answer.error is not None
    assert answer.error.kind == "upstream_rejected" and "signature" in answer.error.message


def test_it_counts_cache_reads_and_writes_into_the_prompt(dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(
        model="m", messages=[user("x [mock prompt_tokens=100 cached_tokens=40 cache_write_tokens=10]")]
    )
    response = call(ADAPTER, dep, request).response
    assert response is not None
    usage = response.usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (100, 40, 10)


def test_it_streams_the_same_answer_chunk_by_chunk(dep) -> None:  # type: ignore[no-untyped-def]
    base = canonical.Request(
        model="m",
        messages=[user("go [mock tool_calls=2 reasoning_tokens=3 tokens=4 cached_tokens=5]")],
        tools=[WEATHER, TIME],
    )
    whole = call(ADAPTER, dep, base).response
    streamed = stream(ADAPTER, dep, canonical.Request(**{**base.__dict__, "stream": True}), slice_size=5)
    assert streamed.error is None and streamed.done
    assert isinstance(streamed.events[0], canonical.Start) and isinstance(
        streamed.events[-1], canonical.Finish
    )
    got = streamed.response
    assert whole is not None
    assert got.text == whole.text and got.finish_reason == FinishReason.TOOL_CALLS
    assert [(c.name, c.arguments) for c in got.tool_calls] == [
        (c.name, c.arguments) for c in whole.tool_calls
    ]
    assert len({c.id for c in got.tool_calls}) == 2
    assert got.usage == whole.usage
    [thinking] = [p for p in got.content if isinstance(p, canonical.ThinkingPart)]
    assert thinking.signature and thinking.provider == "anthropic" and len(thinking.text.split()) == 3
    assert streamed.chunks >= 3 + 4


def test_it_tells_a_broken_stream_from_a_finished_one(dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(model="m", messages=[user("hi")], stream=True)
    cut = stream(ADAPTER, dep, request, **{"X-Mock-Drop-After": "3"})
    assert not cut.done and not any(isinstance(e, canonical.Finish) for e in cut.events)
    assert cut.response.text == "lorem ipsum dolor "
    failed = stream(ADAPTER, dep, request, **{"X-Mock-Error-After": "2"})
    assert failed.error is not None and failed.error.kind == "upstream_stream_broken" and not failed.done


def test_it_reads_anthropic_errors(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(model="m", messages=[user("hi")])
    limited = call(ADAPTER, dep, request, **{"X-Mock-Status": "429", "X-Mock-Retry-After": "2"}).error
    assert limited is not None and limited.retryable and limited.status == 429 and limited.retry_after == "2"
    overloaded = call(ADAPTER, dep, request, **{"X-Mock-Status": "529"}).error
    assert overloaded is not None and overloaded.retryable and overloaded.status == 502
    wrong = deployment("anthropic", mock.url + "/v1", credential="sk-ant-wrong-credential-000")
    refused = call(ADAPTER, wrong, request).error
    assert refused is not None and refused.kind == "upstream_auth"
    quoted = call(
        ADAPTER, dep, canonical.Request(model="m", messages=[user("[mock status=400 echo_credential]")])
    ).error
    assert quoted is not None and KEY not in quoted.message and "[redacted]" in quoted.message
    too_long = ADAPTER.error(
        status=400,
        headers={},
        content=b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 300000 tokens > 200000 maximum"}}',
        credential=KEY,
    )
    assert too_long.kind == "context_length_exceeded" and not too_long.retryable


def test_it_counts_tokens_upstream(dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(model="m", messages=[system("sys"), user("count me")], tools=[WEATHER])
    upstream = ADAPTER.count_tokens_request(deployment=dep, request=request, request_id="r")
    reply = send(upstream)
    assert reply.status_code == 200, reply.content
    assert ADAPTER.parse_count_tokens(content=reply.content) == 3 + (4 + tokens("sys")) + (
        4 + tokens("count me")
    )


def test_it_passes_anthropic_clients_through(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    body = {
        "model": "claude-sonnet-4.5",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi [mock cached_tokens=2]"}],
    }
    request = canonical.Request(
        model="claude-sonnet-4.5", messages=[], betas=["interleaved-thinking-2025-05-14", "not a flag"]
    )
    upstream = ADAPTER.passthrough_request(
        deployment=dep, dialect="anthropic_messages", body=body, request=request, request_id="r"
    )
    reply = send(upstream)
    relayed, usage, served = ADAPTER.passthrough_response(dialect="anthropic_messages", content=reply.content)
    assert relayed == reply.content and served == "claude-sonnet-4-5"
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (
        3 + 4 + tokens("hi [mock cached_tokens=2]"),
        2,
        8,
    )
    logged = last_upstream_body(mock.url)
    assert logged["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert logged["json"] == {**body, "model": "claude-sonnet-4-5"}

    upstream = ADAPTER.passthrough_request(
        deployment=dep,
        dialect="anthropic_messages",
        body={**body, "stream": True},
        request=None,
        request_id="r",
    )
    translator = ADAPTER.passthrough_stream(
        dialect="anthropic_messages", client_wants_usage=False, credential=KEY
    )
    raw = b""
    out = b""
    with httpx.stream("POST", upstream.url, content=upstream.content, headers=upstream.headers) as response:
        for chunk in response.iter_raw():
            raw += chunk
            for start in range(0, len(chunk), 11):
                out += translator.feed(chunk[start : start + 11])
    out += translator.finish()
    assert out == raw and translator.done and translator.served_model == "claude-sonnet-4-5"
    assert (translator.usage.prompt_tokens, translator.usage.completion_tokens) == (usage.prompt_tokens, 8)

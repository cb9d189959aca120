"""The Gemini adapter against the mock's generateContent / streamGenerateContent, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from gateway import canonical
from gateway.canonical import FinishReason, Role
from gateway.mockserver import MockConfig, MockServerThread
from gateway.providers.gemini import GeminiAdapter
from tests.support.upstream import call, deployment, last_upstream_body, send, stream, system, tokens, user

pytestmark = pytest.mark.timeout(30)

KEY = "AIzaSyUpstreamCredential0123456789abc"
ADAPTER = GeminiAdapter()
WEATHER = canonical.Tool(
    "get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)
TIME = canonical.Tool("get_time")


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServerThread]:
    with MockServerThread(config=MockConfig(tokens=8, api_key=KEY)) as server:
        yield server


@pytest.fixture
def dep(mock: MockServerThread):  # type: ignore[no-untyped-def]
    return deployment("gemini", mock.url + "/v1beta", credential=KEY, model="gemini-2.5-flash")


def test_it_translates_a_conversation_and_reads_the_answer(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(
        model="gemini-2.5-flash",
        messages=[
            system("Be terse."),
            canonical.Message(
                Role.USER, [canonical.TextPart("look"), canonical.ImagePart("data:image/png;base64,AAAA")]
            ),
            canonical.Message(Role.ASSISTANT, [canonical.TextPart("ok")]),
            user("and https?"),
            user("again"),
        ],
        sampling=canonical.Sampling(temperature=0.3, top_p=0.9, top_k=4, stop=list("abcdefg"), seed=7),
        max_output_tokens=5,
        response_format=canonical.ResponseFormat("json_schema", {"type": "object"}, "x"),
    )
    answer = call(ADAPTER, dep, request)
    assert answer.response is not None, answer.body
    logged = last_upstream_body(mock.url)
    assert logged["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert logged["headers"]["x-goog-api-key"] == KEY and "authorization" not in logged["headers"]
    body = logged["json"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]  # the two user turns merge
    assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
    assert body["generationConfig"] == {
        "temperature": 0.3, "topP": 0.9, "topK": 4, "seed": 7, "stopSequences": list("abcde"),
        "maxOutputTokens": 5, "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"},
    }  # fmt: skip
    response = answer.response
    assert response.finish_reason == FinishReason.LENGTH and len(response.text.split()) == 5
    prompt = (
        3
        + (4 + tokens("Be terse."))
        + (4 + tokens("look"))
        + (4 + tokens("ok"))
        + (4 + tokens("and https?again"))
    )
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (prompt, 5)


def test_it_makes_parallel_function_calls_and_answers_them(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(
        model="m",
        messages=[user("go [mock tool_calls=2 reasoning_tokens=6 cached_tokens=3]")],
        tools=[WEATHER, TIME],
        reasoning=canonical.Reasoning(budget_tokens=1000),
    )
    first = call(ADAPTER, dep, request).response
    body = last_upstream_body(mock.url)["json"]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather",
                    "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
                {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {}}},
            ]
        }
    ]
    assert body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 1000}
    assert first is not None
    # Gemini ends a function call turn with STOP: it is a tool call turn all the same.
    assert first.finish_reason == FinishReason.TOOL_CALLS
    calls = first.tool_calls
    assert [c.name for c in calls] == ["get_weather", "get_time"] and calls[0].id != calls[1].id
    assert calls[0].signature and calls[0].provider == "gemini" and not calls[1].signature
    arguments = (
        tokens("get_weather") + tokens(calls[0].arguments) + tokens("get_time") + tokens(calls[1].arguments)
    )
    # Thinking is output, billed as such.
    assert (first.usage.completion_tokens, first.usage.reasoning_tokens, first.usage.cached_tokens) == (
        arguments + 6,
        6,
        3,
    )

    thoughts = [p for p in first.content if isinstance(p, canonical.ThinkingPart)]
    assert thoughts and thoughts[0].provider == "gemini"

    def follow(content: list[canonical.Part]) -> canonical.Request:
        return canonical.Request(
            model="m",
            messages=[
                user("go"),
                canonical.Message(Role.ASSISTANT, content),
                canonical.Message(
                    Role.TOOL, [canonical.ToolResultPart(calls[0].id, [canonical.TextPart("sunny")])]
                ),
                canonical.Message(
                    Role.TOOL,
                    [canonical.ToolResultPart(calls[1].id, [canonical.TextPart("late")], is_error=True)],
                ),
            ],
            tools=[WEATHER, TIME],
        )

    answer = call(ADAPTER, dep, follow(list(first.content)))
    assert answer.status == 200, answer.body
    contents = last_upstream_body(mock.url)["json"]["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] == calls[0].signature
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
        {"functionResponse": {"name": "get_time", "response": {"error": "late"}}},
    ]
    # A signature made by another provider never goes to Gemini; one forged for Gemini is refused there.
    foreign = [
        canonical.ToolCallPart(c.id, c.name, c.arguments, signature=c.signature, provider="anthropic")
        for c in calls
    ]
    assert call(ADAPTER, dep, follow(list(foreign))).status == 200
    assert "thoughtSignature" not in last_upstream_body(mock.url)["json"]["contents"][1]["parts"][0]
    forged = [
        canonical.ToolCallPart(calls[0].id, calls[0].name, '{"city": "x"}', calls[0].signature, "gemini"),
        calls[1],
    ]
    refused = call(ADAPTER, dep, follow(list(forged)))
    assert refused.status == 400 and refused.error is not None and refused.error.kind == "upstream_rejected"


def test_it_maps_tool_choice_to_function_calling_modes(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    forced = call(
        ADAPTER,
        dep,
        canonical.Request(
            model="m",
            messages=[user("hi")],
            tools=[WEATHER, TIME],
            tool_choice=canonical.ToolChoice("tool", "get_time"),
        ),
    ).response
    assert forced is not None and [c.name for c in forced.tool_calls] == ["get_time"]
    assert last_upstream_body(mock.url)["json"]["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
    }
    none = call(
        ADAPTER,
        dep,
        canonical.Request(
            model="m",
            messages=[user("hi [mock tool_calls=1]")],
            tools=[WEATHER],
            tool_choice=canonical.ToolChoice("none"),
        ),
    ).response
    assert none is not None and none.tool_calls == [] and none.finish_reason == FinishReason.STOP


def test_it_streams_the_same_answer_chunk_by_chunk(dep) -> None:  # type: ignore[no-untyped-def]
    base = canonical.Request(
        model="m",
        messages=[user("go [mock tool_calls=2 reasoning_tokens=2 tokens=3]")],
        tools=[WEATHER, TIME],
        reasoning=canonical.Reasoning(effort="low"),
    )
    whole = call(ADAPTER, dep, base).response
    streamed = stream(ADAPTER, dep, canonical.Request(**{**base.__dict__, "stream": True}), slice_size=9)
    assert streamed.error is None and streamed.done and whole is not None
    got = streamed.response
    assert got.text == whole.text and got.finish_reason == FinishReason.TOOL_CALLS
    assert [(c.name, orjson.loads(c.arguments)) for c in got.tool_calls] == [
        (c.name, orjson.loads(c.arguments)) for c in whole.tool_calls
    ]
    assert got.tool_calls[0].signature and got.tool_calls[0].provider == "gemini"
    # The last chunk's usageMetadata is the total, not an increment to add up.
    assert got.usage == whole.usage


def test_it_tells_a_broken_stream_from_a_finished_one(dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(model="m", messages=[user("hi")], stream=True)
    cut = stream(ADAPTER, dep, request, **{"X-Mock-Drop-After": "2"})
    assert not cut.done and not any(isinstance(e, canonical.Finish) for e in cut.events)
    assert cut.response.text == "lorem ipsum "
    failed = stream(ADAPTER, dep, request, **{"X-Mock-Error-After": "1"})
    assert failed.error is not None and failed.error.kind == "upstream_stream_broken"


def test_it_reads_google_errors(mock: MockServerThread, dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(model="m", messages=[user("hi")])
    limited = call(ADAPTER, dep, request, **{"X-Mock-Status": "429", "X-Mock-Retry-After": "4"}).error
    assert limited is not None and limited.retryable and limited.retry_after == "4"
    # Google puts the delay in a RetryInfo detail; the adapter honours it without a header too.
    detail = ADAPTER.error(
        status=429,
        headers={},
        content=b'{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"quota","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7s"}]}}',
        credential=KEY,
    )
    assert detail.retry_after == "7"
    wrong = deployment("gemini", mock.url + "/v1beta", credential="AIzaSyWrongWrongWrongWrong000000000")
    refused = call(ADAPTER, wrong, request)
    assert refused.status == 400 and refused.error is not None and refused.error.kind == "upstream_auth"
    unavailable = call(ADAPTER, dep, request, **{"X-Mock-Status": "503"}).error
    assert unavailable is not None and unavailable.retryable
    quoted = call(
        ADAPTER, dep, canonical.Request(model="m", messages=[user("[mock status=400 echo_credential]")])
    ).error
    assert quoted is not None and KEY not in quoted.message


def test_it_counts_tokens_upstream(dep) -> None:  # type: ignore[no-untyped-def]
    request = canonical.Request(model="m", messages=[system("sys"), user("count me")])
    reply = send(ADAPTER.count_tokens_request(deployment=dep, request=request, request_id="r"))
    assert reply.status_code == 200, reply.content
    assert ADAPTER.parse_count_tokens(content=reply.content) == 3 + (4 + tokens("sys")) + (
        4 + tokens("count me")
    )

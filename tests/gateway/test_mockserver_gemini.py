"""The mock provider speaks Gemini generateContent / streamGenerateContent: proved with the
official `google-genai` SDK (which parses every answer into its types) and raw HTTP for the exact
chunks, errors and faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from gateway.mockserver import MockConfig, MockServerThread
from tests.support.mockhttp import parse_sse, post, stream_until_closed

pytestmark = pytest.mark.timeout(30)

KEY = "AIza-mock-key-0123456789"
HEADERS = {"x-goog-api-key": KEY}
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather in a city",
    parameters_json_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
TIME = types.FunctionDeclaration(
    name="get_time", parameters=types.Schema(type="OBJECT", properties={"zone": types.Schema(type="STRING")})
)


def tokens(text: str) -> int:
    return (len(text) + 3) // 4


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServerThread]:
    with MockServerThread(config=MockConfig(tokens=8, api_key=KEY)) as server:
        yield server


@pytest.fixture
def client(mock: MockServerThread) -> genai.Client:
    return genai.Client(
        api_key=KEY, http_options=types.HttpOptions(base_url=mock.url, api_version="v1beta", timeout=10_000)
    )


def url(mock: MockServerThread, method: str, model: str = "gemini-2.5-flash") -> str:
    return f"{mock.url}/v1beta/models/{model}:{method}"


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def test_it_answers_generate_content_the_sdk_parses(client: genai.Client) -> None:
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents=[user("hello"), {"role": "model", "parts": [{"text": "hi"}]}, user("again")],
        config=types.GenerateContentConfig(system_instruction="You are terse.", temperature=0.2),
    )
    [candidate] = response.candidates or []
    assert candidate.finish_reason == types.FinishReason.STOP and candidate.content is not None
    assert candidate.content.role == "model" and len((response.text or "").split()) == 8
    usage = response.usage_metadata
    prompt = (
        3
        + (4 + tokens("You are terse."))
        + (4 + tokens("hello"))
        + (4 + tokens("hi"))
        + (4 + tokens("again"))
    )
    assert usage is not None and usage.prompt_token_count == prompt and usage.candidates_token_count == 8
    assert usage.total_token_count == prompt + 8 and usage.thoughts_token_count is None
    assert response.model_version == "gemini-2.5-flash" and response.response_id

    counted = client.models.count_tokens(
        model="gemini-2.5-flash",
        contents=[user("hello"), {"role": "model", "parts": [{"text": "hi"}]}, user("again")],
    )
    assert counted.total_tokens == prompt - (4 + tokens("You are terse."))


def test_it_stops_at_max_output_tokens(client: genai.Client) -> None:
    response = client.models.generate_content(
        model="m", contents="hello", config=types.GenerateContentConfig(max_output_tokens=3)
    )
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.usage_metadata and response.usage_metadata.candidates_token_count == 3


def test_it_makes_parallel_function_calls_with_a_thought_signature(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER, TIME])],
        thinking_config=types.ThinkingConfig(thinking_budget=512),
    )
    response = client.models.generate_content(
        model="m", contents="go [mock tool_calls=2 reasoning_tokens=5 cached_tokens=3]", config=config
    )
    [candidate] = response.candidates or []
    assert candidate.finish_reason == types.FinishReason.STOP  # Gemini ends a function call turn with STOP
    parts = candidate.content.parts if candidate.content else None
    assert parts is not None and [p.function_call.name for p in parts if p.function_call] == [
        "get_weather",
        "get_time",
    ]
    assert parts[0].function_call and parts[0].function_call.args == {"city": "lorem"}
    assert parts[1].function_call and parts[1].function_call.args == {"zone": "ipsum"}
    assert isinstance(parts[0].thought_signature, bytes) and parts[1].thought_signature is None
    usage = response.usage_metadata
    calls = (
        tokens("get_weather") + tokens('{"city":"lorem"}') + tokens("get_time") + tokens('{"zone":"ipsum"}')
    )
    assert usage is not None and usage.candidates_token_count == calls
    assert usage.thoughts_token_count == 5 and usage.cached_content_token_count == 3
    assert usage.total_token_count == (usage.prompt_token_count or 0) + calls + 5

    # The signed call goes back as it came, with one response per call: accepted.
    history = [
        types.Content(role="user", parts=[types.Part(text="go")]),
        candidate.content,
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name="get_weather", response={"result": "sunny"}),
                types.Part.from_function_response(name="get_time", response={"result": "noon"}),
            ],
        ),
    ]
    answer = client.models.generate_content(model="m", contents=history, config=config)
    assert answer.text and answer.candidates and answer.candidates[0].finish_reason == types.FinishReason.STOP

    # A signature it did not make for that call, or a missing function response: 400.
    forged = candidate.content.model_copy(deep=True)
    assert forged.parts and forged.parts[0].function_call
    forged.parts[0].function_call.args = {"city": "elsewhere"}
    with pytest.raises(errors.ClientError, match="Corrupted thought signature") as caught:
        client.models.generate_content(model="m", contents=[history[0], forged, history[2]], config=config)
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    short = types.Content(role="user", parts=history[2].parts[:1])  # type: ignore[index]
    with pytest.raises(errors.ClientError, match="number of function response parts"):
        client.models.generate_content(
            model="m", contents=[history[0], candidate.content, short], config=config
        )


def test_it_follows_the_function_calling_mode(client: genai.Client) -> None:
    tools = [types.Tool(function_declarations=[WEATHER, TIME])]
    forced = client.models.generate_content(
        model="m",
        contents="hi",
        config=types.GenerateContentConfig(
            tools=tools,
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(
                    mode="ANY", allowed_function_names=["get_time"]
                )
            ),
        ),
    )
    assert [call.name for call in forced.function_calls or []] == ["get_time"]
    none = client.models.generate_content(
        model="m",
        contents="hi [mock tool_calls=2]",
        config=types.GenerateContentConfig(
            tools=tools,
            tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="NONE")),
        ),
    )
    assert none.function_calls is None and none.text


def test_it_streams_chunks_with_usage_in_the_last(mock: MockServerThread, client: genai.Client) -> None:
    body = {
        "contents": [user("go [mock tool_calls=1 reasoning_tokens=2 tokens=3]")],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "parametersJsonSchema": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                        },
                    }
                ]
            }
        ],
        "generationConfig": {"thinkingConfig": {"includeThoughts": True}},
    }
    reply = post(url(mock, "streamGenerateContent") + "?alt=sse", body, headers=HEADERS)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    assert b"\r\n\r\n" in reply.body and all(event.name is None for event in reply.events)
    parts = [event.data["candidates"][0]["content"]["parts"][0] for event in reply.events]
    assert [p.get("thought", False) for p in parts] == [True, True, False, False, False, False, False]
    assert "".join(p["text"] for p in parts[2:5]) == "lorem ipsum dolor "
    assert (
        parts[5]["functionCall"] == {"name": "get_weather", "args": {"city": "lorem"}}
        and parts[5]["thoughtSignature"]
    )
    last = reply.events[-1].data
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert all("finishReason" not in event.data["candidates"][0] for event in reply.events[:-1])
    call_tokens = tokens("get_weather") + tokens('{"city":"lorem"}')
    assert last["usageMetadata"]["candidatesTokenCount"] == 3 + call_tokens
    assert last["usageMetadata"]["thoughtsTokenCount"] == 2
    assert len({event.data["responseId"] for event in reply.events}) == 1

    chunks = list(
        client.models.generate_content_stream(
            model="m", contents="hello", config=types.GenerateContentConfig(max_output_tokens=4)
        )
    )
    assert "".join(chunk.text or "" for chunk in chunks) == "lorem ipsum dolor sit "
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.candidates_token_count == 4
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_it_answers_faults_with_google_errors(mock: MockServerThread, client: genai.Client) -> None:
    wrong = genai.Client(
        api_key="wrong", http_options=types.HttpOptions(base_url=mock.url, api_version="v1beta")
    )
    with pytest.raises(errors.ClientError) as caught:
        wrong.models.generate_content(model="m", contents="hi")
    assert caught.value.code == 400 and "API key not valid" in (caught.value.message or "")
    missing = post(url(mock, "generateContent"), {"contents": [user("hi")]})
    assert missing.status == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    assert post(url(mock, "generateContent") + "?key=" + KEY, {"contents": [user("hi")]}).status == 200

    for status, name in [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (503, "UNAVAILABLE")]:
        error_type = errors.ClientError if status < 500 else errors.ServerError
        with pytest.raises(error_type) as raised:
            client.models.generate_content(model="m", contents=f"[mock status={status} retry_after=3]")
        assert raised.value.code == status and raised.value.status == name
    reply = post(
        url(mock, "generateContent"),
        {"contents": [user("hi")]},
        headers={**HEADERS, "X-Mock-Status": "429", "X-Mock-Retry-After": "3"},
    )
    assert reply.headers["retry-after"] == "3"
    assert reply.json()["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}
    ]

    echoed = post(
        url(mock, "generateContent"), {"contents": [user("[mock echo_credential]")]}, headers=HEADERS
    )
    assert KEY in echoed.json()["candidates"][0]["content"]["parts"][0]["text"]
    assert post(url(mock, "embedText"), {}, headers=HEADERS).json()["error"]["status"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contents": []}, "contents is not specified"),
        ({"contents": [user("hi")], "temperature": 1}, 'Unknown name "temperature"'),
        ({"contents": [user("hi")], "generationConfig": {"max_tokens": 5}}, 'Unknown name "max_tokens"'),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "x", "inlineData": {"data": "", "mimeType": "a/b"}}]}
                ]
            },
            "oneof field 'data'",
        ),
        (
            {"contents": [user("hi")], "tools": [{"functionDeclarations": [{"name": "bad name!"}]}]},
            "Invalid function name",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"text": "x", "thoughtSignature": "bm90IG1pbmU="}]}]},
            "Corrupted thought signature",
        ),
        ({"contents": [user("[mock cache_write_tokens=1]")]}, "no cache writes"),
    ],
)
def test_it_rejects_what_the_gemini_api_rejects(
    mock: MockServerThread, body: dict[str, Any], message: str
) -> None:
    reply = post(url(mock, "generateContent"), body, headers=HEADERS)
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT" and message in error["message"]


def test_it_accepts_snake_case_field_names(mock: MockServerThread) -> None:
    body = {
        "contents": [user("hi")],
        "generation_config": {"max_output_tokens": 2},
        "system_instruction": {"parts": [{"text": "s"}]},
    }
    reply = post(url(mock, "generateContent"), body, headers=HEADERS)
    assert reply.status == 200 and reply.json()["usageMetadata"]["candidatesTokenCount"] == 2


def test_it_breaks_streams_as_directed(mock: MockServerThread) -> None:
    body = {"contents": [user("hi")]}
    received, clean = stream_until_closed(
        url(mock, "streamGenerateContent") + "?alt=sse", body, headers={**HEADERS, "X-Mock-Drop-After": "2"}
    )
    events = parse_sse(received)
    assert (
        not clean and len(events) == 2 and all("finishReason" not in e.data["candidates"][0] for e in events)
    )

    reply = post(
        url(mock, "streamGenerateContent") + "?alt=sse", body, headers={**HEADERS, "X-Mock-Error-After": "1"}
    )
    assert reply.events[-1].data["error"]["status"] == "INTERNAL" and len(reply.events) == 2

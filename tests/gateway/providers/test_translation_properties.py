"""Properties of every adapter's translation, against the mock over real HTTP: any canonical
request becomes an upstream body the upstream's own validation (the mock's parser for that wire
format) accepts, with every message, tool call and tool result still in it; and the answer comes
back without losing a tool call or a token count, the same streamed or not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import canonical
from gateway.canonical import Role
from gateway.mockserver import MockConfig, MockServerThread
from gateway.providers.anthropic import AnthropicAdapter
from gateway.providers.base import Adapter
from gateway.providers.gemini import GeminiAdapter
from gateway.providers.openai import OpenAIAdapter
from gateway.providers.openai_responses import OpenAIResponsesAdapter
from tests.support.upstream import call, deployment, last_upstream_body, stream

pytestmark = pytest.mark.timeout(300)

KEY = "upstream-credential-for-properties"
ADAPTERS: dict[str, tuple[Adapter, str]] = {
    "openai": (OpenAIAdapter(), "/v1"),
    "anthropic": (AnthropicAdapter(), "/v1"),
    "gemini": (GeminiAdapter(), "/v1beta"),
    "openai-responses": (OpenAIResponsesAdapter(), "/v1"),
}
TOOL_NAMES = ["get_weather", "lookup", "run_query"]
PROPERTIES = {"city": {"type": "string"}, "days": {"type": "integer"}, "exact": {"type": "boolean"}}
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# No "[" so that no text is read as a mock directive.
texts = st.text(
    st.characters(codec="utf-8", exclude_characters="[\x00", exclude_categories=["Cs"]),
    min_size=1,
    max_size=40,
)
images = st.sampled_from(["data:image/png;base64,iVBORw0KGgo=", "https://example.test/cat.jpg"]).map(
    canonical.ImagePart
)


@st.composite
def user_messages(draw: st.DrawFn) -> canonical.Message:
    parts: list[canonical.Part] = [canonical.TextPart(draw(texts))]
    if draw(st.booleans()):
        parts.append(draw(images))
    return canonical.Message(Role.USER, parts)


@st.composite
def requests(draw: st.DrawFn) -> canonical.Request:
    tools = [
        canonical.Tool(
            name,
            draw(st.sampled_from(["", "does a thing"])),
            {"type": "object", "properties": dict(list(PROPERTIES.items())[: draw(st.integers(0, 3))])},
        )
        for name in TOOL_NAMES[: draw(st.integers(0, 3))]
    ]
    messages: list[canonical.Message] = []
    if draw(st.booleans()):
        messages.append(canonical.Message(Role.SYSTEM, [canonical.TextPart(draw(texts))]))
    messages.append(draw(user_messages()))
    for turn in range(draw(st.integers(0, 3))):
        if tools and draw(st.booleans()):
            calls = [
                canonical.ToolCallPart(
                    f"call_{turn}_{i}",
                    draw(st.sampled_from([t.name for t in tools])),
                    orjson.dumps({"city": draw(texts)}).decode(),
                )
                for i in range(draw(st.integers(1, 3)))
            ]
            lead: list[canonical.Part] = [canonical.TextPart(draw(texts))] if draw(st.booleans()) else []
            messages.append(canonical.Message(Role.ASSISTANT, [*lead, *calls]))
            results = [
                canonical.ToolResultPart(
                    c.id, [canonical.TextPart(draw(texts))], is_error=draw(st.booleans())
                )
                for c in calls
            ]
            if draw(st.booleans()):  # OpenAI clients: a TOOL message per result
                messages += [canonical.Message(Role.TOOL, [r]) for r in results]
            else:  # Anthropic clients: every result in one user message
                messages.append(canonical.Message(Role.USER, list(results)))
            if draw(st.booleans()):
                messages.append(draw(user_messages()))
        else:
            messages.append(canonical.Message(Role.ASSISTANT, [canonical.TextPart(draw(texts))]))
            messages.append(draw(user_messages()))
    mode = draw(st.sampled_from(["unset", "auto", "none", "required", "tool"]))
    choice = None
    if mode != "unset" and (tools or mode in ("auto", "none")):
        choice = canonical.ToolChoice(
            mode, tools[0].name if mode == "tool" else "", draw(st.sampled_from([None, True, False]))
        )
    sampling = canonical.Sampling(
        temperature=draw(st.none() | st.floats(0, 2)),
        top_p=draw(st.none() | st.floats(0, 1)),
        top_k=draw(st.none() | st.integers(1, 40)),
        stop=draw(st.lists(st.text("abcxyz", min_size=1, max_size=4), max_size=6)),
        seed=draw(st.none() | st.integers(0, 1000)),
    )
    response_format = draw(
        st.sampled_from(
            [
                None,
                canonical.ResponseFormat("json_object"),
                canonical.ResponseFormat(
                    "json_schema", {"type": "object", "properties": {"a": {"type": "string"}}}, "out", True
                ),
            ]
        )
    )
    reasoning = draw(
        st.sampled_from(
            [
                None,
                canonical.Reasoning(effort="low"),
                canonical.Reasoning(budget_tokens=1500),
                canonical.Reasoning(enabled=False),
            ]
        )
    )
    return canonical.Request(
        model="m",
        messages=messages,
        tools=tools,
        tool_choice=choice,
        sampling=sampling,
        max_output_tokens=draw(st.none() | st.integers(1, 300)),
        response_format=response_format,
        reasoning=reasoning,
        user=draw(st.sampled_from(["", "end-user"])),
    )


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServerThread]:
    with MockServerThread(config=MockConfig(tokens=6, api_key=KEY)) as server:
        yield server


def _texts(request: canonical.Request) -> list[str]:
    return [p.text for m in request.messages for p in m.content if isinstance(p, canonical.TextPart)]


def _sent(kind: str, body: dict[str, Any]) -> tuple[int, int, list[str]]:
    """(tool calls, tool results, texts in order) in an upstream body."""
    calls = results = 0
    found: list[str] = []
    if kind == "openai":
        for message in body["messages"]:
            calls += len(message.get("tool_calls") or [])
            results += message["role"] == "tool"
            content = message.get("content")
            if isinstance(content, str) and message["role"] != "tool":
                found.append(content)
            elif isinstance(content, list):
                found += [p["text"] for p in content if p["type"] == "text"]
    elif kind == "anthropic":
        found += [b["text"] for b in body.get("system", [])]
        for message in body["messages"]:
            for block in message["content"]:
                calls += block["type"] == "tool_use"
                results += block["type"] == "tool_result"
                if block["type"] == "text":
                    found.append(block["text"])
    elif kind == "gemini":
        found += [p["text"] for p in body.get("systemInstruction", {}).get("parts", [])]
        for content in body["contents"]:
            for part in content["parts"]:
                calls += "functionCall" in part
                results += "functionResponse" in part
                if "text" in part:
                    found.append(part["text"])
    else:
        if body.get("instructions"):
            found += body["instructions"].split("\n\n")
        for item in body["input"]:
            calls += item.get("type") == "function_call"
            results += item.get("type") == "function_call_output"
            content = item.get("content")
            if isinstance(content, str):
                found.append(content)
            elif isinstance(content, list):
                found += [p["text"] for p in content if p["type"] in ("input_text", "output_text")]
    return calls, results, found


def _expected_calls(request: canonical.Request, asked: int) -> int:
    choice = request.tool_choice
    if not request.tools or (choice is not None and choice.mode == "none"):
        return 0
    if asked:
        return asked
    return 1 if choice is not None and choice.mode in ("required", "tool") else 0


@pytest.mark.parametrize("kind", list(ADAPTERS))
@SETTINGS
@given(request=requests(), asked=st.integers(0, 3))
def test_any_request_is_accepted_upstream_and_answered_whole(
    mock: MockServerThread, kind: str, request: canonical.Request, asked: int
) -> None:
    adapter, path = ADAPTERS[kind]
    dep = deployment(kind, mock.url + path, credential=KEY)
    headers = {"X-Mock-Tool-Calls": str(asked)} if asked and request.tools else {}
    answer = call(adapter, dep, request, **headers)
    assert answer.status == 200, answer.body

    body = last_upstream_body(mock.url)["json"]
    calls, results, found = _sent(kind, body)
    assert calls == sum(len(m.tool_calls) for m in request.messages)
    assert results == sum(
        isinstance(p, canonical.ToolResultPart) for m in request.messages for p in m.content
    )
    assert [t for t in found if t] == [t for t in _texts(request) if t]

    response = answer.response
    assert response is not None
    made = _expected_calls(request, asked if request.tools else 0)
    assert len(response.tool_calls) == made and len({c.id for c in response.tool_calls}) == made
    assert (response.finish_reason == canonical.FinishReason.TOOL_CALLS) == bool(made)
    raw = orjson.loads(answer.body)
    usage = response.usage
    if kind == "anthropic":
        reported = raw["usage"]
        assert (
            usage.prompt_tokens
            == reported["input_tokens"]
            + reported["cache_read_input_tokens"]
            + reported["cache_creation_input_tokens"]
        )
        assert usage.completion_tokens == reported["output_tokens"]
    elif kind == "gemini":
        reported = raw["usageMetadata"]
        assert usage.prompt_tokens == reported["promptTokenCount"]
        assert usage.completion_tokens == reported["candidatesTokenCount"] + reported.get(
            "thoughtsTokenCount", 0
        )
    elif kind == "openai":
        assert (usage.prompt_tokens, usage.completion_tokens) == (
            raw["usage"]["prompt_tokens"],
            raw["usage"]["completion_tokens"],
        )
    else:
        assert (usage.prompt_tokens, usage.completion_tokens) == (
            raw["usage"]["input_tokens"],
            raw["usage"]["output_tokens"],
        )
    assert usage.prompt_tokens > 0 and usage.reported


@pytest.mark.parametrize("kind", list(ADAPTERS))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), asked=st.integers(0, 3), slice_size=st.integers(1, 64))
def test_a_stream_adds_up_to_the_same_answer(
    mock: MockServerThread, kind: str, request: canonical.Request, asked: int, slice_size: int
) -> None:
    adapter, path = ADAPTERS[kind]
    dep = deployment(kind, mock.url + path, credential=KEY)
    headers = (
        {"X-Mock-Tool-Calls": str(asked), "X-Mock-Reasoning-Tokens": "2"} if asked and request.tools else {}
    )
    whole = call(adapter, dep, request, **headers).response
    streamed = stream(
        adapter,
        dep,
        canonical.Request(**{**request.__dict__, "stream": True}),
        slice_size=slice_size,
        **headers,
    )
    assert whole is not None and streamed.error is None and streamed.done
    got = streamed.response
    assert got.text == whole.text and got.finish_reason == whole.finish_reason
    assert [(c.name, orjson.loads(c.arguments)) for c in got.tool_calls] == [
        (c.name, orjson.loads(c.arguments)) for c in whole.tool_calls
    ]
    assert (got.usage.prompt_tokens, got.usage.completion_tokens, got.usage.reasoning_tokens) == (
        whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.reasoning_tokens,
    )  # fmt: skip

"""The OpenAI chat adapter (OpenAI and OpenAI-compatible upstreams: DeepSeek, OpenRouter-style
relays, vLLM, Ollama — a base URL and a key) on the translated path, against the mock over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from gateway import canonical
from gateway.canonical import FinishReason, Role
from gateway.mockserver import MockConfig, MockServerThread
from gateway.providers import adapter_for
from gateway.providers.openai import OpenAIAdapter, OpenAICompatibleAdapter
from tests.support.upstream import call, deployment, last_upstream_body, stream, system, user

pytestmark = pytest.mark.timeout(30)

WEATHER = canonical.Tool(
    "get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServerThread]:
    with MockServerThread(config=MockConfig(tokens=8)) as server:
        yield server


def test_it_round_trips_parallel_tool_calls_from_an_anthropic_shaped_history(mock: MockServerThread) -> None:
    dep = deployment("openai", mock.url + "/v1", credential="sk-openai-upstream-0123456789")
    adapter = OpenAIAdapter()
    first = call(
        adapter,
        dep,
        canonical.Request(
            model="m",
            messages=[system("s"), user("go [mock tool_calls=2 reasoning_tokens=3 cache_write_tokens=2]")],
            tools=[WEATHER],
        ),
    ).response
    assert first is not None and first.finish_reason == FinishReason.TOOL_CALLS
    calls = first.tool_calls
    assert len(calls) == 2 and calls[0].id != calls[1].id
    assert (first.usage.reasoning_tokens, first.usage.cache_write_tokens) == (3, 2)
    # Results as an Anthropic client sends them (in one user message) become one tool message each.
    history = [
        user("go"),
        canonical.Message(
            Role.ASSISTANT, [canonical.ThinkingPart("hmm", "sig", provider="anthropic"), *calls]
        ),
        canonical.Message(
            Role.USER,
            [canonical.ToolResultPart(c.id, [canonical.TextPart("r")]) for c in calls]
            + [canonical.TextPart("and?")],
        ),
    ]
    assert call(adapter, dep, canonical.Request(model="m", messages=history, tools=[WEATHER])).status == 200
    sent = last_upstream_body(mock.url)["json"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == [sent[2]["tool_call_id"], sent[3]["tool_call_id"]]
    assert "thinking" not in orjson.dumps(sent).decode()  # Anthropic's signed thinking goes nowhere else

    streamed = stream(
        adapter,
        dep,
        canonical.Request(model="m", messages=[user("go [mock tool_calls=2]")], tools=[WEATHER], stream=True),
    )
    assert streamed.done and [c.name for c in streamed.response.tool_calls] == ["get_weather", "get_weather"]
    assert streamed.response.finish_reason == FinishReason.TOOL_CALLS
    assert last_upstream_body(mock.url)["json"]["stream_options"] == {"include_usage": True}


def test_an_openai_compatible_upstream_is_a_base_url_and_a_key(mock: MockServerThread) -> None:
    assert isinstance(adapter_for("openai-compatible"), OpenAICompatibleAdapter)
    # Ollama's placeholder key: sent as it is (it guards nothing, so it is never redacted).
    dep = deployment("openai-compatible", mock.url + "/v1", credential="ollama", model="llama3.2")
    answer = call(
        OpenAICompatibleAdapter(),
        dep,
        canonical.Request(model="local", messages=[user("hi")], max_output_tokens=3),
    )
    assert answer.response is not None and answer.response.finish_reason == FinishReason.LENGTH
    logged = last_upstream_body(mock.url)
    assert logged["headers"]["authorization"] == "Bearer ollama" and logged["json"]["model"] == "llama3.2"
    assert logged["json"]["max_completion_tokens"] == 3

"""OpenAI and Anthropic clients through the live gateway to upstreams of another wire format (the
mock speaking Anthropic Messages and Gemini), with tool calls round-tripping, usage and cost exact
on the usage row; and the demo serving claude-sonnet-4.5 and gemini-2.5-flash in those formats."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.mockserver import MockServerThread
from tests.conftest import UPSTREAM_SECRET

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]
# Demo list prices per million tokens (gateway.services.DEMO_MODELS / DEMO_CACHE_WRITE_PRICES).
CLAUDE = {"in": Decimal(3), "cached": Decimal("0.30"), "write": Decimal("3.75"), "out": Decimal(15)}
GEMINI = {"in": Decimal("0.30"), "cached": Decimal("0.03"), "write": Decimal("0.30"), "out": Decimal("2.50")}


def tokens(text: str) -> int:
    return (len(text) + 3) // 4


def cost(
    price: dict[str, Decimal], prompt: int, completion: int, cached: int = 0, written: int = 0
) -> Decimal:
    uncached = prompt - cached - written
    total = (
        uncached * price["in"]
        + cached * price["cached"]
        + written * price["write"]
        + completion * price["out"]
    )
    return (total / 1_000_000).quantize(Decimal("0.000000001"))


@pytest.fixture
def formats(world: Any, mock_upstream: MockServerThread) -> None:
    """claude-sonnet-4.5 served by the mock in Anthropic's format, gemini-2.5-flash in Gemini's."""
    from billing.services import model_price_set
    from gateway.models import Deployment, ModelRoute
    from gateway.services import PRICES_FROM, deployment_upsert, provider_upsert

    for model, kind, path in (
        ("claude-sonnet-4.5", "anthropic", "/v1"),
        ("gemini-2.5-flash", "gemini", "/v1beta"),
    ):
        provider = provider_upsert(
            name=f"mock-{kind}", kind=kind, base_url=mock_upstream.url + path, credential=UPSTREAM_SECRET
        )
        route = ModelRoute.objects.get(name=model)
        Deployment.objects.filter(route=route).update(enabled=False)
        deployment_upsert(route=route, provider=provider, upstream_model=model, priority=0)
    model_price_set(
        model="claude-sonnet-4.5", input_per_mtok=CLAUDE["in"], cached_input_per_mtok=CLAUDE["cached"],
        output_per_mtok=CLAUDE["out"], cache_write_per_mtok=CLAUDE["write"], effective_from=PRICES_FROM,
    )  # fmt: skip


def chat_client(gateway_server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_server + "/v1", api_key=key, max_retries=0, timeout=10)


def last_upstream(mock: MockServerThread) -> dict[str, Any]:
    return httpx.get(mock.url + "/_mock/requests").json()["requests"][-1]


@pytest.mark.parametrize(("model", "path", "price"), [
    ("claude-sonnet-4.5", "/v1/messages", CLAUDE),
    ("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent", GEMINI),
])  # fmt: skip
def test_the_openai_sdk_round_trips_parallel_tool_calls(
    gateway_server, world, formats, mock_upstream, usage_rows, model, path, price
):
    client = chat_client(gateway_server, world.key)
    ask = [{"role": "user", "content": "weather and time? [mock tool_calls=2 prompt_tokens=50]"}]
    first = client.chat.completions.create(model=model, messages=ask, tools=TOOLS)
    assert last_upstream(mock_upstream)["path"] == path
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"] and calls[0].id != calls[1].id
    assert json.loads(calls[0].function.arguments) == {"city": "lorem"}
    completion = sum(tokens(c.function.name) + tokens(c.function.arguments) for c in calls)
    assert first.usage is not None and (first.usage.prompt_tokens, first.usage.completion_tokens) == (
        50,
        completion,
    )

    history = [
        *ask,
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "noon"},
        {"role": "user", "content": "thanks [mock prompt_tokens=80 tokens=6]"},
    ]
    second = client.chat.completions.create(model=model, messages=history, tools=TOOLS)
    assert (
        second.choices[0].finish_reason == "stop"
        and len((second.choices[0].message.content or "").split()) == 6
    )
    upstream = last_upstream(mock_upstream)["json"]
    if model.startswith("claude"):  # both results answer the calls in the next user turn
        assert [b["type"] for b in upstream["messages"][2]["content"]] == [
            "tool_result",
            "tool_result",
            "text",
        ]
    else:
        assert [list(p) for p in upstream["contents"][2]["parts"]] == [
            ["functionResponse"],
            ["functionResponse"],
            ["text"],
        ]

    rows = usage_rows(2)
    assert [(r.prompt_tokens, r.completion_tokens) for r in rows] == [(50, completion), (80, 6)]
    assert [r.cost for r in rows] == [cost(price, 50, completion), cost(price, 80, 6)]
    assert {r.upstream_format for r in rows} == {model.split("-")[0].replace("claude", "anthropic")}
    assert {r.ingress for r in rows} == {"openai_chat"}


@pytest.mark.parametrize(("model", "price"), [("claude-sonnet-4.5", CLAUDE), ("gemini-2.5-flash", GEMINI)])
def test_the_openai_sdk_streams_with_usage_and_thinking_billed_as_output(
    gateway_server, world, formats, usage_rows, model, price
):
    client = chat_client(gateway_server, world.key)
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "tell me [mock prompt_tokens=40 tokens=5 reasoning_tokens=3]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "lorem ipsum dolor sit amet "
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (40, 8)
    [row] = usage_rows(1)
    assert row.streamed and (row.prompt_tokens, row.completion_tokens) == (40, 8)
    assert row.cost == cost(price, 40, 8)


def test_cache_reads_and_writes_from_anthropic_cost_their_own_rates(
    gateway_server, world, formats, usage_rows
):
    reply = chat_client(gateway_server, world.key).chat.completions.create(
        model="claude-sonnet-4.5",
        messages=[
            {
                "role": "user",
                "content": "x [mock prompt_tokens=100 cached_tokens=30 cache_write_tokens=20 tokens=4]",
            }
        ],
    )
    assert reply.usage is not None and reply.usage.prompt_tokens == 100
    assert (
        reply.usage.prompt_tokens_details is not None
        and reply.usage.prompt_tokens_details.cached_tokens == 30
    )
    [row] = usage_rows(1)
    assert (row.prompt_tokens, row.cached_tokens, row.cache_write_tokens, row.completion_tokens) == (
        100,
        30,
        20,
        4,
    )
    assert row.cost == cost(CLAUDE, 100, 4, cached=30, written=20)


def test_the_anthropic_sdk_reaches_a_gemini_upstream_with_tool_use(
    gateway_server, world, formats, usage_rows
):
    client = anthropic.Anthropic(base_url=gateway_server, api_key=world.key, max_retries=0, timeout=10)
    tools = [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    ask = [{"role": "user", "content": "weather? [mock tool_calls=1 prompt_tokens=30]"}]
    first = client.messages.create(model="gemini-2.5-flash", max_tokens=200, tools=tools, messages=ask)
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "lorem"}
    follow = [
        *ask,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    with client.messages.stream(
        model="gemini-2.5-flash", max_tokens=200, tools=tools, messages=follow
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.content[0].type == "text"
    rows = usage_rows(2)
    assert [r.upstream_format for r in rows] == ["gemini", "gemini"] and rows[0].prompt_tokens == 30
    assert rows[0].cost == cost(GEMINI, 30, rows[0].completion_tokens) and rows[1].cost > 0


def test_the_demo_serves_claude_and_gemini_in_their_own_formats(gateway_server, usage_rows):
    from gateway.services import demo_prepare

    with MockServerThread() as mock:
        demo = demo_prepare(mock_url=mock.url)
        client = chat_client(gateway_server, demo.raw_key)
        for model, path in (
            ("claude-sonnet-4.5", "/v1/messages"),
            ("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent"),
            ("gpt-4.1", "/v1/chat/completions"),
        ):
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hello!"}]
            )
            assert reply.choices[0].message.content
            assert last_upstream(mock)["path"] == path
        rows = usage_rows(3)
        assert [r.upstream_format for r in rows] == ["anthropic", "gemini", "mock"]
        assert all(r.cost > 0 for r in rows)
        # Running the demo again changes nothing of that.
        demo_prepare(mock_url=mock.url)
        from gateway.models import Deployment

        served = Deployment.objects.filter(
            enabled=True, route__name__in=["claude-sonnet-4.5", "gemini-2.5-flash"]
        )
        assert sorted(d.provider.kind for d in served) == ["anthropic", "gemini"]

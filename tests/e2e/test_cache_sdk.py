"""The response cache through the live gateway, with the official SDKs, real Redis and the mock
provider over real HTTP (gateway/cache.py). The mock's request log says how many calls reached the
upstream: a hit reaches none."""

from __future__ import annotations

import time
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from accounts.services import api_key_issue
from billing.models import UsageHourlyKey, UsageHourlyTenant
from config.redis import sync_client
from tests.conftest import UPSTREAM_SECRET
from tests.support.secrets import registry

pytestmark = pytest.mark.django_db(transaction=True)

# gpt-4.1 in the demo catalog: $2.00 in, $8.00 out per million tokens.
GPT_IN, GPT_OUT = Decimal(2), Decimal(8)


def cost(prompt: int, completion: int) -> Decimal:
    return (prompt * GPT_IN + completion * GPT_OUT) / 1_000_000


@pytest.fixture
def upstream_calls(mock_upstream):
    """How many model calls the mock has answered since the test began."""
    httpx.delete(mock_upstream.url + "/_mock/requests")

    def count() -> int:
        logged = httpx.get(mock_upstream.url + "/_mock/requests").json()["requests"]
        return sum(1 for entry in logged if entry["method"] == "POST")

    return count


def cached_key(tenant, **options) -> str:
    return registry.api_key(api_key_issue(tenant=tenant, name="cached", cache=True, **options).raw)


def gpt(gateway_server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_server + "/v1", api_key=key, max_retries=0, timeout=10)


def claude(gateway_server: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway_server, api_key=key, max_retries=0, timeout=10)


def chat_events(stream) -> tuple[list[tuple[str, ...]], str, list[tuple[str, str, str]]]:
    """A chat stream's event sequence (what each chunk carried), its text, and its tool calls."""
    sequence, text, tools = [], "", {}
    for chunk in stream:
        if not chunk.choices:
            sequence.append(("usage",))
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        kinds = tuple(
            name
            for name, present in (
                ("role", delta.role),
                ("content", delta.content),
                ("tool_calls", delta.tool_calls),
                ("finish", choice.finish_reason),
            )
            if present
        )
        sequence.append(kinds)
        text += delta.content or ""
        for call in delta.tool_calls or []:
            entry = tools.setdefault(call.index, ["", "", ""])
            entry[0] += call.id or ""
            entry[1] += (call.function.name or "") if call.function else ""
            entry[2] += (call.function.arguments or "") if call.function else ""
    return sequence, text, [tuple(value) for _, value in sorted(tools.items())]


def collapsed(sequence: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [kinds for index, kinds in enumerate(sequence) if index == 0 or sequence[index - 1] != kinds]


# -- the second identical call, in each dialect -----------------------------------------------------


def test_it_answers_the_second_identical_chat_call_from_the_cache(
    gateway_server, world, usage_rows, upstream_calls
):
    client = gpt(gateway_server, cached_key(world.acme))
    ask = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Hi [mock prompt_tokens=40 tokens=12]"}],
        "temperature": 0.5,
    }
    first = client.chat.completions.with_raw_response.create(**ask)
    second = client.chat.completions.with_raw_response.create(**ask)
    assert first.headers["x-tollhouse-cache"] == "miss" and second.headers["x-tollhouse-cache"] == "hit"
    assert upstream_calls() == 1
    one, two = first.parse(), second.parse()
    assert two.choices[0].message.content == one.choices[0].message.content
    assert len(two.choices[0].message.content.split()) == 12
    assert two.choices[0].finish_reason == "stop"
    assert (two.usage.prompt_tokens, two.usage.completion_tokens) == (40, 12)

    miss, hit = usage_rows(2)
    assert (miss.cache_hit, miss.cost, miss.saved_cost) == (False, cost(40, 12), 0)
    assert hit.cache_hit and hit.cost == 0 and hit.saved_cost == cost(40, 12)
    assert hit.status == 200 and hit.attempts == 0 and hit.deployment_id is None and hit.provider == ""
    assert (hit.prompt_tokens, hit.completion_tokens) == (40, 12)
    tenant_hour = UsageHourlyTenant.objects.get(tenant_id=world.acme.id)
    assert (tenant_hour.requests, tenant_hour.cache_hits) == (2, 1)
    assert tenant_hour.cost == cost(40, 12) and tenant_hour.saved_cost == cost(40, 12)
    assert UsageHourlyKey.objects.get(tenant_id=world.acme.id).saved_cost == cost(40, 12)


def test_it_replays_a_chat_stream_with_the_same_content_and_event_sequence(
    gateway_server, world, usage_rows, upstream_calls
):
    client = gpt(gateway_server, cached_key(world.acme))
    ask = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Tell me [mock prompt_tokens=30 tokens=9]"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    first = chat_events(client.chat.completions.create(**ask))
    second = chat_events(client.chat.completions.create(**ask))
    assert upstream_calls() == 1
    assert second == first
    assert len(first[1].split()) == 9 and first[0][-1] == ("usage",)
    miss, hit = usage_rows(2)
    assert hit.cache_hit and hit.streamed and hit.cost == 0 and hit.saved_cost == miss.cost == cost(30, 9)


def test_it_replays_tool_calls(gateway_server, world, usage_rows, upstream_calls):
    client = gpt(gateway_server, cached_key(world.acme))
    ask = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Weather? [mock tool_calls=2]"}],
        "tools": [
            {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},
        ],
        "stream": True,
    }
    first = chat_events(client.chat.completions.create(**ask))
    second = chat_events(client.chat.completions.create(**ask))
    assert upstream_calls() == 1
    assert len(first[2]) == 2 and first[2][0][1] == "weather"
    # The same calls, ids, names and arguments, in the same order. The mock (unlike OpenAI) sends
    # a call's name and the first half of its arguments in one chunk, which the chat renderer writes
    # as two (the opening, then the arguments), so the runs of tool-call chunks differ in length.
    assert second[1:] == first[1:]
    assert collapsed(second[0]) == collapsed(first[0])
    # The same question as JSON: the stream's entry, added up.
    third = client.chat.completions.create(**{**ask, "stream": False})
    assert upstream_calls() == 1
    assert [
        (c.id, c.function.name, c.function.arguments) for c in third.choices[0].message.tool_calls
    ] == first[2]
    assert third.choices[0].finish_reason == "tool_calls"


def test_it_answers_the_responses_api_from_the_cache_json_and_stream(
    gateway_server, world, usage_rows, upstream_calls
):
    client = gpt(gateway_server, cached_key(world.acme))
    ask = {"model": "gpt-4.1", "input": "Hi [mock prompt_tokens=20 tokens=7]", "max_output_tokens": 64}
    one = client.responses.create(**ask)
    two = client.responses.create(**ask)
    assert upstream_calls() == 1
    assert two.output_text == one.output_text and len(two.output_text.split()) == 7
    assert (two.usage.input_tokens, two.usage.output_tokens) == (20, 7)

    def streamed() -> tuple[list[str], str]:
        kinds, text = [], ""
        for event in client.responses.create(**ask, stream=True):
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
        return kinds, text

    first, second = streamed(), streamed()
    assert upstream_calls() == 1  # the JSON answer's entry serves the streams too
    assert second == first and first[1] == one.output_text
    assert first[0][0] == "response.created" and first[0][-1] == "response.completed"
    rows = usage_rows(4)
    assert [row.cache_hit for row in rows] == [False, True, True, True]
    assert all(row.cost == 0 and row.saved_cost == cost(20, 7) for row in rows[1:])


def test_it_answers_anthropic_messages_from_the_cache_json_and_stream(
    gateway_server, world, usage_rows, upstream_calls
):
    client = claude(gateway_server, cached_key(world.acme))
    ask = {
        "model": "gpt-4.1",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Tell me [mock prompt_tokens=30 tokens=9]"}],
    }

    def streamed() -> tuple[list[str], str, tuple[int, int]]:
        with client.messages.stream(**ask) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_message()
        return kinds, final.content[0].text, (final.usage.input_tokens, final.usage.output_tokens)

    first, second = streamed(), streamed()
    assert upstream_calls() == 1
    assert second == first and first[0][0] == "message_start" and first[0][-1] == "message_stop"
    assert first[2] == (30, 9)
    message = client.messages.create(**ask)
    assert upstream_calls() == 1
    assert message.content[0].text == first[1] and message.stop_reason == "end_turn"
    rows = usage_rows(3)
    assert [row.cache_hit for row in rows] == [False, True, True]
    assert [row.ingress for row in rows] == ["anthropic_messages"] * 3
    assert rows[1].saved_cost == rows[0].cost == cost(30, 9)


def test_a_question_asked_in_chat_hits_the_same_entry_in_anthropic_messages(
    gateway_server, world, usage_rows, upstream_calls
):
    key = cached_key(world.acme)
    question = "What is a toll house? [mock prompt_tokens=25 tokens=6]"
    answer = gpt(gateway_server, key).chat.completions.create(
        model="gpt-4.1",
        max_tokens=50,
        temperature=0.2,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
    )
    message = claude(gateway_server, key).messages.create(
        model="gpt-4.1",
        max_tokens=50,
        extra_body={"temperature": 0.2},
        system="Be brief.",
        messages=[{"role": "user", "content": question}],
    )
    assert upstream_calls() == 1
    assert message.content[0].text == answer.choices[0].message.content
    chat, messages = usage_rows(2)
    assert (chat.ingress, chat.cache_hit) == ("openai_chat", False)
    assert (messages.ingress, messages.cache_hit, messages.cost) == ("anthropic_messages", True, 0)


# -- what must not hit ------------------------------------------------------------------------------


def test_two_tenants_never_share_an_entry(gateway_server, world, usage_rows, upstream_calls):
    acme, globex = cached_key(world.acme), cached_key(world.globex)
    ask = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Same question [mock tokens=5]"}]}
    gpt(gateway_server, acme).chat.completions.create(**ask)
    gpt(gateway_server, globex).chat.completions.create(**ask)
    assert upstream_calls() == 2
    gpt(gateway_server, acme).chat.completions.create(**ask)
    gpt(gateway_server, globex).chat.completions.create(**ask)
    assert upstream_calls() == 2
    rows = usage_rows(4)
    assert [(row.tenant_id, row.cache_hit) for row in rows] == [
        (world.acme.id, False),
        (world.globex.id, False),
        (world.acme.id, True),
        (world.globex.id, True),
    ]


def test_a_different_temperature_or_question_misses(gateway_server, world, usage_rows, upstream_calls):
    client = gpt(gateway_server, cached_key(world.acme))
    messages = [{"role": "user", "content": "Hi [mock tokens=5]"}]
    client.chat.completions.create(model="gpt-4.1", messages=messages, temperature=0.5)
    client.chat.completions.create(model="gpt-4.1", messages=messages, temperature=0.7)
    client.chat.completions.create(model="gpt-4.1", messages=messages, temperature=0.5, max_tokens=40)
    client.chat.completions.create(model="gpt-4.1", messages=messages, temperature=0.5, seed=7)
    client.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "Hi! [mock tokens=5]"}]
    )
    assert upstream_calls() == 5
    client.chat.completions.create(model="gpt-4.1", messages=messages, temperature=0.5)
    assert upstream_calls() == 5


def test_it_uses_the_cache_only_when_the_key_or_the_call_opts_in(
    gateway_server, world, usage_rows, upstream_calls
):
    ask = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Opt in? [mock tokens=5]"}]}
    plain = gpt(gateway_server, world.key)  # a key without the cache
    plain.chat.completions.create(**ask)
    plain.chat.completions.create(**ask)
    assert upstream_calls() == 2
    on = {"x-tollhouse-cache": "on"}
    plain.chat.completions.create(**ask, extra_headers=on)
    raw = plain.chat.completions.with_raw_response.create(**ask, extra_headers=on)
    assert upstream_calls() == 3 and raw.headers["x-tollhouse-cache"] == "hit"
    cached = gpt(gateway_server, cached_key(world.acme))
    raw = cached.chat.completions.with_raw_response.create(**ask, extra_headers={"x-tollhouse-cache": "off"})
    assert upstream_calls() == 4 and "x-tollhouse-cache" not in raw.headers


def test_a_request_the_canonical_answer_cannot_carry_bypasses_the_cache(
    gateway_server, world, upstream_calls
):
    client = gpt(gateway_server, cached_key(world.acme))
    ask = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Two [mock tokens=3]"}], "n": 2}
    first = client.chat.completions.with_raw_response.create(**ask)
    client.chat.completions.create(**ask)
    assert first.headers["x-tollhouse-cache"] == "bypass" and upstream_calls() == 2


def test_an_upstream_error_is_never_stored(gateway_server, world, usage_rows, upstream_calls, settings):
    settings.TOLLHOUSE_UPSTREAM_RETRIES = 0
    client = gpt(gateway_server, cached_key(world.acme))
    ask = {
        "model": "gpt-4.1",
        "messages": [
            {"role": "user", "content": "[mock status=500 fault_times=1 fault_key=c-err ttft_ms=0]"}
        ],
    }
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(**ask)
    client.chat.completions.create(**ask)  # the fault is over: answered, and stored
    client.chat.completions.create(**ask)
    assert upstream_calls() == 2
    assert [row.cache_hit for row in usage_rows(3)] == [False, False, True]


def test_a_truncated_stream_is_never_stored(gateway_server, world, usage_rows, upstream_calls):
    client = claude(gateway_server, cached_key(world.acme))
    ask = {
        "model": "gpt-4.1",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "[mock tokens=8 drop_after=3 fault_times=1 fault_key=c-cut]"}
        ],
    }
    with pytest.raises(anthropic.APIStatusError), client.messages.stream(**ask) as stream:
        for _event in stream:
            pass
    with client.messages.stream(**ask) as stream:
        whole = stream.get_final_message().content[0].text
    with client.messages.stream(**ask) as stream:
        again = stream.get_final_message().content[0].text
    assert upstream_calls() == 2 and again == whole and len(whole.split()) == 8
    rows = usage_rows(3)
    assert rows[0].error_type == "upstream_stream_broken"
    assert [row.cache_hit for row in rows] == [False, False, True]


def test_a_pass_through_stream_cut_short_is_never_stored(gateway_server, world, usage_rows, upstream_calls):
    client = gpt(gateway_server, cached_key(world.acme))
    ask = {
        "model": "gpt-4.1",
        "messages": [
            {"role": "user", "content": "[mock tokens=8 drop_after=3 fault_times=1 fault_key=c-cut2]"}
        ],
        "stream": True,
    }
    with pytest.raises(openai.APIError):
        chat_events(client.chat.completions.create(**ask))
    chat_events(client.chat.completions.create(**ask))
    chat_events(client.chat.completions.create(**ask))
    assert upstream_calls() == 2


def test_a_client_that_leaves_mid_stream_leaves_nothing_stored(
    gateway_server, world, usage_rows, upstream_calls
):
    key = cached_key(world.acme)
    body = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Slowly [mock tokens=30 chunk_ms=40]"}],
        "stream": True,
    }
    headers = {"authorization": f"Bearer {key}"}
    with httpx.stream(
        "POST", gateway_server + "/v1/chat/completions", json=body, headers=headers
    ) as response:
        assert response.status_code == 200
        next(response.iter_bytes())
    [left] = usage_rows(1)
    assert left.status == 499
    time.sleep(0.2)
    gpt(gateway_server, key).chat.completions.create(**{**body, "stream": False})
    assert upstream_calls() == 2


def test_an_entry_above_the_size_bound_is_not_stored(gateway_server, world, upstream_calls, settings):
    settings.TOLLHOUSE_CACHE_MAX_BYTES = 1000
    client = gpt(gateway_server, cached_key(world.acme))
    short = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "[mock tokens=1]"}]}
    long = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "[mock tokens=100]"}]}
    for ask in (short, short, long, long):
        client.chat.completions.create(**ask)
    assert upstream_calls() == 3  # the short answer was stored, the long one never


def test_a_hit_counts_as_a_request_but_not_against_tokens_per_minute(
    gateway_server, world, usage_rows, upstream_calls
):
    client = gpt(gateway_server, cached_key(world.acme, tpm_limit=50))
    ask = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Big [mock prompt_tokens=60 tokens=5]"}],
    }
    client.chat.completions.create(**ask)  # 65 tokens: the minute's 50 are used up
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "Other"}])
    again = client.chat.completions.with_raw_response.create(**ask)
    assert again.headers["x-tollhouse-cache"] == "hit" and upstream_calls() == 1
    assert [(row.status, row.cache_hit) for row in usage_rows(3)] == [(200, False), (429, False), (200, True)]


def test_no_credential_or_header_is_ever_in_an_entry(gateway_server, world, upstream_calls):
    key = cached_key(world.acme)
    client = gpt(gateway_server, key)
    # The upstream quotes the credential it was sent: the gateway cuts it before anything keeps it.
    for content in ("[mock echo_credential tokens=3]", "Plain [mock tokens=3]"):
        for stream in (False, True):
            answer = client.chat.completions.create(
                model="gpt-4.1",
                messages=[{"role": "user", "content": content}],
                stream=stream,
                extra_headers={"x-request-id": "req-secret-marker-123"},
            )
            if stream:
                chat_events(answer)
    claude(gateway_server, key).messages.create(
        model="gpt-4.1",
        max_tokens=20,
        messages=[{"role": "user", "content": "[mock echo_credential tokens=3]"}],
    )
    redis = sync_client()
    keys = list(redis.scan_iter(match="*cache*"))
    assert len(keys) >= 3
    secrets = [UPSTREAM_SECRET, key, *registry.values]
    for name in keys:
        value = redis.get(name).decode()
        assert not any(secret in value or secret in name.decode() for secret in secrets), name
        assert "req-secret-marker" not in value and "authorization" not in value.lower()

"""gateway/cache.py: the entry key, what an entry holds, the stores, and the call's headers (unit
tests; the cache through the live gateway is tests/e2e/test_cache_sdk.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.services import api_key_issue
from gateway import canonical, errors
from gateway.cache import (
    Entry,
    LocalStore,
    Wish,
    cacheable,
    complete,
    entry_key,
    events_of,
    policy,
    read_headers,
)
from gateway.dialects import codec_named
from tests.support.secrets import registry

CHAT, MESSAGES, RESPONSES = (
    codec_named("openai_chat"),
    codec_named("anthropic_messages"),
    codec_named("openai_responses"),
)


def parsed(codec, body):
    return codec.parse(body=body, headers={}, operation="chat")


def chat(**extra):
    return parsed(
        CHAT,
        {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50, **extra},
    )


def key_of(inbound, *, tenant=1, route="gpt-4.1"):
    return entry_key(tenant_id=tenant, route=route, request=inbound.canonical())


# -- the key ------------------------------------------------------------------------------------------


def test_it_keys_the_same_question_alike_in_every_dialect():
    question = {"role": "user", "content": "Hi"}
    messages = parsed(MESSAGES, {"model": "gpt-4.1", "max_tokens": 50, "messages": [question]})
    responses = parsed(RESPONSES, {"model": "gpt-4.1", "max_output_tokens": 50, "input": "Hi"})
    assert key_of(chat()) == key_of(messages) == key_of(responses)


def test_it_keys_by_tenant_route_and_every_sampling_parameter():
    base = key_of(chat(temperature=0.5))
    assert key_of(chat(temperature=0.5), tenant=2) != base
    assert key_of(chat(temperature=0.5), route="gpt-4.1-mini") != base
    for changed in (
        {"temperature": 0.7},
        {"temperature": 0.5, "top_p": 0.9},
        {"temperature": 0.5, "max_tokens": 51},
        {"temperature": 0.5, "stop": ["x"]},
        {"temperature": 0.5, "seed": 3},
        {"temperature": 0.5, "response_format": {"type": "json_object"}},
        {"temperature": 0.5, "tools": [{"type": "function", "function": {"name": "f"}}]},
    ):
        assert key_of(chat(**changed)) != base, changed


def test_it_leaves_out_what_does_not_shape_the_answer():
    base = key_of(chat(temperature=1))
    assert key_of(chat(temperature=1.0)) == base
    assert key_of(chat(temperature=1, stream=True)) == base
    assert key_of(chat(temperature=1, user="someone")) == base
    assert key_of(chat(temperature=1)).startswith("th:cache:1:")


def test_it_caches_only_what_a_canonical_answer_can_carry():
    assert cacheable(chat())
    assert not cacheable(chat(n=2))
    assert not cacheable(chat(logprobs=True))
    assert not cacheable(parsed(RESPONSES, {"model": "m", "input": "Hi", "previous_response_id": "resp_1"}))
    embeddings = codec_named("openai_embeddings").parse(
        body={"model": "m", "input": "Hi"}, headers={}, operation="embeddings"
    )
    assert not cacheable(embeddings)


def test_a_call_opts_in_by_key_or_header_and_bypasses_what_has_no_canonical_form(settings):
    settings.TOLLHOUSE_CACHE_TTL_SECONDS, settings.TOLLHOUSE_CACHE_MAX_TTL_SECONDS = 100, 500
    route = SimpleNamespace(name="gpt-4.1")

    def decide(inbound, *, key_cache=False, key_ttl=None, on=None, ttl=None):
        call = SimpleNamespace(
            key=SimpleNamespace(tenant_id=3, cache=key_cache, cache_ttl=key_ttl), cache_status=""
        )
        return policy(call, Wish(on=on, ttl=ttl), inbound, route), call.cache_status

    assert decide(chat()) == (None, "")
    assert decide(chat(), key_cache=True, on=False) == (None, "")
    found, status = decide(chat(), key_cache=True)
    assert (found.ttl, status) == (100, "") and found.key == key_of(chat(), tenant=3)
    assert decide(chat(), on=True, key_ttl=50)[0].ttl == 50
    assert decide(chat(), on=True, key_ttl=50, ttl=400)[0].ttl == 400
    assert decide(chat(n=2), on=True) == (None, "bypass")
    audio = [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]
    assert decide(chat(messages=[{"role": "user", "content": audio}]), on=True) == (None, "bypass")


# -- entries ------------------------------------------------------------------------------------------

EVENTS: list[canonical.StreamEvent] = [
    canonical.Start(id="msg_1", model="m-1", usage=canonical.Usage(prompt_tokens=3)),
    canonical.ThinkingDelta(text="hmm", signature="sig", provider="anthropic"),
    canonical.TextDelta("Hello"),
    canonical.TextDelta(" world"),
    canonical.ReasoningDone(canonical.ReasoningPart(id="rs_1", encrypted_content="enc", summary=["s"])),
    canonical.ToolCallStart(index=0, id="call_1", name="f"),
    canonical.ToolCallDelta(index=0, arguments='{"a":'),
    canonical.ToolCallDelta(index=0, arguments="1}"),
    canonical.UsageUpdate(canonical.Usage(prompt_tokens=3, completion_tokens=5, reported=True)),
    canonical.Finish(canonical.FinishReason.TOOL_CALLS),
]


def test_an_entry_reads_back_as_it_was_written():
    entry = Entry(events=EVENTS, served_model="m-1", priced_as="m")
    again = Entry.loads(entry.dumps())
    assert again == entry
    assert again.response().text == "Hello world"
    assert again.response().tool_calls[0].arguments == '{"a":1}'


def test_an_unreadable_entry_is_a_miss():
    assert Entry.loads(b"not json") is None
    assert Entry.loads(orjson.dumps({"v": 99, "events": []})) is None
    assert Entry.loads(orjson.dumps({"v": 1, "events": [["Nope", {}]]})) is None


def test_a_json_answer_is_stored_as_the_stream_it_adds_up_to():
    response = canonical.collect(EVENTS)
    assert canonical.collect(events_of(response)) == response


def test_only_a_complete_successful_answer_is_kept():
    assert complete(EVENTS)
    assert not complete(EVENTS[:-1])  # cut before its finish
    assert not complete([*EVENTS[:-1], canonical.StreamError(error=None), EVENTS[-1]])
    assert not complete([*EVENTS[:-1], canonical.Finish(canonical.FinishReason.CONTENT_FILTER)])
    assert not complete([*EVENTS[:-1], canonical.Finish(canonical.FinishReason.ERROR)])
    assert not complete([])


def test_the_local_store_expires_and_keeps_the_most_recently_used(settings):
    settings.TOLLHOUSE_CACHE_LOCAL_ENTRIES = 2
    store = LocalStore()

    async def run():
        await store.put("a", b"1", 60)
        await store.put("b", b"2", 60)
        assert await store.get("a") == b"1"  # a is now the most recently used
        await store.put("c", b"3", 60)
        assert [await store.get(k) for k in "abc"] == [b"1", None, b"3"]
        store.entries["a"] = (0.0, b"1")  # its time is up
        assert await store.get("a") is None and "a" not in store.entries

    asyncio.run(run())


# -- headers ------------------------------------------------------------------------------------------


def test_it_reads_the_headers(settings):
    settings.TOLLHOUSE_CACHE_MAX_TTL_SECONDS = 600
    assert read_headers({}) == Wish(on=None, ttl=None)
    assert read_headers({"x-tollhouse-cache": " ON "}) == Wish(on=True, ttl=None)
    assert read_headers({"x-tollhouse-cache": "off", "x-tollhouse-cache-ttl": "600"}) == Wish(
        on=False, ttl=600
    )
    for bad in (
        {"x-tollhouse-cache": "yes"},
        {"x-tollhouse-cache-ttl": "0"},
        {"x-tollhouse-cache-ttl": "601"},
    ):
        with pytest.raises(errors.BadRequest):
            read_headers(bad)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(on=st.text(max_size=12), ttl=st.text(max_size=14))
def test_a_header_value_is_read_or_refused_never_anything_else(on, ttl):
    try:
        wish = read_headers({"x-tollhouse-cache": on, "x-tollhouse-cache-ttl": ttl})
    except errors.BadRequest as exc:
        assert exc.param in ("x-tollhouse-cache", "x-tollhouse-cache-ttl")
    else:
        assert wish.on is (on.strip().lower() == "on")
        assert wish.ttl is not None and wish.ttl >= 1


# Header values an HTTP client can send: printable latin-1, no line breaks.
header_values = st.one_of(
    st.sampled_from(["on", "off", "On", " off ", "", "1", "-1", "0", "60", "1e3", "9" * 30, "³", "٣"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=20),
)


@pytest.mark.django_db(transaction=True)
def test_through_the_gateway_a_bad_header_is_the_dialects_400_never_a_500(gateway_server, world):
    key = registry.api_key(api_key_issue(tenant=world.acme, name="fuzz").raw)
    client = httpx.Client(base_url=gateway_server, timeout=10, headers={"authorization": f"Bearer {key}"})
    chat_body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi [mock tokens=2]"}]}
    messages_body = {**chat_body, "max_tokens": 20}

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(on=header_values, ttl=header_values, anthropic=st.booleans())
    def check(on, ttl, anthropic):
        # As a client sends them: latin-1 bytes, without spaces at the ends (h11 refuses those).
        headers = {
            "x-tollhouse-cache": on.strip().encode("latin-1", "replace"),
            "x-tollhouse-cache-ttl": ttl.strip().encode("latin-1", "replace"),
        }
        if anthropic:
            response = client.post("/v1/messages", json=messages_body, headers=headers)
        else:
            response = client.post("/v1/chat/completions", json=chat_body, headers=headers)
        assert response.status_code in (200, 400), response.text
        if response.status_code == 400:
            body = response.json()
            if anthropic:
                assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
            else:
                assert body["error"]["param"] in ("x-tollhouse-cache", "x-tollhouse-cache-ttl")

    try:
        check()
    finally:
        client.close()

"""Properties of every ingress codec (gateway/dialects/), with hypothesis:

- a valid request in the codec's dialect becomes a canonical request that the other side's schema
  accepts (the chat body an OpenAI-format upstream gets passes OpenAI chat's validation), and that
  comes back from that side without losing a message, a tool call (id, name, arguments) or a tool
  result;
- a canonical answer rendered in the dialect is accepted by the official SDK's own types (JSON, and
  a stream fed through the SDK's accumulator), with every token count and tool call intact;
- hostile input is the dialect's 400 (errors.BadRequest), never anything else.
"""

from __future__ import annotations

import copy
import string
from typing import Any

import openai.types.chat
import openai.types.responses
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as AnthropicMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from gateway import canonical, errors
from gateway.canonical import FinishReason, Role
from gateway.dialects import CODECS
from gateway.dialects.openai_chat import chat_to_canonical, validate_chat
from gateway.providers.openai import chat_body

PROPERTIES = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

anthropic_codec = CODECS["anthropic_messages"]
responses_codec = CODECS["openai_responses"]
chat_codec = CODECS["openai_chat"]

text = st.text(string.ascii_letters + string.digits + " .,!?é漢", min_size=1, max_size=40)
names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_-]{0,20}", fullmatch=True)
ids = st.from_regex(r"[a-zA-Z0-9_]{4,16}", fullmatch=True)
arguments = st.dictionaries(names, st.one_of(st.integers(-1000, 1000), text, st.booleans()), max_size=3)


# -- the shape of a conversation, in canonical terms -------------------------------------------------


@st.composite
def turns(draw: Any) -> list[tuple[str, Any]]:
    """A conversation: ("user", text), then ("assistant", (text, [calls])) answered by
    ("results", [(call id, output)]) when it called tools."""
    out: list[tuple[str, Any]] = [("user", draw(text))]
    for _ in range(draw(st.integers(0, 3))):
        calls = draw(st.lists(st.tuples(ids, names, arguments), max_size=3, unique_by=lambda c: c[0]))
        reply = draw(st.one_of(st.just(""), text)) if calls else draw(text)
        out.append(("assistant", (reply, calls)))
        if calls:
            out.append(("results", [(call_id, draw(text)) for call_id, _, _ in calls]))
        out.append(("user", draw(text)))
    return out


def expected(conversation: list[tuple[str, Any]]) -> dict[str, Any]:
    texts = []
    calls = []
    results = []
    for kind, value in conversation:
        if kind == "user":
            texts.append(value)
        elif kind == "assistant":
            if value[0]:
                texts.append(value[0])
            calls.extend((call_id, name, args) for call_id, name, args in value[1])
        else:
            results.extend(value)
    return {"texts": texts, "calls": calls, "results": results}


def observed(request: canonical.Request) -> dict[str, Any]:
    texts, calls, results = [], [], []
    for message in request.messages:
        if message.role == Role.SYSTEM:
            continue
        for part in message.content:
            if isinstance(part, canonical.TextPart):
                texts.append(part.text)
            elif isinstance(part, canonical.ToolCallPart):
                calls.append((part.id, part.name, orjson.loads(part.arguments)))
            elif isinstance(part, canonical.ToolResultPart):
                results.append((part.tool_call_id, part.text))
    return {"texts": texts, "calls": calls, "results": results}


def through_chat_upstream(request: canonical.Request) -> canonical.Request:
    """What an OpenAI-format upstream gets (checked against OpenAI chat's rules), read back."""
    body = chat_body(request, model="gpt-4.1")
    validate_chat(copy.deepcopy(body))
    return chat_to_canonical(body)


TOOLS = [{"name": "lookup", "description": "Look it up.", "schema": {"type": "object", "properties": {}}}]


def tool_names(conversation: list[tuple[str, Any]]) -> set[str]:
    return {name for kind, value in conversation if kind == "assistant" for _, name, _ in value[1]} | {
        "lookup"
    }


# -- anthropic_messages -----------------------------------------------------------------------------


def anthropic_body(conversation: list[tuple[str, Any]], *, system: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for kind, value in conversation:
        if kind == "user":
            if messages and messages[-1]["role"] == "user":  # after tool results: same user turn
                messages[-1]["content"].append({"type": "text", "text": value})
            else:
                messages.append({"role": "user", "content": [{"type": "text", "text": value}]})
        elif kind == "assistant":
            content: list[dict[str, Any]] = [{"type": "text", "text": value[0]}] if value[0] else []
            content += [{"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in value[1]]
            messages.append({"role": "assistant", "content": content})
        else:
            messages.append(
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": i, "content": o} for i, o in value],
                }
            )
    return {
        "model": "claude-sonnet-4.5",
        "max_tokens": 256,
        "system": system,
        "messages": messages,
        "tools": [{"name": n, "input_schema": {"type": "object"}} for n in sorted(tool_names(conversation))],
        "tool_choice": {"type": "auto"},
    }


@PROPERTIES
@given(conversation=turns(), system=text)
def test_it_carries_every_anthropic_message_and_tool_call_to_a_chat_upstream_and_back(conversation, system):
    inbound = anthropic_codec.parse(
        body=anthropic_body(conversation, system=system), headers={}, operation="messages"
    )
    request = inbound.canonical()
    assert request.messages[0].role == Role.SYSTEM and request.messages[0].text == system
    assert observed(request) == expected(conversation)
    back = through_chat_upstream(request)
    assert observed(back) == expected(conversation)
    assert back.max_output_tokens == 256


usage = st.builds(
    lambda prompt, cached, written, completion, reasoning: canonical.Usage(
        prompt_tokens=prompt + cached + written,
        cached_tokens=cached,
        cache_write_tokens=written,
        completion_tokens=completion + reasoning,
        reasoning_tokens=reasoning,
        reported=True,
    ),
    st.integers(0, 10**6),
    st.integers(0, 10**5),
    st.integers(0, 10**5),
    st.integers(0, 10**5),
    st.integers(0, 10**4),
)
answers = st.builds(
    lambda reply, calls, finish, use: canonical.Response(
        id="chatcmpl-1",
        model="upstream-model",
        content=([canonical.TextPart(reply)] if reply else [])
        + [canonical.ToolCallPart(id=i, name=n, arguments=orjson.dumps(a).decode()) for i, n, a in calls],
        finish_reason=finish,
        usage=use,
    ),
    st.one_of(st.just(""), text),
    st.lists(st.tuples(ids, names, arguments), max_size=3, unique_by=lambda c: c[0]),
    st.sampled_from([FinishReason.STOP, FinishReason.LENGTH, FinishReason.TOOL_CALLS]),
    usage,
)


def anthropic_inbound() -> Any:
    body = {"model": "claude-sonnet-4.5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    return anthropic_codec.parse(body=body, headers={}, operation="messages")


def check_anthropic_message(message: AnthropicMessage, answer: canonical.Response) -> None:
    u = answer.usage
    assert (
        message.usage.input_tokens
        + message.usage.cache_read_input_tokens
        + message.usage.cache_creation_input_tokens
        == u.prompt_tokens
    )
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (
        u.cached_tokens,
        u.cache_write_tokens,
    )
    assert message.usage.output_tokens == u.completion_tokens
    calls = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert calls == [(c.id, c.name, orjson.loads(c.arguments)) for c in answer.tool_calls]
    assert "".join(b.text for b in message.content if b.type == "text") == answer.text
    if answer.tool_calls and answer.finish_reason != FinishReason.LENGTH:
        assert message.stop_reason == "tool_use"


@PROPERTIES
@given(answer=answers)
def test_it_renders_any_answer_as_a_message_the_anthropic_sdk_reads_whole(answer):
    inbound = anthropic_inbound()
    message = AnthropicMessage.model_validate(
        orjson.loads(anthropic_codec.render_response(answer, inbound=inbound))
    )
    check_anthropic_message(message, answer)


def stream_events(answer: canonical.Response, chunk: int) -> list[canonical.StreamEvent]:
    events: list[canonical.StreamEvent] = [canonical.Start(id="x", model="upstream-model")]
    if answer.text:
        events += [canonical.TextDelta(answer.text[i : i + chunk]) for i in range(0, len(answer.text), chunk)]
    for index, call in enumerate(answer.tool_calls):
        events.append(canonical.ToolCallStart(index=index, id=call.id, name=call.name))
        events += [
            canonical.ToolCallDelta(index=index, arguments=call.arguments[i : i + chunk])
            for i in range(0, len(call.arguments), chunk)
        ]
    return [*events, canonical.UsageUpdate(answer.usage), canonical.Finish(answer.finish_reason)]


def sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines.get("event", ""), orjson.loads(lines["data"]) if lines["data"] != "[DONE]" else {}))
    return out


@PROPERTIES
@given(answer=answers, chunk=st.integers(1, 7))
def test_it_streams_any_answer_as_events_the_anthropic_sdk_accumulates_whole(answer, chunk):
    renderer = anthropic_codec.stream_renderer(inbound=anthropic_inbound(), request_id="r1")
    raw = b"".join(renderer.render(event) for event in stream_events(answer, chunk)) + renderer.terminal()
    events = sse(raw)
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    snapshot, bufs = None, {}
    event_type = TypeAdapter(Any)
    from anthropic.types import RawMessageStreamEvent

    adapter = TypeAdapter(RawMessageStreamEvent)
    for name, data in events:
        assert name == data["type"]
        event_type.validate_python(data)
        snapshot = accumulate_event(
            event=adapter.validate_python(data), current_snapshot=snapshot, json_bufs=bufs
        )
    check_anthropic_message(snapshot, answer)


# -- openai_responses -------------------------------------------------------------------------------


def responses_body(conversation: list[tuple[str, Any]], *, instructions: str) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for kind, value in conversation:
        if kind == "user":
            items.append({"role": "user", "content": value})
        elif kind == "assistant":
            if value[0]:
                items.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": value[0]}],
                    }
                )
            items += [
                {"type": "function_call", "call_id": i, "name": n, "arguments": orjson.dumps(a).decode()}
                for i, n, a in value[1]
            ]
        else:
            items += [{"type": "function_call_output", "call_id": i, "output": o} for i, o in value]
    return {
        "model": "gpt-4.1",
        "instructions": instructions,
        "input": items,
        "tools": [
            {"type": "function", "name": n, "parameters": {"type": "object"}}
            for n in sorted(tool_names(conversation))
        ],
        "tool_choice": "auto",
        "max_output_tokens": 300,
        "store": False,
    }


@PROPERTIES
@given(conversation=turns(), instructions=text)
def test_it_carries_every_responses_item_to_a_chat_upstream_and_back(conversation, instructions):
    body = responses_body(conversation, instructions=instructions)
    inbound = responses_codec.parse(body=body, headers={}, operation="responses")
    request = inbound.canonical()
    assert request.messages[0].text == instructions
    assert observed(request) == expected(conversation)
    back = through_chat_upstream(request)
    assert observed(back) == expected(conversation)
    assert back.max_output_tokens == 300


def responses_inbound() -> Any:
    return responses_codec.parse(body={"model": "gpt-4.1", "input": "hi"}, headers={}, operation="responses")


def check_response(response: openai.types.responses.Response, answer: canonical.Response) -> None:
    u = answer.usage
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        u.prompt_tokens,
        u.completion_tokens,
    )
    assert response.usage.input_tokens_details.cached_tokens == u.cached_tokens
    assert response.usage.output_tokens_details.reasoning_tokens == u.reasoning_tokens
    calls = [
        (i.call_id, i.name, orjson.loads(i.arguments)) for i in response.output if i.type == "function_call"
    ]
    assert calls == [(c.id, c.name, orjson.loads(c.arguments)) for c in answer.tool_calls]
    assert response.output_text == answer.text


@PROPERTIES
@given(answer=answers)
def test_it_renders_any_answer_as_a_response_the_openai_sdk_reads_whole(answer):
    raw = responses_codec.render_response(answer, inbound=responses_inbound())
    check_response(openai.types.responses.Response.model_validate(orjson.loads(raw)), answer)


@PROPERTIES
@given(answer=answers, chunk=st.integers(1, 7))
def test_it_streams_any_answer_as_typed_events_ending_in_the_whole_response(answer, chunk):
    renderer = responses_codec.stream_renderer(inbound=responses_inbound(), request_id="r1")
    raw = b"".join(renderer.render(event) for event in stream_events(answer, chunk)) + renderer.terminal()
    adapter = TypeAdapter(openai.types.responses.ResponseStreamEvent)
    events = [adapter.validate_python(data) for _, data in sse(raw)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.incomplete")
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == answer.text
    check_response(events[-1].response, answer)


# -- openai_chat ------------------------------------------------------------------------------------


def chat_request_body(conversation: list[tuple[str, Any]], *, system: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for kind, value in conversation:
        if kind == "user":
            messages.append({"role": "user", "content": value})
        elif kind == "assistant":
            message: dict[str, Any] = {"role": "assistant", "content": value[0] or None}
            if value[1]:
                message["tool_calls"] = [
                    {
                        "id": i,
                        "type": "function",
                        "function": {"name": n, "arguments": orjson.dumps(a).decode()},
                    }
                    for i, n, a in value[1]
                ]
            messages.append(message)
        else:
            messages += [{"role": "tool", "tool_call_id": i, "content": o} for i, o in value]
    return {"model": "gpt-4.1", "messages": messages, "max_tokens": 64}


@PROPERTIES
@given(conversation=turns(), system=text)
def test_it_carries_every_chat_message_through_the_canonical_request_and_back(conversation, system):
    inbound = chat_codec.parse(
        body=chat_request_body(conversation, system=system), headers={}, operation="chat"
    )
    request = inbound.canonical()
    assert observed(request) == expected(conversation)
    assert observed(through_chat_upstream(request)) == expected(conversation)


@PROPERTIES
@given(answer=answers, chunk=st.integers(1, 7))
def test_it_renders_any_answer_as_chat_json_and_chunks_the_openai_sdk_reads(answer, chunk):
    body = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "hi"}],
        "stream_options": {"include_usage": True},
    }
    inbound = chat_codec.parse(body=body, headers={}, operation="chat")
    completion = openai.types.chat.ChatCompletion.model_validate(
        orjson.loads(chat_codec.render_response(answer, inbound=inbound))
    )
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    message = completion.choices[0].message
    assert [(c.id, c.function.name) for c in message.tool_calls or []] == [
        (c.id, c.name) for c in answer.tool_calls
    ]
    renderer = chat_codec.stream_renderer(inbound=inbound, request_id="r1")
    raw = b"".join(renderer.render(event) for event in stream_events(answer, chunk)) + renderer.terminal()
    assert raw.endswith(b"data: [DONE]\n\n")
    chunks = [openai.types.chat.ChatCompletionChunk.model_validate(d) for _, d in sse(raw) if d]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer.text
    arguments: dict[int, str] = {}
    for c in chunks:
        for call in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
    assert [arguments.get(i, "") for i in range(len(answer.tool_calls))] == [
        c.arguments for c in answer.tool_calls
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == answer.usage.prompt_tokens


# -- hostile input ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def spoil(body: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    """`body` with the value at `path` (as far as it exists) replaced by `value`."""
    body = copy.deepcopy(body)
    target: Any = body
    for step in path[:-1]:
        if (isinstance(target, dict) and step in target) or (
            isinstance(target, list) and isinstance(step, int) and step < len(target)
        ):
            target = target[step]
        else:
            break
    last = path[-1]
    if isinstance(target, dict):
        target[last if isinstance(last, str) else "x"] = value
    elif isinstance(target, list) and target:
        target[0] = value
    return body


VALID = {
    "anthropic_messages": (
        anthropic_codec,
        "messages",
        anthropic_body(
            [
                ("user", "hi"),
                ("assistant", ("", [("c1", "lookup", {"q": 1})])),
                ("results", [("c1", "ok")]),
                ("user", "go"),
            ],
            system="sys",
        ),
    ),
    "openai_responses": (
        responses_codec,
        "responses",
        responses_body(
            [
                ("user", "hi"),
                ("assistant", ("", [("c1", "lookup", {"q": 1})])),
                ("results", [("c1", "ok")]),
                ("user", "go"),
            ],
            instructions="sys",
        ),
    ),
    "openai_chat": (
        chat_codec,
        "chat",
        chat_request_body(
            [
                ("user", "hi"),
                ("assistant", ("", [("c1", "lookup", {"q": 1})])),
                ("results", [("c1", "ok")]),
                ("user", "go"),
            ],
            system="sys",
        ),
    ),
}
paths = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "model",
                "messages",
                "input",
                "content",
                "role",
                "type",
                "tools",
                "tool_choice",
                "system",
                "max_tokens",
                "instructions",
                "text",
                "format",
                "reasoning",
                "thinking",
                "name",
                "input_schema",
                "arguments",
                "call_id",
                "tool_use_id",
                "metadata",
                "user_id",
                "stop_sequences",
                "temperature",
                "max_output_tokens",
                "output",
            ]
        ),
        st.integers(0, 4),
    ),
    min_size=1,
    max_size=5,
)


@pytest.mark.parametrize("dialect", sorted(VALID))
def test_it_answers_hostile_input_with_the_dialects_400_only(dialect):
    codec, operation, valid = VALID[dialect]

    @PROPERTIES
    @given(path=paths, value=json_values)
    def fuzz(path: list[Any], value: Any) -> None:
        body = spoil(valid, path, value)
        try:
            inbound = codec.parse(body=body, headers={}, operation=operation)
            request = inbound.canonical()
            chat_body(request, model="m")  # and an upstream request can be built from it
        except errors.BadRequest as exc:
            error = codec.error_response(exc)
            assert error.status_code == 400
            shape = orjson.loads(error.content)
            assert ("error" in shape) and (dialect != "anthropic_messages" or shape["type"] == "error")

    fuzz()

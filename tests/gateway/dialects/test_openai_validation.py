"""gateway.dialects (openai_chat, openai_embeddings, fields): every field the gateway reads, translates or stores is checked at ingress, with
a 400 naming the field; nothing a client sends can crash validation or reach the ledger unfit."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest
from django.test import RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import errors
from gateway.dialects.fields import MAX_JSON_DEPTH, read_json_body
from gateway.dialects.openai_chat import validate_chat
from gateway.dialects.openai_embeddings import validate_embeddings

HYPOTHESIS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], **fields}


def embeddings(**fields: Any) -> dict[str, Any]:
    return {"model": "text-embedding-3-small", "input": "hello", **fields}


def rejected(validate: Any, body: dict[str, Any]) -> errors.BadRequest:
    with pytest.raises(errors.BadRequest) as caught:
        validate(body)
    return caught.value


EVERY_CHAT_FIELD = chat(
    messages=[
        {"role": "developer", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "Be kind."}]},
        {
            "role": "user",
            "name": "alice",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-1"}},
                {"type": "some_future_part", "whatever": 1},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
                {"id": "call_2", "type": "custom", "custom": {"name": "grep", "input": "x"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "function", "name": "lookup", "content": "42"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
    ],
    n=2,
    temperature=1.5,
    top_p=0.5,
    presence_penalty=-2,
    frequency_penalty=2.0,
    max_tokens=100,
    max_completion_tokens=200,
    stream=True,
    stream_options={"include_usage": True},
    stop=["\n", "END"],
    logprobs=True,
    top_logprobs=20,
    seed=-(2**63),
    logit_bias={"50256": -100, "11": 2.5},
    response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
    tools=[
        {
            "type": "function",
            "function": {
                "name": "lookup-v2_x",
                "description": "Look it up.",
                "parameters": {"type": "object"},
                "strict": True,
            },
        },
        {"type": "custom", "custom": {"name": "grep", "format": {"type": "text"}}},
    ],
    tool_choice={"type": "function", "function": {"name": "lookup"}},
    parallel_tool_calls=False,
    user="user-123",
    metadata={"unknown": ["fields", "pass", {"through": None}]},
    reasoning_effort="low",
)


def test_it_accepts_every_documented_chat_field_and_leaves_the_body_untouched():
    body = copy.deepcopy(EVERY_CHAT_FIELD)
    model, prompt_chars = validate_chat(body)
    assert model == "gpt-4.1"
    assert prompt_chars == len("Be brief.Be kind.What is this?4242")
    assert body == EVERY_CHAT_FIELD


def test_it_counts_the_prompt_text_of_strings_and_text_parts_only():
    body = chat(
        messages=[
            {"role": "system", "content": "abc"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "de"},
                    {"type": "image_url", "image_url": {"url": "xyz"}},
                ],
            },
            {"role": "assistant", "content": None},
        ]
    )
    assert validate_chat(body) == ("gpt-4.1", 5)


@pytest.mark.parametrize(
    "field",
    ["n", "temperature", "top_p", "max_tokens", "stream", "stop", "tools", "tool_choice", "user", "seed"],
)
def test_it_treats_null_as_not_given(field):
    validate_chat(chat(**{field: None}))


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"model": None}, "model", "missing_required_parameter"),
        ({"model": "  "}, "model", "missing_required_parameter"),
        ({"model": 5}, "model", "missing_required_parameter"),
        ({"model": "m" * 201}, "model", "string_above_max_length"),
        ({"messages": []}, "messages", "missing_required_parameter"),
        ({"messages": {"role": "user"}}, "messages", "missing_required_parameter"),
        ({"messages": ["hi"]}, "messages[0]", "invalid_type"),
        ({"messages": [{"content": "no role"}]}, "messages[0]", "invalid_value"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
        ({"messages": [{"role": "user", "content": {"text": "x"}}]}, "messages[0].content", "invalid_type"),
        ({"messages": [{"role": "user", "content": ["x"]}]}, "messages[0].content[0]", "invalid_type"),
        (
            {"messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages[0].content[0].type",
            "missing_required_parameter",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 42}]}]},
            "messages[0].content[0].text",
            "invalid_type",
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": "a"},
                    {"role": "user", "content": "b"},
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "ok"}, {"type": "text", "text": None}],
                    },
                ]
            },
            "messages[2].content[1].text",
            "missing_required_parameter",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "http://x"}]}]},
            "messages[0].content[0].image_url",
            "invalid_type",
        ),
        ({"messages": [{"role": "user", "content": "x", "name": 1}]}, "messages[0].name", "invalid_type"),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "missing_required_parameter",
        ),
        (
            {"messages": [{"role": "tool", "content": "x", "tool_call_id": 7}]},
            "messages[0].tool_call_id",
            "invalid_type",
        ),
        (
            {"messages": [{"role": "function", "content": "x"}]},
            "messages[0].name",
            "missing_required_parameter",
        ),
        ({"messages": [{"role": "assistant", "tool_calls": {}}]}, "messages[0].tool_calls", "invalid_type"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]},
            "messages[0].tool_calls[0].function",
            "missing_required_parameter",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
            "invalid_type",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "web"}]}]},
            "messages[0].tool_calls[0].type",
            "invalid_value",
        ),
        ({"n": 0}, "n", "integer_below_min_value"),
        ({"n": -1}, "n", "integer_below_min_value"),
        ({"n": 129}, "n", "integer_above_max_value"),
        ({"n": 1.5}, "n", "invalid_type"),
        ({"n": True}, "n", "invalid_type"),
        ({"temperature": 99}, "temperature", "decimal_above_max_value"),
        ({"temperature": -0.1}, "temperature", "decimal_below_min_value"),
        ({"temperature": "1"}, "temperature", "invalid_type"),
        ({"temperature": False}, "temperature", "invalid_type"),
        ({"top_p": 1.01}, "top_p", "decimal_above_max_value"),
        ({"presence_penalty": -2.5}, "presence_penalty", "decimal_below_min_value"),
        ({"frequency_penalty": 3}, "frequency_penalty", "decimal_above_max_value"),
        ({"max_tokens": 0}, "max_tokens", "integer_below_min_value"),
        ({"max_tokens": True}, "max_tokens", "invalid_type"),
        ({"max_tokens": 2**63}, "max_tokens", "integer_above_max_value"),
        ({"max_completion_tokens": -5}, "max_completion_tokens", "integer_below_min_value"),
        ({"stream": "yes"}, "stream", "invalid_type"),
        ({"stream": 1}, "stream", "invalid_type"),
        ({"stream_options": []}, "stream_options", "invalid_type"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage", "invalid_type"),
        ({"stop": 5}, "stop", "invalid_type"),
        ({"stop": ["a", 1]}, "stop", "invalid_type"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length"),
        ({"logprobs": "true"}, "logprobs", "invalid_type"),
        ({"top_logprobs": 21}, "top_logprobs", "integer_above_max_value"),
        ({"top_logprobs": -1}, "top_logprobs", "integer_below_min_value"),
        ({"seed": 2**63}, "seed", "integer_above_max_value"),
        ({"seed": 1.0}, "seed", "invalid_type"),
        ({"logit_bias": []}, "logit_bias", "invalid_type"),
        ({"logit_bias": {"hello": 1}}, "logit_bias", "invalid_value"),
        ({"logit_bias": {"50256": 101}}, "logit_bias", "invalid_value"),
        ({"logit_bias": {"50256": True}}, "logit_bias", "invalid_value"),
        ({"response_format": "json"}, "response_format", "invalid_type"),
        ({"response_format": {}}, "response_format.type", "missing_required_parameter"),
        ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
        (
            {"response_format": {"type": "json_schema"}},
            "response_format.json_schema",
            "missing_required_parameter",
        ),
        ({"tools": {}}, "tools", "invalid_type"),
        ({"tools": [5]}, "tools[0]", "invalid_type"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type", "invalid_value"),
        ({"tools": [{"type": "function"}]}, "tools[0].function", "missing_required_parameter"),
        (
            {"tools": [{"type": "function", "function": {}}]},
            "tools[0].function.name",
            "missing_required_parameter",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "a b"}}]},
            "tools[0].function.name",
            "invalid_value",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "x" * 65}}]},
            "tools[0].function.name",
            "invalid_value",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "ok\n"}}]},
            "tools[0].function.name",
            "invalid_value",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "description": 1}}]},
            "tools[0].function.description",
            "invalid_type",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
            "tools[0].function.parameters",
            "invalid_type",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]},
            "tools[0].function.strict",
            "invalid_type",
        ),
        ({"tool_choice": "always"}, "tool_choice", "invalid_value"),
        ({"tool_choice": 1}, "tool_choice", "invalid_type"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.function", "missing_required_parameter"),
        (
            {"tool_choice": {"type": "function", "function": {}}},
            "tool_choice.function.name",
            "missing_required_parameter",
        ),
        ({"tool_choice": {"type": "magic"}}, "tool_choice.type", "invalid_value"),
        (
            {"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "all", "tools": []}}},
            "tool_choice.allowed_tools.mode",
            "invalid_value",
        ),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls", "invalid_type"),
        ({"user": 7}, "user", "invalid_type"),
    ],
)
def test_it_names_the_bad_chat_field(fields, param, code):
    error = rejected(validate_chat, chat(**fields))
    assert (error.param, error.code, error.status) == (param, code, 400)
    assert error.body()["error"]["type"] == "invalid_request_error"


def test_it_accepts_the_other_tool_choice_shapes():
    for choice in (
        "none",
        "auto",
        "required",
        {"type": "custom", "custom": {"name": "grep"}},
        {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function"}]}},
    ):
        validate_chat(chat(tool_choice=choice))


@pytest.mark.parametrize("validate, make", [(validate_chat, chat), (validate_embeddings, embeddings)])
@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("model", "gpt\x00-4.1", "invalid_value"),
        ("model", "gpt\ud800", "invalid_value"),
        ("model", "m" * 201, "string_above_max_length"),
        ("user", "alice\x00", "invalid_value"),
        ("user", "\udfffalice", "invalid_value"),
        ("user", "u" * 201, "string_above_max_length"),
    ],
)
def test_it_refuses_strings_the_ledger_cannot_store(validate, make, field, value, code):
    error = rejected(validate, make(**{field: value}))
    assert (error.param, error.code) == (field, code)
    assert value not in error.message  # never echoed back


def test_it_accepts_stored_strings_up_to_their_limit():
    assert validate_chat(chat(model="m" * 200, user="u" * 200))[0] == "m" * 200
    validate_embeddings(embeddings(user=""))


@pytest.mark.parametrize(
    ("value", "chars"),
    [
        ("hello", 5),
        (["ab", "cde"], 5),
        ([1, 2, 3], 12),
        ([[1, 2], [3]], 12),
        (["x"] * 2048, 2048),
    ],
)
def test_it_accepts_each_embeddings_input_shape(value, chars):
    assert validate_embeddings(embeddings(input=value)) == ("text-embedding-3-small", chars)


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"input": None}, "input", "missing_required_parameter"),
        ({"input": ""}, "input", "invalid_value"),
        ({"input": []}, "input", "invalid_value"),
        ({"input": 5}, "input", "invalid_type"),
        ({"input": {"text": "x"}}, "input", "invalid_type"),
        ({"input": ["x"] * 2049}, "input", "array_above_max_length"),
        ({"input": ["a", ""]}, "input[1]", "invalid_value"),
        ({"input": ["a", 1]}, "input[1]", "invalid_type"),
        ({"input": [1, "a"]}, "input[1]", "invalid_type"),
        ({"input": [1, True]}, "input[1]", "invalid_type"),
        ({"input": [True]}, "input[0]", "invalid_type"),
        ({"input": [[1], []]}, "input[1]", "invalid_type"),
        ({"input": [[1], [2, 2.5]]}, "input[1][1]", "invalid_type"),
        ({"input": [[1], 2]}, "input[1]", "invalid_type"),
        ({"input": [None]}, "input[0]", "invalid_type"),
        ({"dimensions": 0}, "dimensions", "integer_below_min_value"),
        ({"dimensions": "8"}, "dimensions", "invalid_type"),
        ({"dimensions": True}, "dimensions", "invalid_type"),
        ({"encoding_format": "int8"}, "encoding_format", "invalid_value"),
        ({"encoding_format": ["float"]}, "encoding_format", "invalid_value"),
        ({"user": ["a"]}, "user", "invalid_type"),
    ],
)
def test_it_names_the_bad_embeddings_field(fields, param, code):
    error = rejected(validate_embeddings, embeddings(**fields))
    assert (error.param, error.code) == (param, code)


# -- read_json_body --------------------------------------------------------------------------------


def body_of(raw: bytes) -> dict[str, Any]:
    return read_json_body(RequestFactory().post("/v1/chat/completions", raw, content_type="application/json"))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "gpt-4.1", "user": "\\ud800"}',  # a lone high surrogate escape
        b'{"model": "\\udc00x"}',  # a lone low surrogate escape
        b'{"model": "\xff\xfe"}',  # not UTF-8
        b'{"temperature": 1e400}',  # overflows a double
        b'{"model": "gpt-4.1",',
        b"NaN",
        b"[" * 2000 + b"]" * 2000,
    ],
)
def test_it_answers_unreadable_json_with_400(raw):
    with pytest.raises(errors.BadRequest):
        body_of(raw)


def test_it_refuses_a_body_nested_deeper_than_it_can_send_upstream():
    deep = MAX_JSON_DEPTH  # the body object itself is one level
    assert body_of(b'{"x":' + b"[" * (deep - 1) + b"]" * (deep - 1) + b"}")
    with pytest.raises(errors.BadRequest, match="nested more than"):
        body_of(b'{"x":' + b"[" * deep + b"]" * deep + b"}")
    # Many brackets, little depth: walked and accepted.
    assert body_of(b'{"x":[' + b"[]," * 500 + b"[]]}")


def test_it_keeps_nul_and_escaped_pairs_that_are_valid_json():
    assert body_of(b'{"a": "x\\u0000y", "b": "\\ud83d\\ude00"}') == {"a": "x\x00y", "b": "\U0001f600"}


# -- properties ------------------------------------------------------------------------------------

# Any JSON value, strings with NUL and lone surrogates included (Python dicts can carry them even
# though orjson never yields them), integers well past 64 bits.
hostile_text = st.text(st.characters(exclude_categories=()), max_size=30) | st.sampled_from(
    ["", " ", "\x00", "\ud800", "a" * 201, "text", "function", "custom", "user", "auto"]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=15,
)
CHAT_FIELDS = [
    "model", "messages", "n", "temperature", "top_p", "presence_penalty", "frequency_penalty",
    "max_tokens", "max_completion_tokens", "stream", "stream_options", "stop", "logprobs",
    "top_logprobs", "seed", "logit_bias", "response_format", "tools", "tool_choice",
    "parallel_tool_calls", "user", "unknown_field",
]  # fmt: skip
EMBEDDINGS_FIELDS = ["model", "input", "dimensions", "encoding_format", "user", "unknown_field"]


def check_outcome(validate: Any, body: dict[str, Any], field: str) -> None:
    """The property every input must have: accepted with sane results, or a 400 naming `field`."""
    before = copy.deepcopy(body)
    try:
        model, prompt_chars = validate(body)
    except errors.BadRequest as exc:
        assert exc.status == 400
        assert exc.param is not None and exc.param.split("[")[0].split(".")[0] == field
        json.dumps(exc.body(), ensure_ascii=False).encode("utf-8")  # the error itself is sendable
        return
    assert body == before
    assert isinstance(prompt_chars, int) and prompt_chars >= 0
    assert 0 < len(model) <= 200 and "\x00" not in model
    model.encode("utf-8")
    user = body.get("user")
    assert user is None or (len(user) <= 200 and "\x00" not in user)
    if user is not None:
        user.encode("utf-8")  # storable: raises for a lone surrogate (an empty name is fine too)


@HYPOTHESIS
@given(field=st.sampled_from(CHAT_FIELDS), value=json_values)
def test_it_accepts_or_names_any_value_of_any_chat_field(field, value):
    check_outcome(validate_chat, chat(**{field: value}), field)


@HYPOTHESIS
@given(field=st.sampled_from(EMBEDDINGS_FIELDS), value=json_values)
def test_it_accepts_or_names_any_value_of_any_embeddings_field(field, value):
    check_outcome(validate_embeddings, embeddings(**{field: value}), field)


@HYPOTHESIS
@given(
    path=st.sampled_from(
        [
            ("content",),
            ("role",),
            ("name",),
            ("tool_calls",),
            ("function_call",),
            ("tool_call_id",),
            ("content", 0),
            ("content", 0, "text"),
            ("content", 0, "type"),
            ("content", 0, "image_url"),
        ]
    ),
    role=st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]),
    value=json_values,
)
def test_it_accepts_or_names_any_value_inside_a_message(path, role, value):
    message: dict[str, Any] = {"role": role, "content": [{"type": "text", "text": "hi"}]}
    target: Any = message
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    body = chat(messages=[{"role": "user", "content": "first"}, message])
    try:
        _, prompt_chars = validate_chat(body)
    except errors.BadRequest as exc:
        assert exc.param is not None and exc.param.startswith("messages[1]")
    else:
        assert prompt_chars >= len("first")


# Valid values for the scalar fields, written independently of the validator: the property is
# that the validator accepts exactly these.
def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_num(v: Any) -> bool:
    return type(v) in (int, float)


SCALAR_RULES = {
    "n": lambda v: _is_int(v) and 1 <= v <= 128,
    "temperature": lambda v: _is_num(v) and 0 <= v <= 2,
    "top_p": lambda v: _is_num(v) and 0 <= v <= 1,
    "presence_penalty": lambda v: _is_num(v) and -2 <= v <= 2,
    "frequency_penalty": lambda v: _is_num(v) and -2 <= v <= 2,
    "max_tokens": lambda v: _is_int(v) and 1 <= v < 2**63,
    "max_completion_tokens": lambda v: _is_int(v) and 1 <= v < 2**63,
    "top_logprobs": lambda v: _is_int(v) and 0 <= v <= 20,
    "seed": lambda v: _is_int(v) and -(2**63) <= v < 2**63,
    "stream": lambda v: type(v) is bool,
    "logprobs": lambda v: type(v) is bool,
    "parallel_tool_calls": lambda v: type(v) is bool,
    "stop": lambda v: type(v) is str or (type(v) is list and len(v) <= 4 and all(type(s) is str for s in v)),
    "user": lambda v: (
        type(v) is str
        and len(v) <= 200
        and "\x00" not in v
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in v)
    ),
}
scalar_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.integers(min_value=-3, max_value=130)
    | st.floats(allow_nan=False)
    | st.floats(min_value=-3, max_value=3)
    | hostile_text
    | st.lists(hostile_text, max_size=6)
)


@HYPOTHESIS
@given(field=st.sampled_from(sorted(SCALAR_RULES)), value=scalar_values)
def test_it_accepts_exactly_the_documented_values_of_scalar_fields(field, value):
    valid = value is None or SCALAR_RULES[field](value)
    try:
        validate_chat(chat(**{field: value}))
    except errors.BadRequest as exc:
        assert not valid, f"{field}={value!r} is valid but was refused: {exc.message}"
        assert exc.param == field
    else:
        assert valid, f"{field}={value!r} is invalid but was accepted"


# -- through the live gateway ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (
            b'{"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "user": "alice\\u0000"}',
            "user",
        ),
        (b'{"model": "gpt-4.1\\u0000", "messages": [{"role": "user", "content": "hi"}]}', "model"),
        (
            b'{"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "user": "'
            + b"u" * 201
            + b'"}',
            "user",
        ),
        (b'{"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "user": "\\ud800"}', None),
    ],
)
def test_it_leaves_a_400_row_without_the_hostile_string(gateway_server, world, usage_rows, raw, param):
    response = httpx.post(
        gateway_server + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"},
        content=raw,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    [row] = usage_rows(1)
    assert (row.status, row.end_user, row.requested_model) == (400, "", "")
    assert row.tenant_id == world.acme.id

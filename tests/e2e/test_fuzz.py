"""Fuzzing the /v1 API through a live gateway: no input gets a 5xx or leaves a traceback in the log.

Two sources of requests:
- schemathesis, from the OpenAPI document the project keeps next to the code (gateway/openapi.yaml):
  valid requests (they reach the mock upstream and must be answered as documented) and requests
  that break the document (they must be refused with a 4xx);
- hypothesis, throwing hostile values at every field the gateway reads: NUL bytes, lone surrogates
  in escapes, invalid UTF-8, numbers past 64 bits or a double, deep nesting, wrong types, megabyte
  strings, malformed bodies, and wrong or missing keys.

Every example is derandomized, so CI runs the same requests every time. Each test counts what it
sent and checks it against its quota: the suite cannot shrink below 5,000 requests unnoticed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.services import DEMO_ALIASES, DEMO_MODELS

# Each test sends 250-1,500 requests; the timeout leaves room for a slow, loaded CI machine.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

SPEC = Path(__file__).resolve().parents[2] / "gateway" / "openapi.yaml"
CHAT, EMBEDDINGS, MODELS = "/v1/chat/completions", "/v1/embeddings", "/v1/models"
MESSAGES, COUNT_TOKENS, RESPONSES = "/v1/messages", "/v1/messages/count_tokens", "/v1/responses"
KNOWN_MODELS = sorted(DEMO_MODELS) + [alias for aliases in DEMO_ALIASES.values() for alias in aliases]

# Requests each test must have sent (each runs a few more examples than its quota).
# Generating from the chat schema costs ~0.1-0.2 s an example, the rest far less: the bulk of the
# requests comes from the cheaper generators.
QUOTAS = {
    "schemathesis_chat": 250,
    "schemathesis_embeddings": 550,
    "schemathesis_messages": 150,
    "schemathesis_count_tokens": 80,
    "schemathesis_responses": 150,
    "models": 60,
    "hostile_values": 3000,
    "malformed_bodies": 1250,
    "megabyte_strings": 12,
}
assert sum(QUOTAS.values()) >= 5000


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,  # nothing carried between runs: CI sees exactly the derandomized examples
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


class ErrorRecords(logging.Handler):
    """Every ERROR line and every traceback logged anywhere while the fuzzers run."""

    # uvicorn's loggers do not propagate to the root: a crash in the ASGI app is logged there.
    LOGGERS = ("", "uvicorn", "uvicorn.error", "aiohttp")

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def __enter__(self) -> ErrorRecords:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def lines(self) -> list[str]:
        return [f"{r.name} {r.levelname} {r.getMessage()[:300]} exc={bool(r.exc_info)}" for r in self.records]


@dataclass
class Fuzzer:
    client: httpx.Client
    key: str
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def send(
        self, method: str, path: str, *, content: bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """Send one request and check what every answer must be: no 5xx, errors in the dialect's shape
        (Anthropic's on /v1/messages, OpenAI's elsewhere)."""
        response = self.client.request(method, path, content=content, headers=headers)
        self.sent += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        reproducer = f"{method} {path} headers={headers!r} body={(content or b'')[:2000]!r}"
        assert response.status_code < 500, f"{response.status_code} {response.text[:500]} for {reproducer}"
        if response.status_code >= 400:
            body = response.json()
            if path.startswith(MESSAGES):
                assert body["type"] == "error" and set(body["error"]) == {"message", "type"}, reproducer
            else:
                assert set(body["error"]) == {"message", "type", "param", "code"}, reproducer
        return response

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def fuzzer(gateway_server: str, world: Any) -> Iterator[Fuzzer]:
    transport = httpx.HTTPTransport(retries=0)
    with (
        ErrorRecords() as log,
        httpx.Client(base_url=gateway_server, timeout=30, transport=transport) as client,
    ):
        fuzzer = Fuzzer(client=client, key=world.key)
        yield fuzzer
    assert not log.lines(), "\n".join(log.lines())


def encode(body: Any) -> bytes:
    """JSON as a client might send it. `surrogatepass` lets lone surrogates through as the invalid
    UTF-8 they become on the wire; with ensure_ascii they would be "\\udXXX" escapes (also sent)."""
    return json.dumps(body, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


# -- schemathesis, from gateway/openapi.yaml -------------------------------------------------------

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def run_schemathesis(fuzzer: Fuzzer, path: str, examples: int) -> None:
    operation = schemathesis.openapi.from_path(SPEC)[path]["POST"]
    auth = fuzzer.auth()
    cases = st.one_of(*(operation.as_strategy(generation_mode=mode, headers=auth) for mode in GenerationMode))

    @fuzz_settings(examples)
    @given(case=cases, model=st.sampled_from([*KNOWN_MODELS, None]))
    def fuzz(case: Any, model: str | None) -> None:
        positive = case.meta is None or not case.meta.generation.mode.is_negative
        if positive and model is not None and isinstance(case.body, dict):
            # Most valid requests name a model the gateway routes, so they go all the way upstream.
            case.body["model"] = model
        body = case.body if isinstance(case.body, bytes) else encode(case.body)
        headers = {**auth, "Content-Type": case.media_type or "application/json"}
        response = fuzzer.send("POST", path, content=body, headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    fuzz()


def test_it_answers_schemathesis_chat_requests_as_documented(fuzzer):
    run_schemathesis(fuzzer, CHAT, examples=QUOTAS["schemathesis_chat"] + 20)
    assert fuzzer.sent >= QUOTAS["schemathesis_chat"]
    assert fuzzer.statuses.get(200, 0) > 25, fuzzer.statuses  # valid requests did reach the upstream


def test_it_answers_schemathesis_embeddings_requests_as_documented(fuzzer):
    run_schemathesis(fuzzer, EMBEDDINGS, examples=QUOTAS["schemathesis_embeddings"] + 20)
    assert fuzzer.sent >= QUOTAS["schemathesis_embeddings"]
    assert fuzzer.statuses.get(200, 0) > 50, fuzzer.statuses


@pytest.mark.parametrize(
    ("path", "quota", "answered"),
    [
        (MESSAGES, "schemathesis_messages", 10),
        (COUNT_TOKENS, "schemathesis_count_tokens", 10),
        (RESPONSES, "schemathesis_responses", 10),
    ],
)
def test_it_answers_schemathesis_requests_in_every_dialect_as_documented(fuzzer, path, quota, answered):
    run_schemathesis(fuzzer, path, examples=QUOTAS[quota] + 20)
    assert fuzzer.sent >= QUOTAS[quota]
    assert fuzzer.statuses.get(200, 0) > answered, fuzzer.statuses  # valid requests were answered


# -- hypothesis: hostile values --------------------------------------------------------------------

# Header values h11 can send: printable ASCII, no surrounding whitespace.
ascii_header = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80)
keys = st.one_of(
    st.just("valid"),
    st.just("valid"),
    st.just("valid"),
    st.just("valid"),
    st.just("valid"),
    st.just("x-api-key"),
    st.just("none"),
    ascii_header.map(lambda text: "bogus:" + text),
)


def headers_for(fuzzer: Fuzzer, key: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if key == "valid":
        headers["Authorization"] = f"Bearer {fuzzer.key}"
    elif key == "x-api-key":
        headers["x-api-key"] = fuzzer.key
    elif key.startswith("bogus:"):
        headers["Authorization"] = f"Bearer {key.removeprefix('bogus:')}".strip()
    return headers


def test_it_answers_models_with_any_key(fuzzer):
    @fuzz_settings(QUOTAS["models"] + 10)
    @given(key=keys)
    def fuzz(key: str) -> None:
        response = fuzzer.send("GET", MODELS, headers=headers_for(fuzzer, key))
        assert response.status_code == (200 if key in ("valid", "x-api-key") else 401)

    fuzz()
    assert fuzzer.sent >= QUOTAS["models"]


# Raw JSON fragments a Python value cannot express, spliced in where a value goes.
RAW_FRAGMENTS = [
    *(b"[" * depth + b"]" * depth for depth in (2, 100, 126, 127, 128, 200, 253, 254, 255, 300, 1022, 1100)),
    *(b'{"a":' * depth + b"1" + b"}" * depth for depth in (127, 128, 254, 255, 1100)),
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"-0",
    b"1.0",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1" + b"0" * 5000,
    b"NaN",
    b"Infinity",
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b'"abc\\ud83d"',
    b'"\\u0000"',
    b'"\\ud83d\\ude00"',
    b'"\xff"',
    b'"\xc0\xaf"',
    b'"\xed\xa0\x80"',
    b'"\\x41"',
    b"'single'",
    b"",
]
RAW_MARK = "\ue000raw\ue000"

hostile_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.sampled_from(
        ["", " ", "\x00", "a\x00b", "\ud800", "\udfff", "m" * 201, "gpt-4.1", "gpt-4.1\x00", "user", "text"]
    ),
    st.integers(min_value=0, max_value=300).map(lambda n: "é😀" * n),
)
hostile_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # inf and nan included: sent as the invalid JSON tokens they become
    | hostile_text
    | st.sampled_from(range(len(RAW_FRAGMENTS))).map(lambda index: (RAW_MARK, index)),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(hostile_text, inner, max_size=5),
    max_leaves=20,
)


def splice(body: Any) -> bytes:
    """Encode, replacing each raw-fragment marker by its bytes."""
    fragments: list[bytes] = []

    def mark(value: Any) -> Any:
        if isinstance(value, tuple) and value[:1] == (RAW_MARK,):
            fragments.append(RAW_FRAGMENTS[value[1]])
            return f"{RAW_MARK}{len(fragments) - 1}"
        if isinstance(value, list):
            return [mark(item) for item in value]
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        return value

    raw = encode(mark(body))
    for index, fragment in enumerate(fragments):
        raw = raw.replace(json.dumps(f"{RAW_MARK}{index}", ensure_ascii=False).encode(), fragment)
    return raw


def chat_body() -> dict[str, Any]:
    return {
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "stream_options": {"include_usage": True},
        "response_format": {"type": "text"},
        "logit_bias": {"50256": -100},
        "max_tokens": 5,
    }


def embeddings_body() -> dict[str, Any]:
    return {"model": "text-embedding-3-small", "input": ["hello", "world"]}


# Where a value goes: every field the gateway reads, plus fields inside messages, tools and friends,
# the body itself, and a field nobody knows.
CHAT_FIELDS = (
    "model", "messages", "n", "temperature", "top_p", "presence_penalty", "frequency_penalty",
    "max_tokens", "max_completion_tokens", "stream", "stream_options", "stop", "logprobs",
    "top_logprobs", "seed", "logit_bias", "response_format", "tools", "tool_choice",
    "parallel_tool_calls", "user", "metadata", "unknown",
)  # fmt: skip
CHAT_PATHS: list[tuple[Any, ...]] = [
    (),
    *((name,) for name in CHAT_FIELDS),
    ("messages", 0),
    ("messages", 1, "role"),
    ("messages", 1, "content"),
    ("messages", 1, "name"),
    ("messages", 1, "content", 0),
    ("messages", 1, "content", 0, "type"),
    ("messages", 1, "content", 0, "text"),
    ("messages", 1, "content", 0, "image_url"),
    ("messages", 2, "tool_calls"),
    ("messages", 2, "tool_calls", 0, "function", "arguments"),
    ("messages", 2, "tool_calls", 0, "type"),
    ("messages", 3, "tool_call_id"),
    ("messages", 3, "role"),
    ("tools", 0),
    ("tools", 0, "function", "name"),
    ("tools", 0, "function", "parameters"),
    ("tool_choice", "function", "name"),
    ("tool_choice", "type"),
    ("stream_options", "include_usage"),
    ("response_format", "type"),
    ("logit_bias", "50256"),
    ("logit_bias", "hello"),
]
EMBEDDINGS_PATHS: list[tuple[Any, ...]] = [
    (),
    ("model",),
    ("input",),
    ("input", 0),
    ("input", 1),
    ("dimensions",),
    ("encoding_format",),
    ("user",),
    ("unknown",),
]
PATHS = {CHAT: CHAT_PATHS, EMBEDDINGS: EMBEDDINGS_PATHS}
targets = st.one_of(
    *(st.tuples(st.just(endpoint), st.sampled_from(paths)) for endpoint, paths in PATHS.items())
)


def place(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize("endpoint", [CHAT, EMBEDDINGS])
def test_it_survives_hostile_values_in_every_field(fuzzer, endpoint):
    quota = QUOTAS["hostile_values"] // len(PATHS)

    @fuzz_settings(quota + 25)
    @given(path=st.sampled_from(PATHS[endpoint]), value=hostile_values, key=keys, stream=st.booleans())
    def fuzz(path: tuple[Any, ...], value: Any, key: str, stream: bool) -> None:
        body = chat_body() if endpoint == CHAT else embeddings_body()
        if stream and endpoint == CHAT:
            body["stream"] = True
        response = fuzzer.send(
            "POST", endpoint, content=splice(place(body, path, value)), headers=headers_for(fuzzer, key)
        )
        if key not in ("valid", "x-api-key"):
            assert response.status_code == 401

    fuzz()
    assert fuzzer.sent >= quota
    assert fuzzer.statuses.get(200, 0) > 50, fuzzer.statuses  # some did reach the upstream


def test_it_survives_malformed_bodies(fuzzer):
    valid = encode(chat_body())
    bodies = st.one_of(
        st.binary(max_size=200),
        st.integers(min_value=0, max_value=len(valid)).map(lambda cut: valid[:cut]),
        st.tuples(st.integers(0, len(valid)), st.binary(min_size=1, max_size=4)).map(
            lambda spot: valid[: spot[0]] + spot[1] + valid[spot[0] :]
        ),
        st.sampled_from(RAW_FRAGMENTS),
        st.sampled_from(RAW_FRAGMENTS).map(lambda raw: b'{"model":"gpt-4.1","messages":' + raw + b"}"),
        hostile_values.map(splice),  # any JSON value as the whole body
        st.sampled_from([b"\xef\xbb\xbf" + valid, valid + b"\x00", b" " * 1000 + valid, valid + b"garbage"]),
    )

    @fuzz_settings(QUOTAS["malformed_bodies"] + 30)
    @given(
        endpoint=st.sampled_from([CHAT, EMBEDDINGS]),
        body=bodies,
        content_type=st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
        ),
    )
    def fuzz(endpoint: str, body: bytes, content_type: str) -> None:
        headers = {**fuzzer.auth(), "Content-Type": content_type}
        fuzzer.send("POST", endpoint, content=body, headers=headers)

    fuzz()
    assert fuzzer.sent >= QUOTAS["malformed_bodies"]


def test_it_survives_megabyte_strings(fuzzer, settings):
    settings.TOLLHOUSE_MAX_BODY_BYTES = 4 * 1024 * 1024  # as big as the default suite needs, and quicker

    @fuzz_settings(QUOTAS["megabyte_strings"] + 2)
    @given(
        target=targets,
        unit=st.sampled_from(["a", "\x00", "é", "😀", "\\", '"', "\ud800", "[mock"]),
        megabytes=st.floats(min_value=0.5, max_value=4.2),
    )
    def fuzz(target: tuple[str, tuple[Any, ...]], unit: str, megabytes: float) -> None:
        endpoint, path = target
        body = chat_body() if endpoint == CHAT else embeddings_body()
        value = unit * int(megabytes * 1024 * 1024 / len(unit.encode("utf-8", "surrogatepass")))
        content = splice(place(body, path, value))
        response = fuzzer.send("POST", endpoint, content=content, headers=fuzzer.auth())
        if len(content) > 4 * 1024 * 1024:
            assert response.status_code == 413

    fuzz()
    assert fuzzer.sent >= QUOTAS["megabyte_strings"]

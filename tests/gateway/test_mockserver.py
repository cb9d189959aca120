"""Tests of the mock LLM provider (gateway.mockserver) over real HTTP.

No Django here: the mock is a standalone aiohttp server, exercised through MockServerThread with
aiohttp clients (and the official openai SDK for wire compatibility).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from gateway.mockserver import MockConfig, MockServerThread, start_server

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
USER_HELLO = [{"role": "user", "content": "hello"}]  # prompt tokens: 3 + 4 + ceil(5 / 4) = 9


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServerThread]:
    with MockServerThread(config=MockConfig(tokens=16)) as server:
        yield server


@pytest.fixture(scope="module")
def secured_mock() -> Iterator[MockServerThread]:
    with MockServerThread(config=MockConfig(api_key="sk-mock-secret")) as server:
        yield server


@pytest.fixture
def server_errors(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """Warnings/errors logged by aiohttp or asyncio (from the server thread too) during a test."""
    caplog.set_level(logging.WARNING)

    def records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name.split(".")[0] in ("aiohttp", "asyncio")]

    return records


# ---------------------------------------------------------------------------------------------
# Client helpers
# ---------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float
    first_byte: float | None = None
    events: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


def run(factory: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            return await factory(session)

    return asyncio.run(main())


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    method: str = "POST",
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    """One request; reads the body chunk by chunk so first-byte time and SSE events are observable."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    start = time.perf_counter()
    async with session.request(
        method, url, data=data, headers=all_headers, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as response:
        chunks: list[bytes] = []
        first_byte = None
        async for chunk in response.content.iter_any():
            if first_byte is None:
                first_byte = time.perf_counter() - start
            chunks.append(chunk)
        body_bytes = b"".join(chunks)
        events = []
        if response.headers.get("Content-Type", "").startswith("text/event-stream"):
            events = parse_sse(body_bytes)
        return Reply(
            response.status,
            dict(response.headers),
            body_bytes,
            time.perf_counter() - start,
            first_byte,
            events,
        )


def parse_sse(body: bytes) -> list[str]:
    events = []
    for block in body.decode().split("\n\n"):
        if block:
            assert block.startswith("data: "), block
            events.append(block[len("data: ") :])
    return events


def request(mock: MockServerThread, path: str, **kwargs: Any) -> Reply:
    return run(lambda session: fetch(session, mock.url + path, **kwargs))


def chat(mock: MockServerThread, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Reply:
    headers = kwargs.pop("headers", None)
    body = {"model": "gpt-4.1", "messages": messages or USER_HELLO, **kwargs}
    return request(mock, CHAT, body=body, headers=headers)


def expected_usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def stream_content(events: list[str]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if event != "[DONE]"
        for choice in json.loads(event)["choices"]
    )


def assert_openai_error(reply: Reply, status: int, type_: str, param: str | None = None) -> dict[str, Any]:
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    if param is not None:
        assert error["param"] == param
    return error


# ---------------------------------------------------------------------------------------------
# Chat completions
# ---------------------------------------------------------------------------------------------


def test_it_returns_an_openai_shaped_non_stream_completion(mock: MockServerThread) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},  # 14 chars -> 4 + 4
        {
            "role": "user",
            "content": [  # text parts "abcdefghi" + "jk" = 11 chars -> 4 + 3
                {"type": "text", "text": "abcdefghi"},
                {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
                {"type": "text", "text": "jk"},
            ],
        },
        {"role": "assistant", "content": None, "tool_calls": []},  # -> 4 + 0
    ]
    reply = chat(mock, messages)

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage", "system_fingerprint"}
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) > len("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and abs(body["created"] - time.time()) < 60
    assert body["model"] == "gpt-4.1"
    assert body["system_fingerprint"] == "fp_mock"
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None and choice["finish_reason"] == "stop"
    message = choice["message"]
    assert message["role"] == "assistant" and message["refusal"] is None
    assert len(message["content"].split()) == 16 and message["content"].endswith(" ")
    assert body["usage"] == expected_usage(3 + (4 + 4) + (4 + 3) + (4 + 0), 16)


def test_it_applies_token_directives_with_headers_winning(mock: MockServerThread) -> None:
    prompt = "hi [mock tokens=3, prompt_tokens=100 cached_tokens=40]"
    reply = chat(mock, [{"role": "user", "content": prompt}])
    body = reply.json()
    assert body["usage"] == expected_usage(100, 3, cached=40)
    assert body["choices"][0]["message"]["content"] == "lorem ipsum dolor "

    reply = chat(mock, [{"role": "user", "content": prompt}], headers={"X-Mock-Tokens": "5"})
    assert reply.json()["usage"]["completion_tokens"] == 5

    # Only the LAST message carries directives.
    reply = chat(mock, [{"role": "user", "content": "[mock tokens=2]"}, {"role": "user", "content": "x"}])
    assert reply.json()["usage"]["completion_tokens"] == 16

    # 70 tokens wraps around the word list (69 words), still one word per token.
    reply = chat(mock, headers={"X-Mock-Tokens": "70"})
    assert len(reply.json()["choices"][0]["message"]["content"].split()) == 70


def test_it_caps_completion_at_max_tokens_with_finish_reason_length(mock: MockServerThread) -> None:
    capped = chat(mock, max_tokens=4).json()
    assert capped["usage"]["completion_tokens"] == 4
    assert capped["choices"][0]["finish_reason"] == "length"

    capped = chat(mock, max_completion_tokens=2).json()
    assert capped["usage"]["completion_tokens"] == 2
    assert capped["choices"][0]["finish_reason"] == "length"

    roomy = chat(mock, max_tokens=100).json()
    assert roomy["usage"]["completion_tokens"] == 16
    assert roomy["choices"][0]["finish_reason"] == "stop"

    # The tokens directive is exact and wins over max_tokens.
    forced = chat(mock, max_tokens=4, headers={"X-Mock-Tokens": "6"}).json()
    assert forced["usage"]["completion_tokens"] == 6
    assert forced["choices"][0]["finish_reason"] == "stop"


def test_it_streams_chunks_without_usage_by_default(mock: MockServerThread) -> None:
    reply = chat(mock, stream=True, max_tokens=5)

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    assert reply.events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in reply.events[:-1]]
    assert len(chunks) == 1 + 5 + 1  # role, one per token, finish
    ids = {chunk["id"] for chunk in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    for chunk in chunks:
        assert set(chunk) == {"id", "object", "created", "model", "system_fingerprint", "choices"}
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == "gpt-4.1"
        assert chunk["system_fingerprint"] == "fp_mock"
        [choice] = chunk["choices"]
        assert choice["index"] == 0 and choice["logprobs"] is None
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for chunk in chunks[1:-1]:
        delta = chunk["choices"][0]["delta"]
        assert set(delta) == {"content"} and len(delta["content"].split()) == 1
        assert chunk["choices"][0]["finish_reason"] is None
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}


def test_it_streams_a_usage_chunk_and_the_same_content_as_non_stream(mock: MockServerThread) -> None:
    messages = [{"role": "user", "content": "tell me [mock tokens=7 cached_tokens=2]"}]
    reply = chat(mock, messages, stream=True, stream_options={"include_usage": True})
    non_stream = chat(mock, messages).json()

    assert reply.events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in reply.events[:-1]]
    assert len(chunks) == 1 + 7 + 1 + 1
    for chunk in chunks[:-1]:
        assert chunk["usage"] is None  # explicit null, as OpenAI sends with include_usage
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == non_stream["usage"] == expected_usage(3 + 4 + 10, 7, cached=2)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert stream_content(reply.events) == non_stream["choices"][0]["message"]["content"]


def test_it_delays_the_first_byte_by_ttft_and_spaces_chunks(mock: MockServerThread) -> None:
    reply = chat(mock, stream=True, headers={"X-Mock-TTFT-Ms": "150", "X-Mock-Tokens": "2"})
    assert reply.first_byte is not None and reply.first_byte >= 0.15
    assert reply.events[-1] == "[DONE]"

    reply = chat(mock, [{"role": "user", "content": "[mock ttft_ms=120]"}])
    assert reply.status == 200 and reply.elapsed >= 0.12

    # 5 tokens, 40 ms before each token after the first -> at least 160 ms in total.
    reply = chat(mock, stream=True, headers={"X-Mock-Chunk-Ms": "40", "X-Mock-Tokens": "5"})
    assert reply.elapsed >= 0.16 and stream_content(reply.events).count(" ") == 5


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


def test_it_injects_status_faults_with_retry_after(mock: MockServerThread) -> None:
    reply = chat(mock, [{"role": "user", "content": "hi [mock status=429 retry_after=3]"}])
    error = assert_openai_error(reply, 429, "rate_limit_error")
    assert error["message"] == "mock fault: status 429"
    assert reply.headers["Retry-After"] == "3"

    reply = chat(mock, stream=True, headers={"X-Mock-Status": "503"})
    assert_openai_error(reply, 503, "server_error")
    assert "Retry-After" not in reply.headers

    reply = chat(mock, headers={"X-Mock-Status": "400"})
    assert_openai_error(reply, 400, "invalid_request_error")

    reply = request(mock, EMBEDDINGS, body={"model": "e", "input": "x [mock status=500]"})
    assert_openai_error(reply, 500, "server_error")


def test_a_fault_script_fails_the_first_n_requests_of_its_key_then_answers(mock: MockServerThread) -> None:
    prompt = [{"role": "user", "content": "hi [mock status=500 fault_times=2 fault_key=script-a]"}]
    assert [chat(mock, prompt).status for _ in range(4)] == [500, 500, 200, 200]
    # Another key has its own count; a header names the key as well as the prompt does.
    other = chat(mock, prompt, headers={"X-Mock-Fault-Key": "script-b"})
    assert other.status == 500
    # A hang, a stream drop or a Retry-After are spent the same way.
    limited = [
        {"role": "user", "content": "[mock status=429 retry_after=1 fault_times=1 fault_key=script-c]"}
    ]
    first, second = chat(mock, limited), chat(mock, limited)
    assert (first.status, first.headers["Retry-After"]) == (429, "1")
    assert second.status == 200 and "Retry-After" not in second.headers
    dropped = [{"role": "user", "content": "[mock drop fault_times=1 fault_key=script-d]"}]
    with pytest.raises(aiohttp.ClientConnectionError):
        chat(mock, dropped)
    assert chat(mock, dropped).status == 200


@pytest.mark.parametrize(
    "directives", ["fault_times=2", "fault_key=k", "fault_times=1 fault_key=a/b", "fault_times=x fault_key=k"]
)
def test_a_fault_script_needs_both_a_count_and_a_key(mock: MockServerThread, directives: str) -> None:
    reply = chat(mock, [{"role": "user", "content": f"[mock status=500 {directives}]"}])
    assert reply.status == 400 and reply.json()["error"]["param"] in ("fault_times", "fault_key")


def test_it_quotes_the_credential_in_a_200_answer(mock: MockServerThread) -> None:
    auth = {"Authorization": "Bearer sk-quoted-0123", "X-Mock-Echo-Credential": "1"}
    quote = "the request carried the credential sk-quoted-0123"
    plain = chat(mock, headers=auth, **{"max_tokens": 3})
    content = plain.json()["choices"][0]["message"]["content"]
    assert content.startswith(quote) and plain.json()["usage"]["completion_tokens"] == 3
    streamed = chat(mock, headers=auth, stream=True, max_tokens=3)
    assert stream_content(streamed.events) == content
    embedded = request(mock, "/v1/embeddings", body={"model": "e", "input": "x"}, headers=auth)
    assert embedded.json()["model"] == f"e ({quote})"


def test_it_answers_a_stream_request_with_json_when_told_to_ignore_stream(mock: MockServerThread) -> None:
    reply = chat(mock, [{"role": "user", "content": "[mock ignore_stream]"}], stream=True)
    assert reply.headers["Content-Type"].startswith("application/json") and not reply.events
    assert reply.json()["object"] == "chat.completion"


def test_it_sends_malformed_bodies(mock: MockServerThread) -> None:
    reply = chat(mock, headers={"X-Mock-Malformed": "1"})
    assert reply.status == 200
    with pytest.raises(json.JSONDecodeError):
        reply.json()

    reply = chat(mock, [{"role": "user", "content": "[mock malformed]"}], stream=True)
    assert reply.status == 200
    assert json.loads(reply.events[0])["choices"][0]["delta"]["role"] == "assistant"
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.events[1])
    assert reply.events[-1] == "[DONE]"


def test_it_drops_the_stream_after_n_chunks(
    mock: MockServerThread, server_errors: Callable[[], list[logging.LogRecord]]
) -> None:
    async def read_until_broken(session: aiohttp.ClientSession) -> tuple[list[str], BaseException | None]:
        body = {"model": "gpt-4.1", "messages": USER_HELLO, "stream": True}
        lines: list[str] = []
        async with session.post(mock.url + CHAT, json=body, headers={"X-Mock-Drop-After": "3"}) as response:
            try:
                async for line in response.content:
                    if line.strip():
                        lines.append(line.decode().strip()[len("data: ") :])
            except aiohttp.ClientError as exc:
                return lines, exc
        return lines, None

    lines, error = run(read_until_broken)
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert "[DONE]" not in lines
    assert len(lines) == 1 + 3  # role chunk + 3 token chunks, then the connection died

    # Non-stream `drop`: the connection closes before any response.
    with pytest.raises(aiohttp.ClientConnectionError):
        chat(mock, headers={"X-Mock-Drop": ""})

    assert chat(mock).status == 200
    assert server_errors() == []


def test_it_hangs_until_the_client_gives_up_and_keeps_serving(
    mock: MockServerThread, server_errors: Callable[[], list[logging.LogRecord]]
) -> None:
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "[mock hang]"}]}
    start = time.perf_counter()
    with pytest.raises(asyncio.TimeoutError):
        request(mock, CHAT, body=body, timeout=0.5)
    assert 0.45 <= time.perf_counter() - start < 3

    async def hang_mid_stream(session: aiohttp.ClientSession) -> list[bytes]:
        received: list[bytes] = []
        body = {"model": "gpt-4.1", "messages": USER_HELLO, "stream": True}
        timeout = aiohttp.ClientTimeout(total=0.5)
        headers = {"X-Mock-Hang-After": "2"}
        async with session.post(mock.url + CHAT, json=body, headers=headers, timeout=timeout) as response:
            with pytest.raises(asyncio.TimeoutError):
                async for line in response.content:
                    if line.strip():
                        received.append(line)
        return received

    assert len(run(hang_mid_stream)) == 1 + 2

    # The server is still healthy and did not log anything about the abandoned requests.
    assert chat(mock).status == 200
    time.sleep(0.05)  # let the server thread finish cancelling the hung handlers
    assert server_errors() == []


def test_it_rejects_invalid_directive_values_naming_the_directive(mock: MockServerThread) -> None:
    error = assert_openai_error(chat(mock, headers={"X-Mock-Status": "teapot"}), 400, "invalid_request_error")
    assert error["param"] == "status" and "status" in error["message"]

    reply = chat(mock, [{"role": "user", "content": "[mock ttft_ms=-5]"}])
    assert_openai_error(reply, 400, "invalid_request_error", param="ttft_ms")

    reply = chat(mock, [{"role": "user", "content": "[mock status=200]"}])
    assert_openai_error(reply, 400, "invalid_request_error", param="status")

    reply = chat(mock, [{"role": "user", "content": "[mock bogus=1]"}])
    assert_openai_error(reply, 400, "invalid_request_error", param="bogus")

    reply = chat(mock, [{"role": "user", "content": "hi [mock cached_tokens=50]"}])  # prompt tokens: 9
    assert_openai_error(reply, 400, "invalid_request_error", param="cached_tokens")

    reply = chat(mock, headers={"X-Mock-Hang": "maybe"})
    assert_openai_error(reply, 400, "invalid_request_error", param="hang")


def test_it_rejects_bad_json_and_missing_messages(mock: MockServerThread) -> None:
    reply = request(mock, CHAT, raw=b'{"model": "gpt-4.1", "messages": [')
    assert_openai_error(reply, 400, "invalid_request_error")

    reply = request(mock, CHAT, body={"model": "gpt-4.1"})
    assert_openai_error(reply, 400, "invalid_request_error", param="messages")

    reply = request(mock, CHAT, body={"model": "gpt-4.1", "messages": [], "stream": "yes"})
    assert_openai_error(reply, 400, "invalid_request_error", param="messages")

    reply = request(mock, CHAT, body={"model": "gpt-4.1", "messages": USER_HELLO, "max_tokens": 0})
    assert_openai_error(reply, 400, "invalid_request_error", param="max_tokens")

    reply = request(mock, EMBEDDINGS, raw=b"not json")
    assert_openai_error(reply, 400, "invalid_request_error")

    reply = request(mock, EMBEDDINGS, body={"model": "e", "input": [1, "a"]})
    assert_openai_error(reply, 400, "invalid_request_error", param="input")


# ---------------------------------------------------------------------------------------------
# Embeddings, models, routing
# ---------------------------------------------------------------------------------------------


def test_it_returns_deterministic_embeddings_as_floats_and_base64(mock: MockServerThread) -> None:
    body = {"model": "text-embedding-3-small", "input": ["abcd", "abcde"]}
    floats = request(mock, EMBEDDINGS, body=body).json()
    again = request(mock, EMBEDDINGS, body=body).json()
    encoded = request(mock, EMBEDDINGS, body={**body, "encoding_format": "base64"}).json()

    assert floats == again
    assert set(floats) == {"object", "data", "model", "usage"}
    assert floats["object"] == "list" and floats["model"] == "text-embedding-3-small"
    assert floats["usage"] == {"prompt_tokens": 1 + 2, "total_tokens": 3}
    assert [item["index"] for item in floats["data"]] == [0, 1]
    vectors = [item["embedding"] for item in floats["data"]]
    assert all(item["object"] == "embedding" for item in floats["data"])
    assert all(len(vector) == 8 for vector in vectors) and vectors[0] != vectors[1]
    assert math.isclose(math.sqrt(sum(v * v for v in vectors[0])), 1.0, rel_tol=1e-5)

    decoded = []
    for item in encoded["data"]:
        values = array("f", base64.b64decode(item["embedding"]))
        if sys.byteorder == "big":
            values.byteswap()
        decoded.append(values.tolist())
    assert decoded == vectors

    sized = request(mock, EMBEDDINGS, body={"model": "e", "input": "abcd", "dimensions": 32}).json()
    assert len(sized["data"][0]["embedding"]) == 32

    tokens = request(mock, EMBEDDINGS, body={"model": "e", "input": [[1, 2, 3], [4]]}).json()
    assert len(tokens["data"]) == 2 and tokens["usage"]["prompt_tokens"] == 4
    single = request(mock, EMBEDDINGS, body={"model": "e", "input": [1, 2, 3]}).json()
    assert len(single["data"]) == 1 and single["usage"]["prompt_tokens"] == 3
    assert single["data"][0]["embedding"] == tokens["data"][0]["embedding"]


def test_it_lists_models(mock: MockServerThread) -> None:
    reply = request(mock, "/v1/models", method="GET")
    assert reply.status == 200
    body = reply.json()
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == list(MockConfig().models)
    assert body["data"][0] == {"id": "gpt-4.1", "object": "model", "created": 1700000000, "owned_by": "mock"}


def test_it_returns_openai_errors_for_unknown_paths(mock: MockServerThread) -> None:
    assert_openai_error(request(mock, "/v1/nope", body={}), 404, "invalid_request_error")
    assert_openai_error(request(mock, "/", method="GET"), 404, "invalid_request_error")
    assert_openai_error(request(mock, CHAT, method="GET"), 405, "invalid_request_error")


def test_it_requires_the_api_key_when_configured(secured_mock: MockServerThread) -> None:
    reply = chat(secured_mock)
    error = assert_openai_error(reply, 401, "invalid_request_error")
    assert error["code"] == "invalid_api_key"
    reply = chat(secured_mock, headers={"Authorization": "Bearer wrong"})
    assert_openai_error(reply, 401, "invalid_request_error")
    reply = request(secured_mock, "/v1/models", method="GET")
    assert reply.status == 401

    assert chat(secured_mock, headers={"Authorization": "Bearer sk-mock-secret"}).status == 200
    assert request(secured_mock, "/_mock/requests", method="GET").status == 200


def test_it_echoes_the_request_id(mock: MockServerThread) -> None:
    rid = {"X-Request-ID": "req-123"}
    assert chat(mock, headers=rid).headers["X-Request-ID"] == "req-123"
    assert chat(mock, stream=True, headers=rid).headers["X-Request-ID"] == "req-123"
    assert chat(mock, headers={**rid, "X-Mock-Status": "500"}).headers["X-Request-ID"] == "req-123"
    assert request(mock, CHAT, raw=b"{", headers=rid).headers["X-Request-ID"] == "req-123"
    assert request(mock, "/nope", method="GET", headers=rid).headers["X-Request-ID"] == "req-123"
    assert "X-Request-ID" not in chat(mock).headers


def test_it_logs_recent_requests(mock: MockServerThread) -> None:
    assert request(mock, "/_mock/requests", method="DELETE").status == 200
    assert request(mock, "/_mock/requests", method="GET").json() == {"requests": []}

    chat(mock, headers={"X-Mock-Status": "500", "X-Custom": "Value"})
    request(mock, CHAT, raw=b"{broken")
    request(mock, "/v1/models", method="GET")

    logged = request(mock, "/_mock/requests", method="GET").json()["requests"]
    assert [(item["method"], item["path"]) for item in logged] == [
        ("POST", CHAT),
        ("POST", CHAT),
        ("GET", "/v1/models"),
    ]
    first = logged[0]
    assert first["headers"]["x-mock-status"] == "500" and first["headers"]["x-custom"] == "Value"
    assert first["json"] == {"model": "gpt-4.1", "messages": USER_HELLO}
    assert logged[1]["json"] is None and logged[2]["json"] is None

    async def flood(session: aiohttp.ClientSession) -> None:
        for _ in range(205):
            async with session.get(mock.url + "/v1/models") as response:
                await response.read()

    run(flood)
    logged = request(mock, "/_mock/requests", method="GET").json()["requests"]
    assert len(logged) == 200
    assert request(mock, "/_mock/requests", method="DELETE").json() == {"cleared": 200}


# ---------------------------------------------------------------------------------------------
# Embedding and running modes
# ---------------------------------------------------------------------------------------------


def test_it_starts_inside_the_current_event_loop() -> None:
    async def scenario() -> tuple[Reply, float]:
        running = await start_server(port=0, config=MockConfig(tokens=2))
        try:
            assert running.port > 0 and running.url == f"http://127.0.0.1:{running.port}"
            async with aiohttp.ClientSession() as session:
                reply = await fetch(session, running.url + CHAT, body={"model": "m", "messages": USER_HELLO})
                hung = asyncio.ensure_future(
                    fetch(
                        session,
                        running.url + CHAT,
                        body={"model": "m", "messages": USER_HELLO},
                        headers={"X-Mock-Hang": "1"},
                        timeout=30,
                    )
                )
                await asyncio.sleep(0.1)
                # close() ends the hung request instead of waiting for it.
                close_start = time.perf_counter()
                await running.close()
                close_seconds = time.perf_counter() - close_start
                with pytest.raises(aiohttp.ClientError):
                    await hung
        finally:
            await running.close()  # idempotent
        return reply, close_seconds

    reply, close_seconds = asyncio.run(scenario())
    assert reply.status == 200 and reply.json()["usage"]["completion_tokens"] == 2
    assert close_seconds < 0.9


def test_it_runs_as_a_module_from_the_command_line() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.mockserver", "--port", "0", "--tokens", "3", "--api-key", "k"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("mock provider listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1]
        reply = run(
            lambda session: fetch(
                session,
                url + CHAT,
                body={"model": "m", "messages": USER_HELLO},
                headers={"Authorization": "Bearer k"},
            )
        )
        assert reply.json()["usage"]["completion_tokens"] == 3
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None and process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------------------------
# Official SDK compatibility
# ---------------------------------------------------------------------------------------------


def test_it_is_compatible_with_the_openai_sdk(mock: MockServerThread) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=mock.url + "/v1", api_key="sk-anything", max_retries=0, timeout=5)

    completion = client.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "hello"}], max_tokens=5
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.prompt_tokens == 9
    assert completion.usage.completion_tokens == 5
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0

    stream = client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == completion.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 14

    # The SDK asks for base64 by default and decodes it; compare with the float form.
    embedded = client.embeddings.create(model="text-embedding-3-small", input=["abcd", "abcde"])
    as_floats = client.embeddings.create(
        model="text-embedding-3-small", input=["abcd", "abcde"], encoding_format="float"
    )
    assert [e.embedding for e in embedded.data] == [e.embedding for e in as_floats.data]
    assert len(embedded.data[0].embedding) == 8 and embedded.usage.prompt_tokens == 3

    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "[mock status=429 retry_after=1]"}]
        )
    assert [m.id for m in client.models.list()] == list(MockConfig().models)


def test_it_makes_parallel_tool_calls_in_chat(mock: MockServerThread) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=mock.url + "/v1", api_key="sk-anything", max_retries=0, timeout=5)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        },
        {"type": "function", "function": {"name": "get_time"}},
    ]
    messages = [{"role": "user", "content": "go [mock tool_calls=2 reasoning_tokens=3 cache_write_tokens=2]"}]
    completion = client.chat.completions.create(model="gpt-4.1", messages=messages, tools=tools)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "lorem"}),
        ("get_time", {"call": 1}),
    ]
    assert calls[0].id != calls[1].id
    call_tokens = sum((len(c.function.name) + 3) // 4 + (len(c.function.arguments) + 3) // 4 for c in calls)
    usage = completion.usage
    assert usage is not None and usage.completion_tokens == 3 + call_tokens
    assert (
        usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 3
    )
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cache_write_tokens == 2

    stream = client.chat.completions.create(model="gpt-4.1", messages=messages, tools=tools, stream=True)
    pieces: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for delta_call in chunk.choices[0].delta.tool_calls or []:
            entry = pieces.setdefault(delta_call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta_call.id or ""
            entry["name"] += (delta_call.function and delta_call.function.name) or ""
            entry["arguments"] += (delta_call.function and delta_call.function.arguments) or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and sorted(pieces) == [0, 1]
    assert [(p["name"], json.loads(p["arguments"])) for p in pieces.values()] == [
        ("get_weather", {"city": "lorem"}),
        ("get_time", {"call": 1}),
    ]

    forced = client.chat.completions.create(
        model="gpt-4.1",
        messages=USER_HELLO,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert [c.function.name for c in forced.choices[0].message.tool_calls or []] == ["get_time"]
    none = client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "[mock tool_calls=2]"}],
        tools=tools,
        tool_choice="none",
    )
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason == "stop"
    reply = chat(mock, [{"role": "user", "content": "[mock tool_calls=1]"}])
    assert_openai_error(reply, 400, "invalid_request_error", param="tool_calls")


def test_it_fails_a_chat_stream_mid_way_with_an_error_event(mock: MockServerThread) -> None:
    reply = chat(mock, stream=True, headers={"X-Mock-Error-After": "2"})
    assert json.loads(reply.events[-1])["error"]["type"] == "server_error" and "[DONE]" not in reply.events
    assert stream_content(reply.events[:-1]) == "lorem ipsum "

"""The OpenAI stream translator: bytes pass through untouched, usage is read and hidden."""

import orjson
import pytest

from gateway.providers import ProviderError
from gateway.providers.openai import MAX_DOCUMENT_BYTES, OpenAIStream


def sse(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


CONTENT = [
    sse({"id": "c", "model": "gpt-4.1-2025", "choices": [{"delta": {"content": w}}], "usage": None})
    for w in "abc"
]
USAGE = sse(
    {
        "id": "c",
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}},
    }
)
STREAM = b"".join(CONTENT) + USAGE + b"data: [DONE]\n\n"


@pytest.mark.parametrize("piece", [1, 7, 64, len(STREAM)])
def test_it_passes_chunks_through_byte_for_byte_however_the_bytes_arrive(piece):
    translator = OpenAIStream(client_wants_usage=True)
    out = (
        b"".join(translator.feed(STREAM[i : i + piece]) for i in range(0, len(STREAM), piece))
        + translator.finish()
    )
    assert out == STREAM
    assert (
        translator.usage.prompt_tokens,
        translator.usage.cached_tokens,
        translator.usage.completion_tokens,
    ) == (7, 2, 3)
    assert translator.done and translator.served_model == "gpt-4.1-2025"


def test_it_hides_the_usage_chunk_from_clients_that_did_not_ask():
    translator = OpenAIStream(client_wants_usage=False)
    out = translator.feed(STREAM) + translator.finish()
    assert out == b"".join(CONTENT) + b"data: [DONE]\n\n"
    assert translator.usage.reported and translator.usage.completion_tokens == 3


def test_it_understands_crlf_framing():
    translator = OpenAIStream(client_wants_usage=True)
    out = translator.feed(STREAM.replace(b"\n", b"\r\n"))
    assert out == STREAM and translator.done


def test_it_counts_content_chunks_for_the_estimate_when_usage_never_comes():
    translator = OpenAIStream(client_wants_usage=False)
    translator.feed(b"".join(CONTENT))
    assert translator.chunks == 3 and not translator.usage.reported and not translator.done


DOCUMENT = orjson.dumps(
    {
        "id": "c",
        "object": "chat.completion",
        "model": "gpt-4.1-2025",
        "choices": [{"message": {"role": "assistant", "content": "a whole answer"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4},
    }
)


@pytest.mark.parametrize("piece", [1, 16, len(DOCUMENT)])
def test_a_json_document_sent_for_a_stream_never_goes_out_and_its_usage_is_read(piece):
    translator = OpenAIStream(client_wants_usage=False)
    out = b"".join(translator.feed(DOCUMENT[i : i + piece]) for i in range(0, len(DOCUMENT), piece))
    assert out == b""
    with pytest.raises(ProviderError) as raised:
        translator.finish()
    assert raised.value.kind == "bad_response" and "instead of a stream" in raised.value.message
    assert (translator.usage.prompt_tokens, translator.usage.completion_tokens) == (9, 4)
    assert translator.usage.reported and translator.served_model == "gpt-4.1-2025"


def test_a_document_with_blank_lines_in_it_is_still_a_document():
    translator = OpenAIStream(client_wants_usage=False)
    assert translator.feed(b'\n{"error": {"message": "overloaded"}}\n\n') == b""
    with pytest.raises(ProviderError):
        translator.finish()


def test_an_html_page_sent_for_a_stream_never_goes_out():
    translator = OpenAIStream(client_wants_usage=False)
    assert translator.feed(b"<html><body>\n\nBad gateway</body></html>") == b""
    with pytest.raises(ProviderError):
        translator.finish()


def test_a_document_too_large_to_keep_fails_at_once():
    translator = OpenAIStream(client_wants_usage=False)
    translator.feed(b'{"choices": [')
    with pytest.raises(ProviderError):
        translator.feed(b" " * MAX_DOCUMENT_BYTES)


@pytest.mark.parametrize("start", [b": keep-alive\n\n", b"\n\n", b"event: message\n", b"retry: 100\n\n"])
def test_a_stream_may_begin_with_a_comment_blank_lines_or_another_field(start):
    translator = OpenAIStream(client_wants_usage=True)
    out = translator.feed(start + STREAM) + translator.finish()
    assert out.endswith(STREAM) and translator.done

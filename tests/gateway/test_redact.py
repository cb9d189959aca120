"""gateway.providers.base.redact: an upstream's text never carries a credential to a client or a log."""

import json

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.providers.base import redact, redact_credential
from gateway.providers.openai import OpenAIAdapter, OpenAIStream


@pytest.mark.parametrize(
    "secret",
    [
        "gsk_Q2x8vLk0aZ7m1NnPp3RrSsTtUuVvWwXx",
        "3f9a0c1e5b7d2a4c6e8f0a1b3c5d7e9f",  # a hex key
        "AIzaSyD-1234567890abcdefghijklmnopqrstu",
        "xai-abcdefghijklmnopqrstuvwxyz0123456789",
        "sk-ant-api03-abcdefghijklmnop",
        "th-abcdefghijkl0123456789abcdefghijklmnopqrstuvwxyzABCD",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    ],
)
def test_it_cuts_common_key_shapes(secret):
    assert secret not in redact(f"Incorrect API key provided: {secret}. See the docs.")


def test_it_cuts_the_providers_own_credential_whatever_its_shape():
    credential = "plain words? no: Zebra!Moon#42"
    text = redact(f"We rejected '{credential}' as a key", credential=credential)
    assert credential not in text and "rejected" in text


def test_it_cuts_a_word_quoting_part_of_the_credential():
    credential = "Zx9!Qw8@Er7#Ty6$Ui5%"
    assert "Qw8@Er7#Ty6$" not in redact("key prefix Qw8@Er7#Ty6$... is invalid", credential=credential)


def test_it_keeps_an_ordinary_message_readable():
    message = "Invalid value for 'temperature': must be between 0 and 2."
    assert redact(message) == message


@settings(max_examples=300, deadline=None)
@given(credential=st.text(min_size=8, max_size=80), before=st.text(max_size=200), after=st.text(max_size=200))
def test_it_never_lets_the_credential_through(credential, before, after):
    assume(credential.strip() == credential and "[redacted]" not in credential)
    assert credential not in redact(before + credential + after, credential=credential)


def test_an_upstream_400_that_quotes_the_credential_is_redacted():
    error = OpenAIAdapter().error(
        status=400,
        headers={},
        content=b'{"error": {"message": "bad key 9f8e7d6c5b4a39281706f5e4d3c2b1a0 for org"}}',
        credential="9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    )
    assert "9f8e7d6c5b4a" not in error.message and error.status == 400


def test_a_stream_event_that_quotes_the_credential_is_redacted():
    stream = OpenAIStream(client_wants_usage=False, credential="s3cr3t-Credential-value")
    out = stream.feed(b'data: {"error": {"message": "bad s3cr3t-Credential-value"}}\n\n')
    assert b"s3cr3t" not in out and b"[redacted]" in out


CREDENTIAL = "s3cr3t-Credential-value"


@pytest.mark.parametrize("piece", [1, 2, 5, 13])
def test_a_stream_event_quoting_the_credential_is_redacted_however_the_bytes_are_split(piece):
    events = (
        b'data: {"choices": [{"delta": {"content": "the key is s3cr3t-Credential-value"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    stream = OpenAIStream(client_wants_usage=False, credential=CREDENTIAL)
    out = b"".join(stream.feed(events[i : i + piece]) for i in range(0, len(events), piece)) + stream.finish()
    assert b"s3cr3t" not in out and b'"the key is [redacted]"' in out and stream.done


def test_the_served_model_of_a_stream_never_carries_the_credential():
    stream = OpenAIStream(client_wants_usage=False, credential=CREDENTIAL)
    stream.feed(b'data: {"model": "gpt s3cr3t-Credential-value", "choices": []}\n\n')
    assert stream.served_model == "gpt [redacted]"


def test_a_json_answer_quoting_the_credential_is_redacted_and_stays_json():
    answer = orjson.dumps({"choices": [{"message": {"content": f"I was sent {CREDENTIAL}."}}]})
    out = redact_credential(answer, CREDENTIAL)
    assert orjson.loads(out)["choices"][0]["message"]["content"] == "I was sent [redacted]."


def test_an_answer_that_does_not_quote_the_credential_is_the_same_object():
    answer = orjson.dumps({"choices": [{"message": {"content": "hello"}}]})
    assert redact_credential(answer, CREDENTIAL) is answer


@pytest.mark.parametrize(
    ("credential", "encode"),
    [
        ("ab/cd+ef/gh==", lambda value: json.dumps(value).replace("/", "\\/").encode()),  # PHP
        ("clé-secrète-42", lambda value: json.dumps(value).encode()),  # Python's ensure_ascii
        ('quote"and\\backslash', orjson.dumps),
    ],
)
def test_it_finds_the_credential_as_json_encoders_escape_it(credential, encode):
    answer = b'{"content": ' + encode(f"key {credential} here") + b"}"
    assert orjson.loads(redact_credential(answer, credential))["content"] == "key [redacted] here"


@pytest.mark.parametrize("placeholder", ["EMPTY", "ollama", "none"])
def test_a_placeholder_credential_cuts_no_words_out_of_answers(placeholder):
    answer = b'{"content": "run `ollama run llama3` with EMPTY or none"}'
    assert redact_credential(answer, placeholder) == answer


@settings(max_examples=300, deadline=None)
@given(
    credential=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x2FF),  # printable, some of it non-ASCII
        min_size=8,
        max_size=60,
    ),
    before=st.text(max_size=50),
    after=st.text(max_size=50),
    ascii_only=st.booleans(),
)
def test_no_json_string_quoting_the_credential_gets_through(credential, before, after, ascii_only):
    """Encoded by orjson or by Python's json (non-ASCII escaped): after redaction the credential is
    in neither the bytes nor the decoded text, and the answer still decodes."""
    assume(credential not in "[redacted]" and not {"[", "]"} & set(credential))  # the mark is no credential
    text = before + credential + after
    answer = json.dumps({"content": text}).encode() if ascii_only else orjson.dumps({"content": text})
    out = redact_credential(answer, credential)
    assert credential.encode() not in out
    assert credential not in orjson.loads(out)["content"]

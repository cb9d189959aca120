"""gateway.providers.base.redact: an upstream's text never carries a credential to a client or a log."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.providers.base import redact
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

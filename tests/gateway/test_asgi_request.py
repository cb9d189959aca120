"""gateway/asgi.py: the request and response objects of the /v1 handler — `request.headers` read from
the scope means what Django's HttpHeaders(META) means, and a response is released without Django's
request_finished signal."""

from __future__ import annotations

import io
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.core.signals import request_finished
from django.http import HttpResponse
from django.http.request import HttpHeaders
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gateway.asgi import ScopeHeaders, release

# Header names as a client may send them: hyphens, underscores (dropped: they could pass for
# hyphenated ones), repeats, the two names WSGI keeps unprefixed, upper case (a server lowercases them,
# but the class must not depend on it).
NAMES = st.sampled_from(
    [
        "authorization", "x-api-key", "content-type", "content-length", "x-request-id", "session_id",
        "x_api_key", "anthropic-version", "X-Claude-Code-Session-Id", "accept", "x-tollhouse-max-cost",
    ]
)  # fmt: skip
VALUES = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=20)
LOOKUPS = ["Authorization", "authorization", "X-API-KEY", "x_api_key", "Content-Type", "content_length",
           "session_id", "Session-Id", "x-request-id", "anthropic-version", "X-Claude-Code-Session-Id",
           "missing"]  # fmt: skip


def scope_of(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
        "headers": headers, "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=8))
def test_scope_headers_mean_what_djangos_headers_mean(pairs):
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]
    django_headers = HttpHeaders(ASGIRequest(scope_of(raw), io.BytesIO()).META)
    ours = ScopeHeaders(raw)
    assert dict(ours.items()) == dict(django_headers.items())
    for name in LOOKUPS:
        assert ours.get(name) == django_headers.get(name)
        assert ours.get(name, "default") == django_headers.get(name, "default")
        assert (name in ours) == (name in django_headers)


def test_repeated_headers_are_joined_in_the_order_sent():
    headers = ScopeHeaders([(b"accept", b"a"), (b"x-other", b"b"), (b"accept", b"c")])
    assert headers["Accept"] == headers.get("accept") == "a,c"


def test_a_released_response_runs_its_closers_and_sends_no_request_finished():
    finished: list[Any] = []

    def receiver(**kwargs: Any) -> None:
        finished.append(kwargs)

    request_finished.connect(receiver)
    try:
        response = HttpResponse(b"{}")
        ran: list[str] = []

        def broken() -> None:
            ran.append("broken")
            raise OSError("gone")

        response._resource_closers.extend([broken, lambda: ran.append("second")])
        release(response)
        assert ran == ["broken", "second"]  # one failing closer does not stop the next
        assert response.closed and not response._resource_closers
        assert finished == []
        HttpResponse(b"{}").close()  # what Django's own close() does, for contrast
        assert len(finished) == 1
    finally:
        request_finished.disconnect(receiver)

"""The OpenAI wire format as the mock writes it: the deterministic token accounting (prompt tokens
from text length, lorem-ipsum completion tokens), usage objects, response ids, the hash-derived
float32 embedding vectors, the canned malformed bodies and OpenAI-shaped error responses. Pure
functions and constants with no per-server state, shared by plans.py and the handlers in app.py."""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import os
import struct
import sys
from array import array
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

_LOREM_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut "
    "aliquip ex ea commodo consequat duis aute irure dolor in reprehenderit in voluptate velit esse "
    "cillum dolore eu fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt in "
    "culpa qui officia deserunt mollit anim id est laborum"
)
# One completion token = one word plus its trailing space.
_TOKENS: tuple[str, ...] = tuple(word + " " for word in _LOREM_TEXT.split(" "))

_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_DONE_EVENT = b"data: [DONE]\n\n"
_MALFORMED_CHAT = b'{"id": "chatcmpl-broken", "choices": ['
_MALFORMED_EMBEDDINGS = b'{"object": "list", "data": ['
_MALFORMED_EVENT = b"data: " + _MALFORMED_CHAT + b"\n\n"
_SYSTEM_FINGERPRINT = "fp_mock"

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def _tokens_for(text: str) -> int:
    return (len(text) + 3) // 4  # ceil(len / 4)


@functools.lru_cache(maxsize=512)
def _completion_text(n: int) -> str:
    count = len(_TOKENS)
    return "".join(_TOKENS[i % count] for i in range(n))


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def _usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
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


@functools.lru_cache(maxsize=1024)
def _embedding(key: str, dimensions: int) -> tuple[tuple[float, ...], str]:
    """Deterministic unit vector for ``key`` as (float32-exact floats, base64 of LE float32)."""
    raw = struct.unpack(f"<{dimensions}I", hashlib.shake_128(key.encode()).digest(4 * dimensions))
    values = [u / 2147483648.0 - 1.0 for u in raw]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    vector = array("f", (v / norm for v in values))
    floats = tuple(vector.tolist())  # float32-rounded, so it matches the base64 form exactly
    if sys.byteorder == "big":
        vector.byteswap()
    return floats, base64.b64encode(vector.tobytes()).decode("ascii")


def _error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def _error_response(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    if type_ is None:
        type_ = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = _error_body(message, type_, param, code)
    response = web.Response(status=status, body=body, headers=_JSON_HEADERS)
    if headers:
        response.headers.update(headers)
    return response


def _json_response(body: bytes) -> web.Response:
    return web.Response(body=body, headers=_JSON_HEADERS)


def _sse(payload: Any, event: str | None = None, *, crlf: bool = False) -> bytes:
    """One server-sent event: `event: <name>` (when named) and one `data:` line of JSON."""
    data = b"data: " + orjson.dumps(payload) + (b"\r\n\r\n" if crlf else b"\n\n")
    return b"event: " + event.encode() + b"\n" + data if event is not None else data


_SIGNATURE_KEY = b"tollhouse-mock-signature"


def _signature(*parts: str) -> str:
    """The opaque signature the mock puts on what it generated (an Anthropic thinking block, a
    Gemini thoughtSignature, a Responses encrypted reasoning item) and checks when it comes back:
    like the real providers, it rejects one it did not make for that very content."""
    digest = hashlib.sha256(_SIGNATURE_KEY)
    for part in parts:
        digest.update(b"\x00" + part.encode("utf-8", "surrogatepass"))
    return base64.b64encode(b"mock" + digest.digest()).decode("ascii")


def _halves(text: str) -> tuple[str, str]:
    """A tool call's arguments in two stream pieces (clients must join them)."""
    middle = len(text) // 2
    return text[:middle], text[middle:]

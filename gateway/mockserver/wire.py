"""The OpenAI wire format as the mock writes it: token counts, usage, ids, embeddings, error bodies."""

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

from gateway.mockserver.config import _ERROR_TYPES, _JSON_HEADERS, _TOKENS
from gateway.mockserver.directives import _BadRequest


def _message_text(message: Any, index: int) -> str:
    if not isinstance(message, dict):
        raise _BadRequest(f"messages[{index}] must be an object", param=f"messages[{index}]")
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise _BadRequest(
        f"messages[{index}].content must be a string, an array or null", param=f"messages[{index}].content"
    )


def _optional_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int subclass; JSON true is not a valid token limit.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _BadRequest(f"{name} must be a positive integer", param=name)
    return value


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

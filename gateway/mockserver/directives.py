"""Per-request directives: parsing of ``[mock ...]`` tokens in the prompt and ``X-Mock-*`` headers
(headers win), validation of each name and value against its allowed range, and the _BadRequest
exception that every validation step raises to produce a 400 (in the wire format of the endpoint) naming the offending
directive or parameter."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.mockserver.config import MAX_DELAY_MS, MAX_TOOL_CALLS


class _BadRequest(Exception):
    """A client error reported as a 400 in the endpoint's own error shape; raised deep in parsing,
    caught in the handler. `param` names the offending field or directive."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(slots=True)
class _Directives:
    status: int | None = None
    retry_after: str | None = None
    hang: bool = False
    malformed: bool = False
    drop: bool = False
    echo_credential: bool = False
    ignore_stream: bool = False
    drop_after: int | None = None
    hang_after: int | None = None
    ttft_ms: float | None = None
    chunk_ms: float | None = None
    tokens: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    # A fault script: the faults above apply to the first `fault_times` requests naming `fault_key`;
    # the requests after them are answered normally (500, 500, then 200: fault_times=2).
    fault_times: int | None = None
    fault_key: str | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int | None = None
    tool_calls: int | None = None
    error_after: int | None = None


# What a fault script switches off once its faults are spent.
FAULT_FIELDS = (
    "status",
    "retry_after",
    "hang",
    "malformed",
    "drop",
    "drop_after",
    "hang_after",
    "error_after",
)
_NO_DIRECTIVES = _Directives()
# (min, max) for the integer directives.
_INT_DIRECTIVES: dict[str, tuple[int, int]] = {
    "status": (400, 599),
    "drop_after": (0, 1_000_000),
    "hang_after": (0, 1_000_000),
    "tokens": (0, 1_000_000),
    "prompt_tokens": (0, 1_000_000_000),
    "cached_tokens": (0, 1_000_000_000),
    "fault_times": (0, 1_000_000),
    "cache_write_tokens": (0, 1_000_000_000),
    "cache_write_1h_tokens": (0, 1_000_000_000),
    "reasoning_tokens": (0, 1_000_000),
    "tool_calls": (0, MAX_TOOL_CALLS),
    "error_after": (0, 1_000_000),
}
_FAULT_KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_MS_DIRECTIVES = frozenset({"ttft_ms", "chunk_ms"})
_FLAG_DIRECTIVES = frozenset({"hang", "malformed", "drop", "echo_credential", "ignore_stream"})
_TRUE = frozenset({"", "1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_HEADER_PREFIX = "x-mock-"
_PROMPT_MARKER = "[mock"
_PROMPT_DIRECTIVE_RE = re.compile(r"\[mock(?=[\s,\]])([^\]]*)\]")
_INT_RE = re.compile(r"[0-9]+")


def _prompt_directives(text: str) -> dict[str, str | None]:
    """``[mock a=1, b]`` tokens in ``text`` -> {"a": "1", "b": None} (later tokens win)."""
    found: dict[str, str | None] = {}
    for match in _PROMPT_DIRECTIVE_RE.finditer(text):
        for item in re.split(r"[\s,]+", match.group(1)):
            if not item:
                continue
            name, sep, value = item.partition("=")
            found[name.lower().replace("-", "_")] = value if sep else None
    return found


def _header_directives(request: web.Request) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name, value in request.headers.items():
        if name[:7].lower() == _HEADER_PREFIX:
            found[name[7:].lower().replace("-", "_")] = value.strip()
    return found


def _parse_directives(request: web.Request, prompt_text: str | None) -> _Directives:
    raw = _prompt_directives(prompt_text) if prompt_text and _PROMPT_MARKER in prompt_text else {}
    raw.update(_header_directives(request))  # headers win over prompt text
    if not raw:
        return _NO_DIRECTIVES
    directives = _Directives()
    for name, value in raw.items():
        setattr(directives, name, _directive_value(name, value))
    if (directives.fault_times is None) != (directives.fault_key is None):
        raise _BadRequest("mock directives fault_times and fault_key go together", param="fault_times")
    return directives


def _directive_value(name: str, value: str | None) -> Any:
    def bad(expected: str) -> _BadRequest:
        return _BadRequest(f"invalid mock directive {name}={value!r}: expected {expected}", param=name)

    if name in _FLAG_DIRECTIVES:
        if value is None:
            return True
        lowered = value.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise bad("a boolean (1/0, true/false) or a bare flag")
    if name in _INT_DIRECTIVES:
        low, high = _INT_DIRECTIVES[name]
        if value is None or not _INT_RE.fullmatch(value) or not low <= int(value) <= high:
            raise bad(f"an integer in {low}..{high}")
        return int(value)
    if name in _MS_DIRECTIVES or name == "retry_after":
        limit = MAX_DELAY_MS if name in _MS_DIRECTIVES else 86_400.0
        try:
            number = float(value) if value is not None else math.nan
        except ValueError:
            number = math.nan
        if not 0 <= number <= limit:  # also rejects nan
            raise bad(f"a number in 0..{limit:.0f}")
        return value if name == "retry_after" else number
    if name == "fault_key":
        if value is None or not _FAULT_KEY_RE.fullmatch(value):
            raise bad("1 to 64 letters, digits or _.:-")
        return value
    raise _BadRequest(f"unknown mock directive {name!r}", param=name)

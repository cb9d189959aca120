"""Constants and the MockConfig of the mock provider."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4.1",
    "claude-sonnet-4.5",
    "gemini-2.5-flash",
    "deepseek-v3.2",
    "text-embedding-3-small",
)
REQUEST_LOG_SIZE = 200
HANG_MAX_S = 600.0
# How often a hung request re-checks its transport; only matters when the app runs under a
# runner without handler_cancellation (ours cancels the handler as soon as the client leaves).
HANG_POLL_S = 1.0
# Long enough for in-flight responses to finish on close(), short enough that stopping a test
# server never stalls a test run.
SHUTDOWN_TIMEOUT_S = 1.0
DEFAULT_EMBEDDING_DIMENSIONS = 8
MAX_EMBEDDING_DIMENSIONS = 8192
MAX_EMBEDDING_INPUTS = 2048
MAX_DELAY_MS = 600_000.0
# LLM prompts can be large; aiohttp's default 1 MiB body limit would reject long-context requests.
CLIENT_MAX_SIZE = 64 * 1024 * 1024

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


@dataclass(frozen=True)
class MockConfig:
    """Server-wide defaults; directives override the delays and token counts per request."""

    ttft_ms: float = 0.0
    chunk_ms: float = 0.0
    tokens: int = 16
    api_key: str | None = None
    models: tuple[str, ...] = DEFAULT_MODELS

    def __post_init__(self) -> None:
        if not (0 <= self.ttft_ms <= MAX_DELAY_MS and 0 <= self.chunk_ms <= MAX_DELAY_MS):
            raise ValueError(f"ttft_ms and chunk_ms must be within 0..{MAX_DELAY_MS:.0f}")
        if self.tokens < 0:
            raise ValueError("tokens must be >= 0")


DEFAULT_CONFIG = MockConfig()

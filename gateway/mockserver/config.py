"""Server-wide settings of the mock provider: MockConfig (default delays, token count, API key,
model list), the shared DEFAULT_CONFIG instance and the limits and timeouts the rest of the package
enforces (request log size, hang and shutdown timeouts, embedding and delay bounds, body size)."""

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
# Fault scripts (the fault_key directive) whose request counts are remembered; the oldest go first.
FAULT_KEYS_KEPT = 10_000
DEFAULT_EMBEDDING_DIMENSIONS = 8
MAX_EMBEDDING_DIMENSIONS = 8192
MAX_EMBEDDING_INPUTS = 2048
MAX_DELAY_MS = 600_000.0
# Parallel tool calls one answer may make (the tool_calls directive).
MAX_TOOL_CALLS = 16
# LLM prompts can be large; aiohttp's default 1 MiB body limit would reject long-context requests.
CLIENT_MAX_SIZE = 64 * 1024 * 1024


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

"""Issue 14: the dialect scenarios of the benchmark, and the medians of their interleaved rounds.

Each scenario is one way through the gateway: the client's dialect (the ingress endpoint), the
route's upstream wire format (which adapter the deployment uses), and the same call made straight to
the mock in that upstream format, for the overhead (gateway − direct, the same shape as the plain chat
path's). The mock answers every format with the same directives, so the upstream's own work is equal
across scenarios: 16 tokens at once for JSON, 20 ms to the first token and 2 ms between 8 tokens for
streams.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

import loadgen

PROMPT = "Say hello in one sentence. [mock tokens=16]"
STREAM_PROMPT = "Count slowly. [mock ttft_ms=20 chunk_ms=2 tokens=8]"
ANTHROPIC_VERSION = "2023-06-01"
MAX_TOKENS = 256

# The Responses route the bench registers (`manage.py provider_add` of kind openai-responses on the
# mock's /v1): the demo has no Responses upstream. Unpriced, so its calls cost nothing.
RESPONSES_PROVIDER = "mock-responses"
RESPONSES_MODEL = "gpt-5-bench"
RESPONSES_CREDENTIAL_ENV = "TOLLHOUSE_BENCH_MOCK_KEY"


def body(dialect: str, model: str, *, stream: bool) -> bytes:
    """A minimal request in ``dialect`` with the bench's prompt (the directives ride in the text)."""
    prompt = STREAM_PROMPT if stream else PROMPT
    if dialect == "openai_chat":
        doc: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    elif dialect == "anthropic_messages":
        doc = {"model": model, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": prompt}]}
    elif dialect == "openai_responses":
        doc = {"model": model, "input": prompt}
    else:
        raise ValueError(dialect)
    doc["stream"] = stream
    return json.dumps(doc).encode()


def headers(dialect: str, key: str) -> dict[str, str]:
    """Each dialect's own way of sending the key (Anthropic's x-api-key with its version header)."""
    if dialect == "anthropic_messages":
        return {"Content-Type": "application/json", "x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
    return {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}


PATHS = {
    "openai_chat": "/v1/chat/completions",
    "anthropic_messages": "/v1/messages",
    "openai_responses": "/v1/responses",
}
# The upstream wire format a deployment kind speaks, as a client dialect of the mock.
UPSTREAM_DIALECT = {
    "mock": "openai_chat",
    "anthropic": "anthropic_messages",
    "openai-responses": "openai_responses",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str  # for the report
    ingress: str  # the client's dialect
    upstream: str  # the deployment's kind
    model: str  # the route (public name); the mock is sent the same name

    @property
    def passthrough(self) -> bool:
        return UPSTREAM_DIALECT[self.upstream] == self.ingress

    @property
    def direct_dialect(self) -> str:
        return UPSTREAM_DIALECT[self.upstream]

    def request(self, target: str, *, base_url: str, key: str, stream: bool) -> dict[str, Any]:
        """url, headers, body and done marker of one call; target "gateway" or "direct" (the mock in the
        upstream's format: what the gateway itself sends up, give or take its rewrites)."""
        dialect = self.ingress if target == "gateway" else self.direct_dialect
        return {
            "url": base_url + PATHS[dialect],
            "headers": headers(dialect, key),
            "body": body(dialect, self.model, stream=stream),
            "done_marker": loadgen.DONE_MARKERS[dialect],
        }


SCENARIOS = (
    Scenario(
        "chat", "OpenAI chat → OpenAI chat (pass-through, the plain path)", "openai_chat", "mock", "gpt-4.1"
    ),
    Scenario(
        "chat_to_anthropic",
        "OpenAI chat → Anthropic (translated)",
        "openai_chat",
        "anthropic",
        "claude-sonnet-4.5",
    ),
    Scenario(
        "messages",
        "Anthropic /v1/messages → Anthropic (pass-through)",
        "anthropic_messages",
        "anthropic",
        "claude-sonnet-4.5",
    ),
    Scenario(
        "responses",
        "OpenAI /v1/responses → OpenAI Responses (pass-through)",
        "openai_responses",
        "openai-responses",
        RESPONSES_MODEL,
    ),
    Scenario(
        "messages_to_chat",
        "Anthropic /v1/messages → OpenAI chat (translated)",
        "anthropic_messages",
        "mock",
        "gpt-4.1",
    ),
)

METRICS = (
    "overhead_p50_ms",
    "overhead_p99_ms",
    "direct_p50_ms",
    "gateway_p50_ms",
    "rps",
    "p99_ms",
    "cpu_ms_per_request",
    "ttft_overhead_p50_ms",
    "ttft_overhead_p99_ms",
)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarise(rounds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per scenario: the median of each metric over the rounds, the c=32 throughput's spread
    ((max − min) / median), errors, and throughput and overhead relative to the plain chat path."""
    out: dict[str, dict[str, Any]] = {}
    for scenario in SCENARIOS:
        rows = [r for r in rounds if r["scenario"] == scenario.name]
        if not rows:
            continue
        entry: dict[str, Any] = {"rounds": len(rows), "errors": sum(r["errors"] for r in rows)}
        for metric in METRICS:
            entry[metric] = _median([r[metric] for r in rows if r.get(metric) is not None])
        rps = [r["rps"] for r in rows if r.get("rps")]
        med = statistics.median(rps) if rps else None
        entry["rps_spread_pct"] = round((max(rps) - min(rps)) / med * 100, 1) if med else None
        out[scenario.name] = entry
    chat = out.get("chat")
    if chat:
        for entry in out.values():
            if chat.get("rps") and entry.get("rps"):
                entry["rps_vs_chat"] = round(entry["rps"] / chat["rps"], 3)
            if chat.get("overhead_p50_ms") is not None and entry.get("overhead_p50_ms") is not None:
                entry["overhead_p50_vs_chat_ms"] = round(
                    entry["overhead_p50_ms"] - chat["overhead_p50_ms"], 3
                )
    return out

"""A small closed-loop HTTP load generator (asyncio + aiohttp) for the Tollhouse benchmark.

N workers share one keep-alive connection pool; each sends a request, waits for the whole answer,
and sends the next one, for a fixed number of requests and/or a fixed duration. Every request's
latency is taken with ``time.perf_counter_ns`` around the full exchange (send to last body byte),
so the figures at concurrency 1 are precise per request. For streams (``--stream``) it also records
the time to the first SSE event carrying text (time to first token: a chat chunk's ``delta.content``,
an Anthropic ``content_block_delta`` text delta, or a Responses ``response.output_text.delta``) and
checks that the stream ends with its dialect's terminal event (``LoadSpec.done_marker``: ``data:
[DONE]`` for OpenAI chat, ``event: message_stop`` for Anthropic, ``event: response.completed``).

Standalone::

    python bench/loadgen.py --url http://127.0.0.1:8000/v1/chat/completions \
        --header 'Authorization: Bearer th-...' --body-file body.json --concurrency 32 --duration 10

Importable: build a :class:`LoadSpec` and call :func:`run` (sync) or :func:`run_async`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

try:  # orjson is much faster; the loadgen shares a core with the mock, so its own CPU matters
    import orjson

    _loads: Any = orjson.loads
except ImportError:  # pragma: no cover - the project venv has orjson
    _loads = json.loads

_DONE = b"data: [DONE]"
# The terminal event of each streaming dialect, as it appears on the wire.
DONE_MARKERS = {
    "openai_chat": _DONE,
    "anthropic_messages": b"event: message_stop",
    "openai_responses": b"event: response.completed",
}


@dataclass(frozen=True)
class LoadSpec:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    concurrency: int = 1
    # Stop after this many measured requests, or after duration_s, whichever comes first
    # (at least one of the two must be set).
    requests: int | None = None
    duration_s: float | None = None
    # Warm-up runs over the same connections first and is not recorded.
    warmup_requests: int = 0
    warmup_s: float = 0.0
    stream: bool = False
    timeout_s: float = 30.0
    # Response headers to look for: each 200 answer that carries all of them is counted
    # (LoadResult.with_headers), e.g. to show that every governed call got its x-ratelimit-* headers.
    expect_headers: tuple[str, ...] = ()
    # What a complete stream carries (its dialect's terminal event); see DONE_MARKERS.
    done_marker: bytes = b"data: [DONE]"

    def __post_init__(self) -> None:
        if self.requests is None and self.duration_s is None:
            raise ValueError("set requests and/or duration_s")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")


def percentile(sorted_values: Sequence[int | float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence (no interpolation): an observed value."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


@dataclass
class LoadResult:
    concurrency: int
    elapsed_s: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)  # successful requests only
    ttft_ns: list[int] = field(default_factory=list)  # successful streams only
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # transport errors, broken streams
    warmup_completed: int = 0  # requests sent during the (unrecorded) warm-up
    with_headers: int = 0  # 200 answers carrying every one of LoadSpec.expect_headers

    @property
    def completed(self) -> int:
        """Requests that ended, successfully or not (= requests the server saw, give or take)."""
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def ok(self) -> int:
        return len(self.latencies_ns)

    @property
    def error_count(self) -> int:
        return self.completed - self.ok

    @property
    def rps(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_ms(self, p: float) -> float:
        return percentile(sorted(self.latencies_ns), p) / 1e6

    def ttft_ms(self, p: float) -> float:
        return percentile(sorted(self.ttft_ns), p) / 1e6

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ns)
        out: dict[str, Any] = {
            "concurrency": self.concurrency,
            "elapsed_s": round(self.elapsed_s, 3),
            "completed": self.completed,
            "ok": self.ok,
            "errors": self.error_count,
            "rps": round(self.rps, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "error_kinds": dict(self.errors),
            "with_headers": self.with_headers,
            "latency_ms": _dist_ms(lat),
        }
        if self.ttft_ns:
            out["ttft_ms"] = _dist_ms(sorted(self.ttft_ns))
        return out


def _dist_ms(sorted_ns: Sequence[int]) -> dict[str, float]:
    if not sorted_ns:
        return {}
    return {
        "min": round(sorted_ns[0] / 1e6, 3),
        "p50": round(percentile(sorted_ns, 50) / 1e6, 3),
        "p90": round(percentile(sorted_ns, 90) / 1e6, 3),
        "p99": round(percentile(sorted_ns, 99) / 1e6, 3),
        "max": round(sorted_ns[-1] / 1e6, 3),
        "mean": round(sum(sorted_ns) / len(sorted_ns) / 1e6, 3),
    }


def _has_text(chunk: Any) -> bool:
    """True when one parsed SSE payload carries generated text, in any of the three dialects."""
    if not isinstance(chunk, dict):
        return False
    choices = chunk.get("choices")
    if choices and isinstance(choices[0], dict):
        return bool((choices[0].get("delta") or {}).get("content"))
    kind = chunk.get("type")
    if kind == "content_block_delta":  # Anthropic
        return bool((chunk.get("delta") or {}).get("text"))
    if kind == "response.output_text.delta":  # OpenAI Responses
        return bool(chunk.get("delta"))
    return False


def _first_token_in(buffer: bytes) -> bool:
    """True once ``buffer`` holds a complete SSE event whose payload carries text (see _has_text)."""
    for event in buffer.split(b"\n\n")[:-1]:  # the last piece may be incomplete
        for line in event.split(b"\n"):  # Anthropic and Responses put an `event:` line first
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                continue
            try:
                chunk = _loads(payload)
            except ValueError:
                continue
            if _has_text(chunk):
                return True
    return False


async def _one(session: aiohttp.ClientSession, spec: LoadSpec, result: LoadResult) -> None:
    """One request, recorded into ``result``."""
    started = time.perf_counter_ns()
    marker = spec.done_marker
    ttft: int | None = None
    has_headers = False
    try:
        async with session.post(spec.url, data=spec.body, headers=spec.headers) as response:
            status = response.status
            if spec.expect_headers:
                has_headers = all(name in response.headers for name in spec.expect_headers)
            complete = True
            if spec.stream and status == 200:
                buffer, tail, complete = b"", b"", False
                async for data in response.content.iter_any():
                    if ttft is None:
                        buffer += data
                        if _first_token_in(buffer):
                            ttft = time.perf_counter_ns() - started
                            buffer = b""
                    # The marker may straddle two reads: keep a few bytes of the previous one.
                    if marker in tail + data:
                        complete = True
                    tail = data[-len(marker) :]
            else:
                await response.read()
        elapsed = time.perf_counter_ns() - started
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        result.errors[type(exc).__name__] += 1
        return
    if not complete:
        result.errors["stream_incomplete"] += 1
        return
    if status == 200 and spec.stream and ttft is None:
        result.errors["stream_without_token"] += 1
        return
    result.statuses[status] += 1
    if status == 200:
        result.latencies_ns.append(elapsed)
        result.with_headers += has_headers
        if ttft is not None:
            result.ttft_ns.append(ttft)


async def _drive(
    session: aiohttp.ClientSession,
    spec: LoadSpec,
    result: LoadResult,
    count: int | None,
    duration_s: float | None,
) -> float:
    """Run ``spec.concurrency`` workers until ``count`` requests are taken or time is up; returns seconds."""
    remaining = [count if count is not None else -1]  # -1: no count limit
    deadline = time.perf_counter() + duration_s if duration_s is not None else math.inf

    async def worker() -> None:
        # The event loop is single-threaded, so the shared counter needs no lock.
        while remaining[0] != 0 and time.perf_counter() < deadline:
            if remaining[0] > 0:
                remaining[0] -= 1
            await _one(session, spec, result)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    return time.perf_counter() - started


async def run_async(spec: LoadSpec) -> LoadResult:
    connector = aiohttp.TCPConnector(limit=spec.concurrency, limit_per_host=spec.concurrency)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warmup = LoadResult(concurrency=spec.concurrency)
        if spec.warmup_requests or spec.warmup_s:
            await _drive(session, spec, warmup, spec.warmup_requests or None, spec.warmup_s or None)
        result = LoadResult(concurrency=spec.concurrency, warmup_completed=warmup.completed)
        result.elapsed_s = await _drive(session, spec, result, spec.requests, spec.duration_s)
        return result


def run(spec: LoadSpec) -> LoadResult:
    """Run a load in a fresh event loop (uvloop when installed: less client-side overhead)."""
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(run_async(spec))


# --- command line -------------------------------------------------------------------------------


def _parse_headers(values: Sequence[str]) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep:
            raise SystemExit(f"--header must look like 'Name: value', got {value!r}")
        headers[name.strip()] = content.strip()
    return headers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", "-c", type=int, default=1)
    parser.add_argument("--duration", type=float, help="seconds to run (measured part)")
    parser.add_argument("--requests", "-n", type=int, help="number of measured requests")
    parser.add_argument("--warmup-requests", type=int, default=0)
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of warm-up")
    parser.add_argument("--header", "-H", action="append", default=[], help="'Name: value' (repeatable)")
    body = parser.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="request body (JSON text)")
    body.add_argument("--body-file", type=Path, help="file holding the request body")
    parser.add_argument("--stream", action="store_true", help="read SSE answers; record time to first token")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    args = parser.parse_args(argv)
    if args.duration is None and args.requests is None:
        parser.error("give --duration and/or --requests")

    spec = LoadSpec(
        url=args.url,
        body=args.body.encode() if args.body is not None else args.body_file.read_bytes(),
        headers=_parse_headers(args.header),
        concurrency=args.concurrency,
        requests=args.requests,
        duration_s=args.duration,
        warmup_requests=args.warmup_requests,
        warmup_s=args.warmup,
        stream=args.stream,
        timeout_s=args.timeout,
    )
    result = run(spec)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        lat = summary["latency_ms"]
        print(
            f"{result.completed} requests in {result.elapsed_s:.2f} s at concurrency {result.concurrency}: "
            f"{result.rps:.1f} requests/s, {result.error_count} errors"
        )
        print(f"  statuses {summary['statuses']}  transport/stream errors {summary['error_kinds']}")
        if lat:
            print(f"  latency ms: p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}")
        if "ttft_ms" in summary:
            t = summary["ttft_ms"]
            print(f"  time to first token ms: p50 {t['p50']}  p90 {t['p90']}  p99 {t['p99']}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

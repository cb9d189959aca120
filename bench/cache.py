"""The response cache's benchmark (issue 16): a cache hit next to the plain path.

    .venv/bin/python bench/cache.py [--quick] [--rounds N]

Set up as bench/run.py does (a fresh database, the mock, one gateway process on core 0, the load
generator on core 1), plus a key issued with `key_issue --cache`. Each round measures, in the same
gateway process and in a rotating order:
- chat, plain: the demo key (no cache), OpenAI chat passed through to the mock: the plain path;
- chat, hit: the same request with the cache key; the first call of the run stored the answer, so
  every measured call is a hit (the sanity check asserts `x-tollhouse-cache: hit`);
- messages, hit: the same question in Anthropic's dialect, rendered from the same kind of entry;
- the chat stream, plain and hit (time to first byte and to the end).
c=1 gives the latency (p50 / p99); c=32 for a few seconds gives requests/s and the gateway's CPU per
request. Writes the "response cache" section of REPORT.md (between its markers; bench/run.py keeps it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dialects
import loadgen
import procs
import run

START, END = "<!-- cache:start -->", "<!-- cache:end -->"
PROMPT = "Say hello in one sentence. [mock tokens=16]"
STREAM_PROMPT = "Count slowly. [mock ttft_ms=20 chunk_ms=2 tokens=32]"

# name, label, dialect, key ("plain": the demo key, "cache": the key with the cache), stream
SCENARIOS = (
    ("chat_plain", "chat, plain path (no cache; pass-through to the mock)", "openai_chat", "plain", False),
    ("chat_hit", "chat, cache hit", "openai_chat", "cache", False),
    ("messages_hit", "Anthropic messages, cache hit", "anthropic_messages", "cache", False),
    ("chat_stream_plain", "chat stream, plain path", "openai_chat", "plain", True),
    ("chat_stream_hit", "chat stream, cache hit", "openai_chat", "cache", True),
)


def body(dialect: str, *, stream: bool) -> bytes:
    prompt = STREAM_PROMPT if stream else PROMPT
    doc: dict[str, Any] = {
        "model": run.MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    }
    if dialect == "anthropic_messages" or not stream:
        doc["max_tokens"] = dialects.MAX_TOKENS  # the same key in both dialects
    return json.dumps(doc).encode()


class CacheBench:
    def __init__(self, bench: run.Bench, *, requests: int, stream_requests: int, tput_s: int) -> None:
        self.bench = bench
        self.requests = requests
        self.stream_requests = stream_requests
        self.tput_s = tput_s
        self.cache_key = ""

    def setup(self) -> None:
        bench = self.bench
        lines = bench._manage("key_issue", "--tenant", run.DEMO_TENANT, "--name", "bench-cache", "--cache")
        self.cache_key = lines.strip().splitlines()[-1]
        for name, _, dialect, key, stream in SCENARIOS:
            first = self._one(dialect, key, stream)
            second = self._one(dialect, key, stream)
            want = "hit" if key == "cache" else None
            if second != want:
                raise run.SetupError(
                    f"{name}: x-tollhouse-cache was {second!r} (first {first!r}), not {want!r}"
                )

    def _one(self, dialect: str, key: str, stream: bool) -> str | None:
        call = self._call(dialect, key, stream)
        request = urllib.request.Request(
            call["url"], data=call["body"], headers=call["headers"], method="POST"
        )
        self.bench.gateway_requests += 1  # the usage check counts every call the gateway answered
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.headers.get("x-tollhouse-cache")

    def _call(self, dialect: str, key: str, stream: bool) -> dict[str, Any]:
        raw = self.cache_key if key == "cache" else self.bench.api_key
        return {
            "url": self.bench.gateway_url + dialects.PATHS[dialect],
            "headers": dialects.headers(dialect, raw),
            "body": body(dialect, stream=stream),
            "done_marker": loadgen.DONE_MARKERS[dialect],
        }

    def _load(self, dialect: str, key: str, stream: bool, **kwargs: Any) -> dict[str, Any]:
        call = self._call(dialect, key, stream)
        spec = loadgen.LoadSpec(
            url=call["url"], body=call["body"], headers=call["headers"], done_marker=call["done_marker"],
            stream=stream, **kwargs,
        )  # fmt: skip
        result = loadgen.run(spec)
        self.bench.gateway_requests += result.completed + result.warmup_completed
        return result.summary()

    def round(self, number: int) -> list[dict[str, Any]]:
        rows = []
        shift = (number - 1) % len(SCENARIOS)
        for name, _, dialect, key, stream in SCENARIOS[shift:] + SCENARIOS[:shift]:
            print(f"[bench]   cache round {number}: {name} ...", flush=True)
            count = self.stream_requests if stream else self.requests
            c1 = self._load(dialect, key, stream, requests=count, warmup_requests=max(count // 10, 1))
            row: dict[str, Any] = {
                "round": number,
                "scenario": name,
                "p50_ms": c1["latency_ms"].get("p50"),
                "p99_ms": c1["latency_ms"].get("p99"),
                "ttft_p50_ms": c1.get("ttft_ms", {}).get("p50"),
                "errors": c1["errors"],
            }
            if not stream:
                cpu_before = procs.cpu_seconds(self.bench.gateway_pid)
                tput = self._load(dialect, key, stream, concurrency=32, duration_s=self.tput_s)
                cpu_s = procs.cpu_seconds(self.bench.gateway_pid) - cpu_before
                row["rps"] = tput["rps"]
                row["cpu_ms_per_request"] = (
                    round(cpu_s * 1000 / tput["completed"], 3) if tput["completed"] else None
                )
                row["errors"] += tput["errors"]
            rows.append(row)
        return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, label, *_ in SCENARIOS:
        mine = [r for r in rows if r["scenario"] == name]
        entry: dict[str, Any] = {
            "label": label,
            "rounds": len(mine),
            "errors": sum(r["errors"] for r in mine),
        }
        for metric in ("p50_ms", "p99_ms", "ttft_p50_ms", "rps", "cpu_ms_per_request"):
            values = [r[metric] for r in mine if r.get(metric) is not None]
            entry[metric] = round(statistics.median(values), 3) if values else None
        rps = [r["rps"] for r in mine if r.get("rps")]
        entry["rps_spread_pct"] = (
            round((max(rps) - min(rps)) / statistics.median(rps) * 100, 1) if len(rps) > 1 else None
        )
        out[name] = entry
    return out


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:,}" if isinstance(value, int | float) else str(value)


def section(summary: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    plain, hit = summary.get("chat_plain", {}), summary.get("chat_hit", {})
    lines = [
        START,
        "## Response cache: a hit next to the plain path",
        "",
        f"`bench/cache.py` ({meta['mode']}, {meta['rounds']} rounds, {meta['generated_at']}; load average "
        f"{' '.join(meta['loadavg_start'])} at the start, {' '.join(meta['loadavg_end'])} at the end). "
        "One gateway process on core 0 (`manage.py serve`, Redis for counters, usage and the cache), the "
        "mock and the load generator on core 1. Medians of the rounds; c=1 for latency, c=32 for "
        f"{meta['tput_s']} s for requests/s and the gateway's CPU per request.",
        "",
        "| path | c=1 p50 ms | c=1 p99 ms | stream TTFT p50 ms | c=32 req/s (spread) | gateway CPU ms / request | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in summary.values():
        spread = f" ({entry['rps_spread_pct']} %)" if entry.get("rps_spread_pct") is not None else ""
        rps = _cell(entry.get("rps")) + spread if entry.get("rps") is not None else "–"
        lines.append(
            f"| {entry['label']} | {_cell(entry['p50_ms'])} | {_cell(entry['p99_ms'])} | "
            f"{_cell(entry['ttft_p50_ms'])} | {rps} | {_cell(entry['cpu_ms_per_request'])} | {entry['errors']} |"
        )
    if (
        plain.get("rps")
        and hit.get("rps")
        and plain.get("cpu_ms_per_request")
        and hit.get("cpu_ms_per_request")
    ):
        lines += [
            "",
            f"A chat hit: {hit['rps'] / plain['rps']:.2f}x the plain path's requests/s, "
            f"{hit['cpu_ms_per_request'] - plain['cpu_ms_per_request']:+.3f} ms of gateway CPU per request "
            "(the lookup is one Redis GET; a hit renders the stored canonical answer in the client's dialect "
            "instead of relaying the upstream's bytes, and never waits for the upstream).",
        ]
    if meta.get("note"):
        lines += ["", meta["note"]]
    lines.append(END)
    return "\n".join(lines)


def write_section(text: str) -> None:
    report = run.REPORT_PATH
    previous = report.read_text() if report.exists() else "# Benchmark report\n"
    if START in previous and END in previous:
        head, rest = previous.split(START, 1)
        updated = head + text + rest.split(END, 1)[1]
    else:
        updated = previous.rstrip("\n") + "\n\n" + text + "\n"
    report.write_text(updated)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The response cache's benchmark (a section of REPORT.md).")
    parser.add_argument("--quick", action="store_true", help="a short run (the box is shared)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, --quick 2)")
    parser.add_argument("--note", default="", help="a sentence added to the section (how the box was)")
    parser.add_argument(
        "--database", default=run.DB_NAME, help=f"the database to (re)create (default {run.DB_NAME})"
    )
    parser.add_argument("--redis-url", default=run.REDIS_URL, help=f"flushed first (default {run.REDIS_URL})")
    args = parser.parse_args(argv)
    # Another checkout's benchmark may be using the defaults on a shared box.
    run.DB_NAME, run.REDIS_URL = args.database, args.redis_url
    run.DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{args.database}"
    rounds = args.rounds or (2 if args.quick else 3)
    plan = run.QUICK if args.quick else run.FULL
    pin = procs.pinning_available()
    started, t0 = datetime.now(tz=UTC), time.monotonic()
    loadavg_start = Path("/proc/loadavg").read_text().split()[:3]
    with procs.ProcessGroups() as groups:
        bench = run.Bench(plan=plan, groups=groups, pin=pin)
        try:
            bench.setup()
            measure = CacheBench(
                bench,
                requests=200 if args.quick else 1000,
                stream_requests=20 if args.quick else 100,
                tput_s=3 if args.quick else 8,
            )
            measure.setup()
            rows: list[dict[str, Any]] = []
            for number in range(1, rounds + 1):
                rows += measure.round(number)
                bench.check_gateway_alive()
        except run.SetupError as exc:
            print(f"[bench] setup failed: {exc}", file=sys.stderr)
            return 2
        finally:
            groups.stop_all()
    summary = summarise(rows)
    meta = {
        "mode": "quick" if args.quick else "full",
        "rounds": rounds,
        "generated_at": started.isoformat(timespec="seconds"),
        "loadavg_start": loadavg_start,
        "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
        "tput_s": 3 if args.quick else 8,
        "note": args.note,
    }
    run.OUT_DIR.mkdir(parents=True, exist_ok=True)
    (run.OUT_DIR / "cache.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "summary": summary}, indent=2)
    )
    write_section(section(summary, meta))
    print(f"[bench] cache done in {round(time.monotonic() - t0, 1)} s: {run.REPORT_PATH}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

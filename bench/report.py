"""Render bench/REPORT.md from the results dict that run.py also writes to bench/out/results.json."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None or value == "":
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip()


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _verdict(target: dict[str, Any]) -> str:
    measured, limit, op, unit = target["measured"], target["limit"], target["op"], target["unit"]
    if target["passed"] is None:
        return "n/a (not measured)"
    if op == "==":
        return "PASS" if target["passed"] else f"MISS ({_f(measured)} {unit})"
    gap = abs(measured - limit)
    if target["passed"]:
        return f"PASS ({_f(float(gap))} {unit} to spare)"
    ratio = measured / limit if limit else 0.0
    return f"MISS by {_f(float(gap))} {unit} ({ratio:.2f}x the limit)"


def render(r: dict[str, Any]) -> str:
    meta = r.get("meta", {})
    m = meta.get("machine", {})
    plan = meta.get("plan", {})
    lines: list[str] = [
        "# Tollhouse benchmark report",
        "",
        f"Generated {meta.get('generated_at', '?')} by `{meta.get('command', 'bench/run.py')}` (mode: "
        f"**{meta.get('mode')}**, {_f(meta.get('run_seconds'), 0)} s). Raw figures: `bench/out/results.json`. "
        f"Load average {' '.join(meta.get('loadavg_start', ['?']))} before and "
        f"{' '.join(meta.get('loadavg_end', ['?']))} after the run (the machine may be shared with other work)"
        + _other_work(meta.get("other_work_cores"), m.get("nproc"))
        + ".",
        "",
    ]
    if r.get("errors"):
        lines += ["**The run did not complete:** " + "; ".join(r["errors"]), ""]

    # -- machine and settings --------------------------------------------------------------------
    packages = ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items())
    pg = meta.get("postgres_version")
    pg_text = f"{pg // 10000}.{pg % 10000}" if isinstance(pg, int) else "?"
    lines += ["## Machine", ""]
    lines += _table(
        ["", ""],
        [
            ["CPU", f"{m.get('cpu_model')}, nproc {m.get('nproc')}"],
            ["Memory", _f(m.get("memory_gb"), 1, "GB")],
            ["Kernel", str(m.get("kernel"))],
            ["Python", str(m.get("python"))],
            ["Packages", packages],
            ["PostgreSQL / Redis", f"{pg_text} / {meta.get('redis_version', '?')}"],
            ["Load tool", str(m.get("wrk") or "wrk not installed: bundled generator")],
            ["Commit", f"{m.get('git_commit') or '?'} (plus whatever was uncommitted in the checkout)"],
        ],
    )
    pinned = meta.get("pinned")
    tool = meta.get("throughput_tool")
    lines += [
        "",
        "## Settings",
        "",
        f"- Gateway: `{meta.get('gateway_command', '?')}`. Production profile: PostgreSQL database "
        "`tollhouse_bench` (fresh), Redis db 14 (flushed), `TOLLHOUSE_EMBEDDED_MOCK=false`, DEBUG off, "
        "log level WARNING, default cache TTL and connection settings.",
        "- Mock provider: `python -m gateway.mockserver --port 0` with its defaults (no delay, 16 tokens)"
        + (", pinned to core 1." if pinned else "."),
        "- Load: the harness process (bundled aiohttp generator, uvloop) "
        + ("and wrk run on core 1 together with the mock; " if pinned else "runs unpinned; ")
        + f"throughput runs use **{tool}**"
        + (
            " (1 thread, one connection per unit of concurrency, Lua script for the POST body and a "
            "non-200 counter)"
            if tool == "wrk"
            else ""
        )
        + "; the concurrency-1 latency and streaming runs always use the bundled generator.",
        "- PostgreSQL and Redis are not pinned (they float over both cores)."
        if pinned
        else "- **No CPU pinning** (taskset missing or fewer than 2 usable cores): figures are noisier.",
        f"- Request: `POST /v1/chat/completions`, model `{meta.get('model')}`, one user message "
        f"`{meta.get('prompt')}`, non-stream; streaming runs use `{meta.get('stream_prompt')}`.",
        f"- Counts: c=1 latency {_f(plan.get('latency_requests'))} requests after "
        f"{_f(plan.get('latency_warmup'))} warm-up; streaming {_f(plan.get('stream_requests'))} after "
        f"{_f(plan.get('stream_warmup'))}; throughput {plan.get('tput_s')} s per gateway run after "
        f"{plan.get('tput_warmup_s')} s warm-up, {plan.get('direct_s')} s direct.",
        "",
        "## Results",
        "",
    ]

    # -- (a) latency -------------------------------------------------------------------------------
    lat = r.get("latency_c1", {})
    if lat:
        d, g = lat["direct"]["latency_ms"], lat["gateway"]["latency_ms"]
        o = lat.get("overhead_ms", {})
        lines += ["### (a) Latency at concurrency 1 (non-stream)", ""]
        lines += _table(
            ["", "p50 ms", "p90 ms", "p99 ms", "max ms", "requests", "errors"],
            [
                ["Direct to mock", _f(d.get("p50"), 3), _f(d.get("p90"), 3), _f(d.get("p99"), 3),
                 _f(d.get("max"), 3), _f(lat["direct"]["completed"]), _f(lat["direct"]["errors"])],
                ["Through gateway", _f(g.get("p50"), 3), _f(g.get("p90"), 3), _f(g.get("p99"), 3),
                 _f(g.get("max"), 3), _f(lat["gateway"]["completed"]), _f(lat["gateway"]["errors"])],
                ["**Overhead** (gateway − direct)", f"**{_f(o.get('p50'), 3)}**", _f(o.get("p90"), 3),
                 f"**{_f(o.get('p99'), 3)}**", "", "", ""],
            ],
        )  # fmt: skip
        sr = lat.get("gateway_self_reported", {})
        if sr.get("events"):
            lines += [
                "",
                f"Cross-check from the gateway's own usage events ({_f(sr['events'])} calls): in-view latency "
                f"p50 {_f(sr['latency_ms']['p50'], 3)} / p99 {_f(sr['latency_ms']['p99'], 3)} ms, of which "
                f"gateway time (`overhead_us`: latency minus upstream time) p50 {_f(sr['overhead_ms']['p50'], 3)}"
                f" / p99 {_f(sr['overhead_ms']['p99'], 3)} ms. This excludes uvicorn, the /v1 ASGI handler and "
                "DRF dispatch, which run outside the view; the client-side overhead above includes them.",
            ]
        lines.append("")

    # -- (b) throughput ----------------------------------------------------------------------------
    tp = r.get("throughput", {})
    if tp:
        lines += ["### (b) Throughput (closed loop)", ""]
        rows = []
        for name, label in (("gateway_c32", "Gateway c=32"), ("gateway_c64", "Gateway c=64"),
                            ("direct_c64", "Direct to mock c=64")):  # fmt: skip
            run = tp.get(name)
            if not run:
                continue
            res = run.get("resources", {})
            busy = res.get("core_busy", {})
            errs = _f(run["errors"])
            if run["errors"]:
                errs += f" ({run['non200']} non-200, transport {run['transport_errors'] or 0})"
            rows.append([
                label, _f(run["elapsed_s"], 1), _f(run["completed"]), f"**{_f(run['rps'], 1)}**",
                _f(run["latency_ms"].get("p50"), 2), _f(run["latency_ms"].get("p99"), 2), errs,
                _f(res.get("gateway_cores"), 2), _f(res.get("gateway_cpu_ms_per_request"), 2),
                _f(res.get("mock_cores"), 2), _pct(busy.get("0")), _pct(busy.get("1")),
            ])  # fmt: skip
        lines += _table(
            ["Run", "s", "requests", "req/s", "p50 ms", "p99 ms", "errors", "gateway CPU (cores)",
             "gateway CPU ms/req", "mock CPU (cores)", "core 0 busy", "core 1 busy"],
            rows,
        )  # fmt: skip
        lines += [
            "",
            "Gateway CPU = utime+stime of the uvicorn process (all threads) from /proc over the measured run; "
            "core busy = /proc/stat non-idle share (core 0 holds the gateway, core 1 the mock and the load "
            "generator; PostgreSQL and Redis float). The direct-to-mock run involves no gateway code: it is "
            "also this machine's speed reference, so compare absolute figures with another report only when "
            "its direct figures agree.",
            "",
        ]

    # -- (c) streaming -----------------------------------------------------------------------------
    st = r.get("streaming_c1", {})
    if st:
        d, g = st["direct"].get("ttft_ms", {}), st["gateway"].get("ttft_ms", {})
        o = st.get("ttft_overhead_ms", {})
        lines += ["### (c) Streaming: time to first token at concurrency 1", ""]
        lines += _table(
            ["", "TTFT p50 ms", "TTFT p90 ms", "TTFT p99 ms", "whole stream p50 ms", "streams", "errors"],
            [
                ["Direct to mock", _f(d.get("p50"), 3), _f(d.get("p90"), 3), _f(d.get("p99"), 3),
                 _f(st["direct"]["latency_ms"].get("p50"), 2), _f(st["direct"]["completed"]),
                 _f(st["direct"]["errors"])],
                ["Through gateway", _f(g.get("p50"), 3), _f(g.get("p90"), 3), _f(g.get("p99"), 3),
                 _f(st["gateway"]["latency_ms"].get("p50"), 2), _f(st["gateway"]["completed"]),
                 _f(st["gateway"]["errors"])],
                ["**TTFT overhead**", f"**{_f(o.get('p50'), 3)}**", _f(o.get("p90"), 3),
                 f"**{_f(o.get('p99'), 3)}**", "", "", ""],
            ],
        )  # fmt: skip
        lines += [
            "",
            "TTFT = from sending the request to receiving the first SSE event with non-empty "
            "`delta.content`; the mock is told to wait 20 ms before it, then 2 ms between 32 tokens.",
            "",
        ]

    # -- (d) memory --------------------------------------------------------------------------------
    mem = r.get("memory", {})
    if mem:
        lines += ["### (d) Gateway memory", ""]
        labels = {"start": "Before load (after /healthz)", "after_latency_run": "After the c=1 runs",
                  "end": "After the soak"}  # fmt: skip
        lines += _table(
            ["Moment", "gateway requests so far", "RSS MB", "peak RSS MB", "threads"],
            [
                [labels.get(k, k), _f(v["gateway_requests"]), _f(v["rss_mb"], 1), _f(v["peak_rss_mb"], 1),
                 _f(v["threads"])]
                for k, v in mem.items()
            ],
        )  # fmt: skip
        calls, events = r.get("gateway_requests_before_drain"), r.get("usage_stream_len")
        drained = (r.get("drain") or {}).get("rows")
        if calls is None or events is None:
            flag = "not compared"
        elif calls == events == (drained if drained is not None else events):
            flag = "**equal**"
        else:
            flag = f"**MISMATCH** ({events - calls:+,} events against the calls)"
        lines += [
            "",
            f"Usage rows against calls (main gateway, everything up to the drain): {_f(calls)} calls counted by the "
            f"clients (warm-ups and sanity calls included), {_f(events)} usage events in `th:usage:stream` (XLEN, "
            f"one per call; nothing drains it during the bench), {_f(drained)} rows written by the drain: {flag}.",
            "",
        ]

    lines += _governed(r.get("governed"))

    # -- targets -----------------------------------------------------------------------------------
    lines += ["## Targets", ""]
    lines += _table(
        ["Target", "Limit", "Measured", "Verdict"],
        [
            [t["name"], f"{t['op'].replace('<=', '≤').replace('>=', '≥')} {_f(t['limit'])} {t['unit']}",
             _f(t["measured"], 2, t["unit"]), _verdict(t) + (f"; {t['note']}" if t.get("note") else "")]
            for t in r.get("targets", [])
        ],
    )  # fmt: skip
    lines.append("")
    lines += _before_after(r.get("before_after"))
    lines += _dialects(r.get("dialects"), r.get("before_after"))

    # -- capacity ----------------------------------------------------------------------------------
    cap = r.get("capacity", {})
    rd = r.get("redis", {})
    if cap:
        by_cmd = ", ".join(f"{k} {v:,}" for k, v in rd.get("by_command", {}).items()) or "none"
        net = ", ".join(f"{k} {v:.2f}" for k, v in rd.get("net_by_command", {}).items()) or "none"
        noise = rd.get("noise_ops_per_s")
        lines += [
            "## Capacity model",
            "",
            f"- **Requests per second per gateway core: {_f(cap.get('rps_per_gateway_core'), 0)}** "
            f"(best run {cap['from_run']}: {_f(cap['rps'], 1)} req/s with the worker using "
            f"{_f(cap.get('gateway_cores_used'), 2)} of a core = {_f(cap.get('gateway_cpu_ms_per_request'), 2)} "
            "ms of gateway CPU per request). One uvicorn worker is one event loop on one core; with N "
            "workers on N cores expect at most N times this, as long as Redis and the upstream keep up.",
            f"- **Redis operations per request: {_f(rd.get('ops_per_request'), 2)}** "
            f"(`INFO commandstats` delta over {_f(rd.get('window_requests'))} gateway requests at c=1, "
            f"{_f(rd.get('window_s'), 1)} s. Raw calls in the window: {by_cmd} "
            f"({_f(rd.get('ops_per_request_raw'), 2)} per request; the harness's own INFO calls excluded)"
            + (
                f"; other clients of this Redis sent {_f(noise, 1)} ops/s while the gateway was idle "
                f"({_f(rd.get('noise_window_s'), 1)} s of direct-to-mock runs), subtracted per command"
                if noise
                else "; no background traffic was seen while the gateway was idle"
            )
            + f". Net per request: {net}; usage events per request "
            f"{_f(rd.get('usage_events_per_request'), 2)}). At "
            f"{_f(cap['rps'], 0)} req/s that is {_f(cap.get('redis_ops_per_s'), 0)} Redis ops/s; Redis spent "
            f"{_f(cap.get('redis_cpu_us_per_request'), 1)} µs CPU per request "
            f"({_f(cap.get('redis_cores_used'), 2)} of a core).",
            f"- **Database rows written per second at that rate: {_f(cap.get('db_rows_per_s'), 0)}** "
            "(one usage row per request). They are not written on the request path: the gateway XADDs "
            "each usage event to Redis and the Celery task `usage_drain` inserts them in batches of up to "
            "500; the drain was not running during the load. Keys, routes and prices are read from "
            "PostgreSQL once per cache TTL per process, not per request.",
            _drain_line(r.get("drain")),
            f"- **What saturates first: {cap.get('saturates_first')}.** Core 1 (mock + load generator) was "
            f"{_pct(cap.get('load_core_busy'))} busy in that run.",
            "",
        ]

    # -- profile (the main gateway's, without --baseline; with it, inside the before/after section) -------
    if r.get("profile"):
        lines += _profiles(r["profile"], None, heading="##")

    # -- method ------------------------------------------------------------------------------------
    lines += [
        "## How to read this",
        "",
        "- Percentiles are nearest-rank over the successful requests of a run (an observed value, no "
        "interpolation); wrk's come from its own histogram over all responses.",
        "- Overhead = gateway percentile − direct percentile, computed separately for p50, p90 and p99 from "
        "two unpaired runs with the same body. It is the shift of the distribution, not the percentile of "
        "per-request differences, and it also absorbs the cost of one more loopback hop.",
        "- Errors = non-200 answers plus transport errors (connect/read/write/timeout) plus, for streams, "
        "answers without a first token or without `data: [DONE]`.",
        "- The mock shares core 1 with the load generator, so direct figures include that contention; the "
        "gateway has core 0 to itself but shares the machine with PostgreSQL and Redis.",
        "- Redis `INFO commandstats` is server-wide: other users of the same Redis would show up in the "
        "window; the per-command breakdown above makes that visible.",
        "",
    ]

    # -- log ---------------------------------------------------------------------------------------
    log = r.get("gateway_log", {})
    if log:
        lines += [
            "## Gateway log",
            "",
            f"`bench/out/gateway.log`: {_f(log.get('lines'))} lines, {_f(log.get('error_lines'))} mentioning "
            "an error or traceback.",
        ]
        if log.get("error_lines"):
            lines += ["", "Last lines:", "", "```", *log.get("tail", []), "```"]
        lines.append("")
    return "\n".join(lines)


def _signed(value: Any, digits: int = 1, unit: str = " %") -> str:
    return "n/a" if value is None else f"{value:+,.{digits}f}{unit}"


def _before_after(ba: dict[str, Any] | None) -> list[str]:
    """The --baseline section: before | after | ceiling per round and as medians with their spreads,
    the verdict, Redis round trips, the usage check."""
    if not ba:
        return []
    base = ba["baseline"]
    rev = base["short"]
    lines = [
        f"## Before / after ({rev} vs this checkout, and the Python ceiling)",
        "",
        f'The gateway as it was at `{rev}` ("{base["subject"]}") measured against this checkout and against the '
        f"Python ceiling in the same run, in {ba['rounds_per_side']} interleaved rounds; the order of the three "
        "rotates from round to round (before, after, ceiling; then after, ceiling, before; ...), so drift of the "
        "machine hits all alike. Each round starts a fresh process per side, pinned to core 0, and stops it "
        "afterwards: only one runs at a time (an idle gateway still wakes up every second for its Redis pub/sub "
        "listener). Per side and round, all with the **governed key** (rpm, tpm and concurrency limits and a hard "
        "budget, each side's own, issued by its own `manage.py key_issue` / `budget_set`; the ceiling forwards the "
        "same bytes):",
        "",
        f"1. c=1 JSON: {_f(ba['latency_requests'])} calls after {_f(ba['latency_warmup'])} warm-up straight to the "
        "mock, then the same through the side (overhead = side − direct percentile, p50 / p90 / p99).",
        f"2. c=1 streams: {_f(ba['stream_requests'])} after {_f(ba['stream_warmup'])} warm-up, straight and through "
        f"(`{ba['stream_prompt']}`: the mock waits before the first token; TTFT overhead = side − direct).",
        f"3. c=32 JSON for {ba['tput_s']} s after {ba['tput_warmup_s']} s warm-up: req/s, the server's CPU time per "
        "call (utime + stime from /proc over the run), Redis's CPU per call (`INFO cpu`), and Redis round-trip "
        "times probed during the run (`bench/redisrtt.py` on core 1: a PING and a no-op EVALSHA every 5 ms).",
        "4. Gateways only: c=32 JSON with the demo key (bare: nothing governs it), for governed / bare; the order "
        "of the governed and the bare c=32 runs alternates from round to round.",
        "",
        f"- Before: `{base['command']}` in `git archive {rev}` with its own venv "
        f"(`{base['venv']}`, {'reused' if base['venv_reused'] else 'built in ' + _f(base['install_s'], 0) + ' s'}),"
        f" database `{base['database']}` migrated by that tree, Redis prefix `{base['redis_prefix']}` on the "
        "same Redis db, its own demo key and governed key, the same mock provider.",
        f"- After: `{ba['current_command']}` (this checkout, the same settings as above).",
        f"- Ceiling: `{ba.get('ceiling_command', 'bench/ceiling.py')}`: a raw ASGI app (no Django, no auth, no "
        "accounting) that POSTs the body to the mock's `/v1/chat/completions` through one shared "
        "`aiohttp.ClientSession` and relays status, content-type and body (streams chunk by chunk), served like "
        "the gateway (uvicorn, uvloop, httptools, one worker, access log off). It is the most a Python "
        "pass-through reaches on this machine.",
    ]
    diff = base.get("packages_differing") or {}
    versions = ", ".join(f"{k} {v}" for k, v in diff.get("versions", {}).items()) or "none"
    only_before = ", ".join(f"{k} {v}" for k, v in diff.get("only_before", {}).items()) or "none"
    pinned = (
        "Shared libraries are pinned to this venv's versions"
        if base.get("constrained", True)
        else "**The before venv could not be pinned to this venv's package versions**"
    )
    lines.append(
        f"- {pinned}. Shared packages at other versions: {versions}. Only before: {only_before}. "
        f"Only after: {diff.get('only_after_count', 0)} (this venv also holds the dev and test tools)."
    )
    lines.append("")

    labels = {"before": f"before ({rev})", "after": "after (this checkout)", "ceiling": "ceiling"}
    rows = []
    for row in ba.get("rounds", []):
        rows.append([
            str(row["round"]), labels[row["side"]], str(row.get("position", "")),
            _f(row["overhead_p50_ms"], 3), _f(row.get("overhead_p90_ms"), 3), _f(row["overhead_p99_ms"], 3),
            _f(row.get("ttft_overhead_p50_ms"), 3), f"**{_f(row['rps'], 1)}**", _f(row["cpu_ms_per_request"], 3),
            _f(row.get("bare_rps"), 1), _f(row.get("governed_bare_ratio"), 3), _f(row.get("rps_vs_ceiling"), 3),
            f"{_f(row.get('redis_ping_p50_us'), 0)} / {_f(row.get('redis_ping_p99_us'), 0)}",
            _f(row["rss_mb"], 1), _f(row["errors"]),
        ])  # fmt: skip
    lines += _table(
        ["Round", "Side", "order", "overhead p50 ms", "p90 ms", "p99 ms", "TTFT overhead p50 ms",
         "governed c=32 req/s", "CPU ms/call", "bare c=32 req/s", "governed / bare", "req/s / ceiling's",
         "Redis PING p50 / p99 µs", "RSS MB", "errors"],
        rows,
    )  # fmt: skip
    summary = ba.get("summary")
    if not summary:
        return [*lines, "", "No round completed.", ""]
    b, a, c, ch = summary["before"], summary["after"], summary["ceiling"], summary["change_pct"]

    def figure(
        label: str, metric: str, digits: int, *, bold: bool = False, gateways_only: bool = False
    ) -> list[str]:
        def cell(side: dict[str, Any]) -> str:
            text = _f(side.get(metric), digits)
            return f"**{text}**" if bold and text != "n/a" else text

        spreads = " / ".join(
            _f(s.get(f"{metric}_spread_pct"), 1) for s in ((b, a) if gateways_only else (b, a, c))
        )
        return [
            label, cell(b), cell(a), "—" if gateways_only else cell(c), _signed(ch.get(metric)),
            spreads + " %",
        ]  # fmt: skip

    median_rows = [
        figure("Overhead p50 at c=1, governed JSON (ms)", "overhead_p50_ms", 3, bold=True),
        figure("Overhead p90 at c=1 (ms)", "overhead_p90_ms", 3),
        figure("Overhead p99 at c=1 (ms)", "overhead_p99_ms", 3, bold=True),
        figure("TTFT overhead p50 at c=1, governed stream (ms)", "ttft_overhead_p50_ms", 3, bold=True),
        figure("TTFT overhead p99 at c=1 (ms)", "ttft_overhead_p99_ms", 3),
        figure("Governed JSON at c=32 (req/s)", "rps", 1, bold=True),
        figure("Governed c=32 p99 latency (ms)", "p99_ms", 2),
        figure("Server CPU per governed call at c=32 (ms)", "cpu_ms_per_request", 3, bold=True),
        figure("Server CPU used at c=32 (cores)", "cores", 2),
        figure("Bare JSON at c=32 (req/s)", "bare_rps", 1, gateways_only=True),
        figure("Server CPU per bare call at c=32 (ms)", "bare_cpu_ms_per_request", 3, gateways_only=True),
        figure("Governed / bare req/s at c=32 (median of per-round ratios)", "governed_bare_ratio", 3,
            bold=True, gateways_only=True),
        figure("Governed req/s / the ceiling's of the same round", "rps_vs_ceiling", 3, bold=True,
            gateways_only=True),
        figure("Redis PING round trip during governed c=32, p50 (µs)", "redis_ping_p50_us", 0),
        figure("Redis PING round trip, p99 (µs)", "redis_ping_p99_us", 0),
        figure("Redis no-op EVALSHA round trip, p50 (µs)", "redis_evalsha_p50_us", 0),
        figure("Redis no-op EVALSHA round trip, p99 (µs)", "redis_evalsha_p99_us", 0),
        figure("Redis CPU per governed call at c=32 (µs)", "redis_cpu_us_per_request", 1),
        figure("RSS after the round (MB)", "rss_mb", 1),
        ["Errors, all rounds (governed answers not 200 with x-ratelimit-*)",
         f"{_f(b['errors'])} ({_f(b['governed_bad_answers'])})", f"{_f(a['errors'])} ({_f(a['governed_bad_answers'])})",
         _f(c["errors"]), "", ""],
    ]  # fmt: skip
    lines += [
        "",
        "Medians over the rounds; change = after against before; spread = (max − min) / median of each side's "
        "rounds (before / after / ceiling):",
        "",
    ]
    lines += _table(
        ["Figure", f"before ({rev})", "after (this checkout)", "ceiling", "change", "spread"], median_rows
    )
    noise = summary.get("noise_pct")
    cpu_rounds = ", ".join(f"{v:.3f}" for v in summary.get("cpu_ratio_per_round", [])) or "n/a"
    lines += [
        "",
        f"- **Gateway CPU per governed call at c=32, after / before: {_f(summary.get('cpu_ratio'), 3)}** "
        f"(ratio of the medians; per round {cpu_rounds}).",
        f"- **Governed req/s at c=32, after / the ceiling's: {_f(summary.get('ceiling_fraction'), 3)}** "
        f"({_f(a['rps'], 1)} against {_f(c['rps'], 1)} req/s; the ceiling spends {_f(c['cpu_ms_per_request'], 3)} "
        f"ms of CPU per call and adds {_f(c['overhead_p50_ms'], 3)} ms at p50 at c=1).",
        f"- Redis round trips are measured apart from the gateway's CPU: during the governed c=32 runs of this "
        f"checkout a PING took {_f(a['redis_ping_p50_us'], 0)} µs at p50 ({_f(a['redis_ping_p99_us'], 0)} µs at "
        f"p99) and a no-op EVALSHA {_f(a['redis_evalsha_p50_us'], 0)} µs ({_f(a['redis_evalsha_p99_us'], 0)} µs), "
        f"against {_f(c['redis_ping_p50_us'], 0)} µs for a PING during the ceiling's runs (Redis idle but for the "
        "probe). The probe runs on core 1 with the mock and the load generator, so its figures include that "
        "core's wake-up delays: an upper bound of what the gateway's event loop waits per round trip, time in "
        "which it spends no CPU (the CPU per call above does not contain it).",
        f"- Run-to-run spread of governed c=32 throughput, measured in this run: before "
        f"{_f(b['rps_spread_pct'], 1)} %, after {_f(a['rps_spread_pct'], 1)} %, ceiling "
        f"{_f(c['rps_spread_pct'], 1)} %; the verdict allows the larger of the gateways', {_f(noise, 1)} %. The "
        f"overhead p50 varied by {_f(b['overhead_p50_ms_range'], 3)} ms (before), "
        f"{_f(a['overhead_p50_ms_range'], 3)} ms (after) and {_f(c['overhead_p50_ms_range'], 3)} ms (ceiling) "
        "between rounds.",
    ]
    lines += _usage_check(ba.get("usage_check"), rev)
    lines += ["", f"Verdict: {summary['verdict']}", ""]
    lines += _profiles(ba.get("profile"), rev)
    return lines


def _usage_check(check: dict[str, Any] | None, rev: str) -> list[str]:
    if not check:
        return []
    out = []
    for name, label in (("after", "this checkout"), ("before", rev)):
        c = check.get(name)
        if not c:
            continue
        rows = (
            f", {_f(c['usage_rows'])} usage rows written by the drain (`usage_drain`)"
            if "usage_rows" in c
            else ""
        )
        flag = "equal" if c["equal"] else "**MISMATCH**"
        out.append(
            f"{label}: {_f(c['calls'])} calls counted by the clients (warm-ups and profiles included), "
            f"{_f(c['usage_events'])} usage events in its stream{rows}: {flag}"
        )
    return ["- Usage rows against calls, over this section's rounds — " + "; ".join(out) + "."] if out else []


def _profile_cell(profile: dict[str, Any] | None, category: str) -> str:
    if not profile or "error" in profile:
        return "n/a"
    for row in profile.get("categories", []):
        if row["category"] == category:
            return f"{row['share']:.1%} ({_f(row['samples'])})" if row["samples"] else "—"
    return "n/a"


def _profiles(profiles: dict[str, Any] | None, rev: str | None, heading: str = "###") -> list[str]:
    """py-spy summaries by category (issue 17): before | after, the governed JSON path and a stream."""
    if not profiles:
        return []
    columns = [
        (side, kind)
        for side in ("before", "after")
        for kind in ("json", "stream")
        if side in profiles and kind in profiles[side]
    ]
    if not columns:
        return []
    ok = [profiles[s][k] for s, k in columns if "error" not in profiles[s][k]]
    any_profile = ok[0] if ok else None
    side_label = {"before": f"before ({rev})" if rev else "before", "after": "after (this checkout)"}
    if rev is None:
        side_label["after"] = "this checkout"
    kind_label = {"json": "governed JSON c=32", "stream": "governed stream c=32"}
    lines = [f"{heading} Where the time goes (py-spy)", ""]
    if any_profile is None:
        errors = "; ".join(profiles[s][k]["error"] for s, k in columns)
        return [*lines, f"Profiling failed: {errors}", ""]
    lines += [
        f"`py-spy record --gil --rate {any_profile['rate_hz']}` attached to the gateway for "
        f"{any_profile['seconds']} s of c=32 load with the governed key, once on the JSON path and once on "
        "streams (`[mock ttft_ms=1 chunk_ms=1 tokens=32]`: small delays, so the stream is not all idle), "
        + (
            "on a fresh process per side after the usual warm-up"
            if rev
            else "on the main gateway after its other phases"
        )
        + ". Only samples where a thread held the GIL count (Python "
        "running; time in C that releases the GIL, socket syscalls and epoll, is not attributed). Each sampled "
        "stack goes to one category, that of its deepest frame matching a rule (`bench/pyspy.py`, `RULES`): "
        "generic helpers (asyncio, orjson, hmac, Django's request object...) and the Redis client "
        "(`config/resp.py`, redis-py) have no rule, so their time is their caller's — the admission script's "
        'round trip is admission, the settlement script\'s settlement. "Redis client" holds only stacks with '
        'no categorised caller (the pub/sub listener, the reply callback); "view dispatch" is Django\'s view '
        'wrapper, DRF/adrf and `gateway/views.py` and the proxy\'s `handle`; "event loop" is asyncio/uvloop '
        "with nothing else on the stack. Raw stacks: `bench/out/pyspy-*.raw`.",
        "",
    ]
    header = ["Category", *(f"{side_label[s]}, {kind_label[k]}" for s, k in columns)]
    table = []
    from_pyspy = [row["category"] for row in any_profile["categories"]]
    for category in from_pyspy:
        table.append([category, *(_profile_cell(profiles[s][k], category) for s, k in columns)])
    table.append(
        ["**samples** (load while sampled)"]
        + [
            f"{_f(profiles[s][k].get('samples'))} ({_f(profiles[s][k].get('load_rps'), 0)} req/s)"
            if "error" not in profiles[s][k]
            else profiles[s][k]["error"]
            for s, k in columns
        ]
    )
    table.append(
        ["Stacks through the Redis client (any category)"]
        + [
            f"{profiles[s][k]['redis_client_inclusive']['share']:.1%}"
            if "error" not in profiles[s][k]
            else "n/a"
            for s, k in columns
        ]
    )
    lines += ["Share of the samples per category (samples):", ""]
    lines += _table(header, table)

    shown = [(s, k) for s, k in columns if s == "after" and "error" not in profiles[s][k]]
    if shown:
        lines += ["", f"Top 3 frames by self time inside each category, {side_label['after']}:", ""]
        top_rows = []
        for category in from_pyspy:
            cells = []
            for s, k in shown:
                row = next(r for r in profiles[s][k]["categories"] if r["category"] == category)
                cells.append("<br>".join(f"`{t['frame']}` {t['share']:.1%}" for t in row["top"]) or "—")
            top_rows.append([category, *cells])
        lines += _table(["Category", *(kind_label[k] for _, k in shown)], top_rows)
        for s, k in shown:
            prof = profiles[s][k]
            lines += ["", f"Top 25 frames by self time, {side_label[s]}, {kind_label[k]}:", ""]
            lines += _table(
                ["#", "Function (file)", "category", "samples", "share"],
                [
                    [str(i + 1), f"`{r['frame']}`", r["category"], _f(r["samples"]), f"{r['share']:.1%}"]
                    for i, r in enumerate(prof["top_self"])
                ],
            )
        json_prof = profiles.get("after", {}).get("json", {})
        if json_prof.get("inclusive"):
            lines += [
                "",
                f"Largest inclusive frames (below the event-loop roots), {side_label['after']}, JSON:",
                "",
            ]
            lines += _table(
                ["Function (file)", "samples", "share"],
                [[f"`{r['frame']}`", _f(r["samples"]), _pct(r["share"])] for r in json_prof["inclusive"]],
            )
    lines.append("")
    return lines


NOTES_SLOT = "<!-- dialects-notes -->"


def _dialects(dl: dict[str, Any] | None, ba: dict[str, Any] | None) -> list[str]:
    """Issue 14: the scenarios side by side (medians over the rounds), and the chat path's before/after."""
    if not dl:
        return []
    lines = [
        "## Dialects (issue 14)",
        "",
        f"Every ingress dialect and upstream format next to the plain chat path, in the main gateway process, "
        f"in {dl['rounds_total']} interleaved rounds (the order of the scenarios rotates each round). Per "
        f"scenario and round: {_f(dl['requests'])} c=1 JSON calls after {_f(dl['warmup'])} warm-up, straight "
        "to the mock in the upstream's format and then through the gateway in the client's dialect "
        f"(overhead = gateway − direct percentile); {_f(dl['stream_requests'])} c=1 streams each way after "
        f"{_f(dl['stream_warmup'])} warm-up (`{dl['stream_prompt']}`: TTFT overhead); {dl['tput_s']} s at c=32 "
        f"through the gateway after {dl['tput_warmup_s']} s warm-up (the bundled generator, on core 1 with "
        "the mock). The mock does the same work in every format, so the differences are the gateway's: "
        "authentication, parsing, routing and accounting are common to all; a translated call also builds "
        "the canonical request and re-renders the answer; a pass-through call sends the client's body up "
        "with the model replaced and relays the upstream's bytes, reading them only for usage. The "
        "Responses route (`" + "gpt-5-bench" + "`) is registered by the bench with `manage.py provider_add "
        "--kind openai-responses` on the mock's /v1; the others are the demo's.",
        "",
    ]
    summary = dl.get("summary") or {}
    rows = []
    for sc in dl["scenarios"]:
        m = summary.get(sc["name"])
        if not m:
            continue
        rows.append([
            sc["label"], _f(m["direct_p50_ms"], 3), _f(m["gateway_p50_ms"], 3), f"**{_f(m['overhead_p50_ms'], 3)}**",
            _f(m["overhead_p99_ms"], 3), _f(m["ttft_overhead_p50_ms"], 3), f"**{_f(m['rps'], 1)}**",
            _f(m.get("rps_spread_pct"), 1) + " %", _f(m.get("rps_vs_chat"), 2), _f(m["cpu_ms_per_request"], 3),
            _f(m["p99_ms"], 2), _f(m["errors"]),
        ])  # fmt: skip
    lines += _table(
        ["Scenario (client → upstream)", "direct p50 ms", "gateway p50 ms", "overhead p50 ms",
         "overhead p99 ms", "TTFT overhead p50 ms", "c=32 req/s", "req/s spread", "req/s vs chat",
         "gateway CPU ms/req", "c=32 p99 ms", "errors"],
        rows,
    )  # fmt: skip
    lines += [
        "",
        "Medians over the rounds; the spread is (max − min) / median of a scenario's c=32 rounds; direct p50 is "
        "the mock's own answer time in the upstream's format. Gateway CPU per request (its process's CPU time "
        "over the c=32 run) is the figure least moved by other work on the box: the c=1 latencies and the "
        "req/s also carry the scheduler's delays when the gateway's core is shared. Per round:",
        "",
    ]
    per_round = [
        [str(r["round"]), r["scenario"], _f(r["overhead_p50_ms"], 3), _f(r["overhead_p99_ms"], 3),
         _f(r["ttft_overhead_p50_ms"], 3), _f(r["rps"], 1), _f(r["cpu_ms_per_request"], 3), _f(r["errors"])]
        for r in dl.get("rounds", [])
    ]  # fmt: skip
    lines += _table(
        ["Round", "scenario", "overhead p50 ms", "overhead p99 ms", "TTFT overhead p50 ms", "c=32 req/s",
         "CPU ms/req", "errors"],
        per_round,
    )  # fmt: skip
    summary_ba = (ba or {}).get("summary")
    if summary_ba:
        b, a, ch = summary_ba["before"], summary_ba["after"], summary_ba["change_pct"]
        rev = ba["baseline"]["short"] if ba else "?"
        lines += [
            "",
            f"The chat path with the governed key before (`{rev}`) and after (this checkout), from the before / "
            f"after section above (fresh processes, interleaved): c=32 {_f(b['rps'], 1)} → {_f(a['rps'], 1)} req/s "
            f"({_signed(ch['rps'])}; spreads {_f(b['rps_spread_pct'], 1)} % / {_f(a['rps_spread_pct'], 1)} %), "
            f"overhead p50 {_f(b['overhead_p50_ms'], 3)} → {_f(a['overhead_p50_ms'], 3)} ms, CPU per request "
            f"{_f(b['cpu_ms_per_request'], 3)} → {_f(a['cpu_ms_per_request'], 3)} ms. {summary_ba['verdict']}",
        ]
    # bench/run.py puts the hand-written reading kept from the previous report here (NOTES_SLOT).
    lines += ["", NOTES_SLOT, ""]
    return lines


def _other_work(cores: float | None, nproc: int | None) -> str:
    if cores is None:
        return ""
    text = (
        f"; other work on the machine used {cores:.2f} cores on average from setup to the end of the main "
        "gateway's phases (all cores' busy time minus the bench's own processes and Redis)"
    )
    if cores >= 0.25:
        text += (
            f" — **the box was shared** (it has {nproc or '?'} cores): absolute figures are pessimistic; the "
            "interleaved comparisons less so, as the noise hits both sides"
        )
    return text


def _ops(by_command: dict[str, float]) -> str:
    """Commands per call, e.g. "EVALSHA 2.00, XADD 1.00"; below 0.005 a call (a stray command of
    another client of the server, say) is left out here and kept in results.json."""
    return ", ".join(f"{k.upper()} {v:.2f}" for k, v in by_command.items() if v >= 0.005) or "none"


def _nanos_usd(nanos: int) -> str:
    return f"{nanos / 1e9:,.6f} USD" if nanos else "0 USD"


def _governed(gv: dict[str, Any] | None) -> list[str]:
    """(e) Issue 6: the governed path next to the bare path, interleaved rounds in one gateway."""
    if not gv:
        return []
    commands = gv.get("commands", [])
    lines = [
        "### (e) Governed path next to the bare path",
        "",
        "The same gateway process, two keys of the demo tenant. **Bare**: the demo key, which nothing "
        "governs (no limit, no budget: no admission round trip; its usage event is one XADD). **Governed**: "
        "a key with rpm, tpm and concurrency limits and a hard monthly budget, all far above what the bench "
        "reaches, so every call pays for authentication + admission (one Lua script: GCRA rate limits, "
        "concurrency lease, worst-case cost reserved against the budget) + settlement (one Lua script: "
        "lease released, tokens counted, reservation replaced by the real cost, usage event XADDed) and "
        "none is refused. Set up with " + " and ".join(f"`{c}`" for c in commands) + ".",
        "",
        f"{gv['rounds_total']} rounds; each runs {_f(gv['latency_requests'])} c=1 requests after "
        f"{_f(gv['latency_warmup'])} warm-up straight to the mock, then the same through both paths (overhead = "
        f"path − that direct run), then {gv['tput_s']} s at c=32 after {gv['tput_warmup_s']} s warm-up through "
        "both paths. The order of the two paths alternates (bare first in odd rounds, governed first in even "
        "ones), so drift of the machine hits both alike. Every answer is checked for status 200 and all six "
        "`x-ratelimit-*` headers (the bundled generator at c=1, wrk's Lua `response()` hook at c=32; the bare "
        "runs do the same check, so it costs both paths alike).",
        "",
    ]
    rows, pair_rows = [], []
    for row in gv.get("rounds", []):
        for path in ("bare", "governed"):
            m = row[path]
            c32, o = m["c32"], m["overhead_ms"]
            calls = m["completed"] + c32["completed"]
            with_headers = m["with_ratelimit_headers"] + c32.get("with_ratelimit_headers", 0)
            rows.append([
                str(row["round"]), path, _f(o.get("p50"), 3), _f(o.get("p90"), 3), _f(o.get("p99"), 3),
                _f(m["self_reported"].get("overhead_ms", {}).get("p50"), 3), f"**{_f(c32['rps'], 1)}**",
                _f(c32["latency_ms"].get("p99"), 2), _f(c32["resources"].get("gateway_cpu_ms_per_request"), 3),
                _f(m["errors"] + c32["errors"]), f"{_f(with_headers)} of {_f(calls)}",
            ])  # fmt: skip
        b, g = row["bare"], row["governed"]
        ratio = g["c32"]["rps"] / b["c32"]["rps"] if b["c32"]["rps"] else None

        def diff(get: Any, g: dict[str, Any] = g, b: dict[str, Any] = b) -> str:
            x, y = get(g), get(b)
            return "n/a" if x is None or y is None else f"{x - y:+.3f}"

        pair_rows.append([
            str(row["round"]), " then ".join(row["order"]),
            f"{_f(row.get('other_work_cores'), 2)} ({row.get('loadavg', '?')})", f"**{_f(ratio, 3)}**",
            f"**{diff(lambda m: m['overhead_ms'].get('p50'))}**", diff(lambda m: m["overhead_ms"].get("p99")),
            diff(lambda m: m["self_reported"].get("overhead_ms", {}).get("p50")),
            diff(lambda m: m["c32"]["resources"].get("gateway_cpu_ms_per_request")),
        ])  # fmt: skip
    lines += _table(
        ["Round", "Path", "overhead p50 ms", "overhead p90 ms", "overhead p99 ms", "in-view overhead p50 ms",
         "c=32 req/s", "c=32 p99 ms", "gateway CPU ms/req", "errors", "200 with x-ratelimit-*"],
        rows,
    )  # fmt: skip
    lines += ["", "Paired per round (governed against the bare run of the same round):", ""]
    lines += _table(
        ["Round", "order", "other work, cores (load average at its start)", "governed / bare req/s at c=32", "governed − bare overhead p50 ms",
         "governed − bare overhead p99 ms", "governed − bare in-view p50 ms", "governed − bare CPU ms/req"],
        pair_rows,
    )  # fmt: skip
    summary = gv.get("summary")
    if not summary:
        return [*lines, "", "No round completed.", ""]
    b, g = summary["bare"], summary["governed"]

    def spread(metric: str) -> str:
        return f"{_f(b.get(f'{metric}_spread_pct'), 1)} % / {_f(g.get(f'{metric}_spread_pct'), 1)} %"

    lines += ["", "Medians over the rounds; spread = (max − min) / median of each path's rounds:", ""]
    lines += _table(
        ["", "bare", "governed", "spread bare / governed"],
        [
            ["Overhead p50 at c=1 (ms)", _f(b["overhead_p50_ms"], 3), _f(g["overhead_p50_ms"], 3), spread("overhead_p50_ms")],
            ["Overhead p90 at c=1 (ms)", _f(b["overhead_p90_ms"], 3), _f(g["overhead_p90_ms"], 3), spread("overhead_p90_ms")],
            ["Overhead p99 at c=1 (ms)", _f(b["overhead_p99_ms"], 3), _f(g["overhead_p99_ms"], 3), spread("overhead_p99_ms")],
            ["In-view overhead p50 (ms, the gateway's own usage events)", _f(b["in_view_overhead_p50_ms"], 3),
             _f(g["in_view_overhead_p50_ms"], 3), spread("in_view_overhead_p50_ms")],
            ["c=32 req/s", f"**{_f(b['rps'], 1)}**", f"**{_f(g['rps'], 1)}**", spread("rps")],
            ["c=32 p99 latency (ms)", _f(b["c32_p99_ms"], 2), _f(g["c32_p99_ms"], 2), spread("c32_p99_ms")],
            ["Gateway CPU per request at c=32 (ms)", _f(b["cpu_ms_per_request"], 3), _f(g["cpu_ms_per_request"], 3),
             spread("cpu_ms_per_request")],
            ["Errors (all rounds, c=1 + c=32)", _f(b["c1_errors"] + b["c32_errors"]),
             _f(g["c1_errors"] + g["c32_errors"]), ""],
        ],
    )  # fmt: skip
    ratio, extra = summary["rps_ratio"], summary["extra_overhead_p50_ms"]
    lines += [
        "",
        f"- **Governed / bare throughput at c=32: {_f(ratio['median'], 3)}** (median of the per-round ratios; "
        f"rounds {_f(ratio['min'], 3)} to {_f(ratio['max'], 3)}; ratio of the medians "
        f"{_f(summary['rps_ratio_of_medians'], 3)}).",
        f"- **Governed − bare overhead p50 at c=1: {_signed(extra['median'], 3, ' ms')}** (median of the "
        f"per-round differences; rounds {_signed(extra['min'], 3, ' ms')} to {_signed(extra['max'], 3, ' ms')}). "
        f"For scale, the bare path's own overhead p50 moved by {_f(b['overhead_p50_ms_range'], 3)} ms between "
        "rounds. The gateway's own view of the same calls (in-view overhead from its usage events: admission "
        "included, settlement not, since the event is written by it) differs by "
        f"{_signed(summary['extra_in_view_p50_ms']['median'], 3, ' ms')} at p50.",
        f"- Gateway CPU per call at c=32: {_signed(summary['extra_cpu_ms_per_request']['median'], 3, ' ms')} "
        "governed against bare (median of the per-round differences).",
    ]
    lines += _governed_redis(gv)
    lines += _governed_checks(gv, g)
    lines.append("")
    return lines


def _governed_redis(gv: dict[str, Any]) -> list[str]:
    lines = ["", "Redis operations per call:", ""]
    monitor, stats = gv.get("monitor", {}), gv.get("redis", {})
    rows = []
    for path in ("bare", "governed"):
        m, st = monitor.get(path, {}), stats.get(path, {})
        if "error" in m or not m:
            exact = [f"n/a ({m.get('error', 'not measured')})", "", "", ""]
        else:
            exact = [
                f"**{_f(m['round_trips_per_call'], 2)}**",
                _ops(m["client_by_command"]),
                _f(m["script_commands_per_call"], 2),
                _ops(m["script_by_command"]),
            ]
        rows.append([
            path, *exact, _f(m.get("calls")),
            _f(st.get("ops_per_request"), 2), _ops(st.get("net_by_command", {})), _f(st.get("window_requests")),
        ])  # fmt: skip
    lines += _table(
        ["Path", "round trips per call (MONITOR)", "the gateway's commands per call", "commands run by its "
         "scripts per call", "script commands per call", "calls watched", "commandstats per call (net)",
         "commandstats per call by command (net)", "calls counted"],
        rows,
    )  # fmt: skip
    noise = next((st.get("noise_ops_per_s") for st in stats.values() if st), None)
    lines += [
        "",
        "Round trips are the commands the gateway itself sent (MONITOR over a separate c=1 run of "
        f"{_f(next((m.get('calls') for m in monitor.values() if m.get('calls')), None))} calls per path, "
        "after the rounds and not timed, since MONITOR slows Redis; only this bench's Redis db is counted, so "
        "other users of the server do not blur it); the commands a Lua script runs are listed separately "
        "(MONITOR shows them as `lua`). `INFO commandstats` counts both kinds under their own names (EVALSHA "
        "and, e.g., the XADD inside the settlement script), over every c=1 window of the rounds; it is "
        "server-wide, so what other clients sent while the gateway was idle "
        f"({_f(noise, 1)} ops/s over the direct-to-mock runs) is subtracted per command: with other test "
        "suites sharing the Redis server, these net figures are approximate, the MONITOR ones exact.",
    ]
    return lines


def _governed_checks(gv: dict[str, Any], g: dict[str, Any]) -> list[str]:
    lines = ["", "Checks on the governed calls:", ""]
    calls, with_headers = g["calls"], g["with_ratelimit_headers"]
    errors = g["c1_errors"] + g["c32_errors"]
    lines.append(
        f"- Answers: {_f(with_headers)} of {_f(calls)} measured governed calls were 200 with all six "
        f"`x-ratelimit-*` headers; {_f(errors)} errors (a 429 or 402 would count here)."
        + (
            " The sanity call's headers: "
            + ", ".join(f"`{k}: {v}`" for k, v in gv["sanity_headers"].items())
            + "."
            if gv.get("sanity_headers")
            else ""
        )
    )
    ledger = gv.get("ledger")
    if ledger:
        statuses = ", ".join(f"{k}: {_f(v)}" for k, v in sorted(ledger["statuses"].items())) or "none"
        lines.append(
            f"- Usage ledger after the drain: {_f(ledger['rows'])} rows for the governed key (statuses {statuses}; "
            "this includes the warm-ups and the calls wrk cut off at the end of a run), costing "
            f"{_nanos_usd(ledger['cost_nanos'])}; the budget counter settlement kept in Redis says "
            f"{_nanos_usd(ledger['budget_spent_nanos'])}: "
            + ("**equal to the nano-dollar**." if ledger["matches_budget_counter"] else "**they differ**.")
        )
    for pot in gv.get("budget_pots", []):
        lines.append(
            f"- Budget counter `{pot['key']}` once all calls had ended: spent {_nanos_usd(pot['spent_nanos'])}, "
            f"reserved {_nanos_usd(pot['reserved_nanos'])}, {pot['open_reservations']} reservations left open."
        )
    return lines


def _drain_line(drain: dict[str, Any] | None) -> str:
    if not drain:
        return "- **Usage pipeline drain rate:** not measured in this run."
    return (
        f"- **Usage pipeline drain rate: {_f(drain.get('rows_per_s'), 0)} rows/s** into PostgreSQL from one "
        f"drain process (`billing.usage.usage_drain`, batches of 500): the {_f(drain.get('backlog'))} events the "
        f"run left in the stream became {_f(drain.get('rows'))} rows in {_f(drain.get('seconds'), 1)} s "
        f"({_f(drain.get('usage_rows_total'))} usage rows in total, {_f(drain.get('stream_left'))} left in the "
        "stream). One worker keeps up with a gateway fleet as long as this exceeds the fleet's requests/s; "
        "add Celery workers (consumer-group members) beyond that."
    )

"""Before / after: medians, changes and the verdict from interleaved rounds of two gateways and the
Python ceiling (bench/ceiling.py).

Each round measures every side the same way; a side's run-to-run spread is the range of its rounds
relative to their median ((max - min) / median). With two or three rounds a side the range is the
only honest spread there is; the noise the verdict allows is the larger of the two gateways'
spreads, all measured in the same run, on the same machine, interleaved with each other.
"""

from __future__ import annotations

from statistics import median
from typing import Any

SIDES = ("before", "after", "ceiling")
GATEWAYS = ("before", "after")
# Figures summarised per side: (key in a round, higher is better). The c=1 and c=32 figures are the
# governed key's (the ceiling forwards the same bytes); bare_* are the demo key's, gateways only.
METRICS = {
    "overhead_p50_ms": False,
    "overhead_p90_ms": False,
    "overhead_p99_ms": False,
    "ttft_overhead_p50_ms": False,
    "ttft_overhead_p99_ms": False,
    "rps": True,
    "p99_ms": False,
    "cpu_ms_per_request": False,
    "cores": True,
    "bare_rps": True,
    "bare_cpu_ms_per_request": False,
    "governed_bare_ratio": True,
    "rps_vs_ceiling": True,
    "redis_ping_p50_us": False,
    "redis_ping_p99_us": False,
    "redis_evalsha_p50_us": False,
    "redis_evalsha_p99_us": False,
    "redis_cpu_us_per_request": False,
    "rss_mb": False,
}


def _median(values: list[float]) -> float | None:
    return round(median(values), 3) if values else None


def _spread_pct(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mid = median(values)
    return round((max(values) - min(values)) / mid * 100, 2) if mid else None


def _change_pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or not before:
        return None
    return round((after - before) / before * 100, 2)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def summarise(rounds: list[dict[str, Any]], *, rev: str) -> dict[str, Any]:
    # Per round, each gateway's governed req/s against the ceiling's of the same round.
    ceiling_rps = {r["round"]: r["rps"] for r in rounds if r["side"] == "ceiling"}
    for r in rounds:
        if r["side"] in GATEWAYS:
            r["rps_vs_ceiling"] = _ratio(r["rps"], ceiling_rps.get(r["round"]))
    sides: dict[str, dict[str, Any]] = {}
    for side in SIDES:
        mine = [r for r in rounds if r["side"] == side]
        entry: dict[str, Any] = {
            "rounds": len(mine),
            "errors": sum(r.get("errors", 0) for r in mine),
            "governed_bad_answers": sum(r.get("governed_bad_answers", 0) for r in mine),
        }
        for metric in METRICS:
            values = [r[metric] for r in mine if r.get(metric) is not None]
            entry[metric] = _median(values)
            entry[f"{metric}_spread_pct"] = _spread_pct(values)
            entry[f"{metric}_per_round"] = values
        values = [r["overhead_p50_ms"] for r in mine if r.get("overhead_p50_ms") is not None]
        entry["overhead_p50_ms_range"] = round(max(values) - min(values), 3) if len(values) > 1 else None
        sides[side] = entry

    before, after, ceiling = sides["before"], sides["after"], sides["ceiling"]
    change = {metric: _change_pct(before[metric], after[metric]) for metric in METRICS}
    change["overhead_p50_ms_delta"] = (
        round(after["overhead_p50_ms"] - before["overhead_p50_ms"], 3)
        if before["overhead_p50_ms"] is not None and after["overhead_p50_ms"] is not None
        else None
    )
    # Governed CPU per call, after / before: the ratio of the medians, and per round (same round).
    by_round = {(r["side"], r["round"]): r for r in rounds}
    cpu_per_round = [
        ratio
        for (side, number), r in sorted(by_round.items())
        if side == "after" and (b := by_round.get(("before", number))) is not None
        if (ratio := _ratio(r.get("cpu_ms_per_request"), b.get("cpu_ms_per_request"))) is not None
    ]
    spreads = [s["rps_spread_pct"] for s in (before, after) if s["rps_spread_pct"] is not None]
    noise = max(spreads) if len(spreads) == 2 else None
    verdict, regression = _verdict(before, after, change["rps"], noise, rev=rev)
    return {
        "before": before,
        "after": after,
        "ceiling": ceiling,
        "change_pct": change,
        "cpu_ratio": _ratio(after["cpu_ms_per_request"], before["cpu_ms_per_request"]),
        "cpu_ratio_per_round": cpu_per_round,
        "ceiling_fraction": _ratio(after["rps"], ceiling["rps"]),
        "noise_pct": noise,
        "regression": regression,
        "verdict": verdict,
    }


def _verdict(
    before: dict[str, Any], after: dict[str, Any], change: float | None, noise: float | None, *, rev: str
) -> tuple[str, bool | None]:
    if change is None or noise is None:
        return "Not enough rounds on both sides to tell a change from noise: no verdict.", None
    figures = f"{before['rps']:,.1f} -> {after['rps']:,.1f} governed req/s median at c=32, {change:+.1f} %"
    spread = (
        f"the run-to-run spread measured in this run is {noise:.1f} % (before {before['rps_spread_pct']:.1f} %,"
        f" after {after['rps_spread_pct']:.1f} %)"
    )
    if after["errors"] > before["errors"]:
        # Failed requests are a regression whatever the speed (and a fast error inflates req/s).
        return (
            f"**Regression**: this checkout failed {after['errors']:,} requests in these rounds, {rev} "
            f"{before['errors']:,}; throughput {figures}; {spread}.",
            True,
        )
    if change < -noise:
        return f"**Regression beyond noise**: throughput {figures} against {rev}; {spread}.", True
    if change > noise:
        return f"**No regression beyond noise** (faster than {rev} beyond noise): {figures}; {spread}.", False
    return f"**No regression beyond noise**: {figures} against {rev}, within noise; {spread}.", False

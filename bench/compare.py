"""Before / after: medians, changes and the verdict from interleaved rounds of two gateways.

Each round measures both gateways the same way; a side's run-to-run spread is the range of its
rounds relative to their median ((max - min) / median). With two or three rounds a side the range
is the only honest spread there is; the noise the verdict allows is the larger of the two sides'
spreads, both measured in the same run, on the same machine, interleaved with each other.
"""

from __future__ import annotations

from statistics import median
from typing import Any

SIDES = ("before", "after")
# Figures summarised per side: (key in a round, higher is better).
METRICS = {
    "rps": True,
    "overhead_p50_ms": False,
    "overhead_p99_ms": False,
    "cpu_ms_per_request": False,
    "p99_ms": False,
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


def summarise(rounds: list[dict[str, Any]], *, rev: str) -> dict[str, Any]:
    sides: dict[str, dict[str, Any]] = {}
    for side in SIDES:
        mine = [r for r in rounds if r["side"] == side]
        entry: dict[str, Any] = {"rounds": len(mine), "errors": sum(r.get("errors", 0) for r in mine)}
        for metric in METRICS:
            values = [r[metric] for r in mine if r.get(metric) is not None]
            entry[metric] = _median(values)
            entry[f"{metric}_spread_pct"] = _spread_pct(values)
        values = [r["overhead_p50_ms"] for r in mine if r.get("overhead_p50_ms") is not None]
        entry["overhead_p50_ms_range"] = round(max(values) - min(values), 3) if len(values) > 1 else None
        sides[side] = entry

    before, after = sides["before"], sides["after"]
    change = {metric: _change_pct(before[metric], after[metric]) for metric in METRICS}
    change["overhead_p50_ms_delta"] = (
        round(after["overhead_p50_ms"] - before["overhead_p50_ms"], 3)
        if before["overhead_p50_ms"] is not None and after["overhead_p50_ms"] is not None
        else None
    )
    spreads = [s["rps_spread_pct"] for s in (before, after) if s["rps_spread_pct"] is not None]
    noise = max(spreads) if len(spreads) == 2 else None
    verdict, regression = _verdict(before, after, change["rps"], noise, rev=rev)
    return {
        "before": before,
        "after": after,
        "change_pct": change,
        "noise_pct": noise,
        "regression": regression,
        "verdict": verdict,
    }


def _verdict(
    before: dict[str, Any], after: dict[str, Any], change: float | None, noise: float | None, *, rev: str
) -> tuple[str, bool | None]:
    if change is None or noise is None:
        return "Not enough rounds on both sides to tell a change from noise: no verdict.", None
    figures = f"{before['rps']:,.1f} -> {after['rps']:,.1f} req/s median at c=32, {change:+.1f} %"
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

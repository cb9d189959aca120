"""Governed path vs bare path: per-round pairs, medians and spreads (issue 6's benchmark targets).

Both paths are measured in every round, in the same gateway process, one right after the other, so
the figures that decide the targets are paired per round: the governed / bare throughput ratio at
c=32 and the governed minus bare overhead p50 at c=1 (the same direct run is subtracted from both,
so this is the difference of the two gateway p50s). The verdict uses the median of the per-round
pairs; the report shows every round, so a verdict that only some rounds support is visible.
"""

from __future__ import annotations

from statistics import median
from typing import Any

PATHS = ("bare", "governed")


def _median(values: list[float]) -> float | None:
    return round(median(values), 3) if values else None


def _spread_pct(values: list[float]) -> float | None:
    """(max - min) / median, in %: the only honest spread two or three rounds have."""
    if len(values) < 2:
        return None
    mid = median(values)
    return round((max(values) - min(values)) / mid * 100, 2) if mid else None


def _paired(values: list[float]) -> dict[str, Any]:
    return {
        "per_round": values,
        "median": _median(values),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


def bad_answers(entry: dict[str, Any]) -> int:
    """Calls of one path in one round (c=1 and c=32) that were not 200 with every x-ratelimit-* header."""
    c32 = entry.get("c32", {})
    c1_ok = entry["completed"] - entry["errors"]
    return (
        entry["errors"]
        + (c1_ok - entry["with_ratelimit_headers"])
        + c32.get("errors", 0)
        + (c32.get("ok", 0) - c32.get("with_ratelimit_headers", 0))
    )


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path in PATHS:
        mine = [r[path] for r in rounds]
        figures = {
            "overhead_p50_ms": [m["overhead_ms"].get("p50") for m in mine],
            "overhead_p90_ms": [m["overhead_ms"].get("p90") for m in mine],
            "overhead_p99_ms": [m["overhead_ms"].get("p99") for m in mine],
            "in_view_overhead_p50_ms": [m["self_reported"].get("overhead_ms", {}).get("p50") for m in mine],
            "rps": [m["c32"]["rps"] for m in mine],
            "c32_p99_ms": [m["c32"]["latency_ms"].get("p99") for m in mine],
            "cpu_ms_per_request": [m["c32"]["resources"].get("gateway_cpu_ms_per_request") for m in mine],
        }
        entry: dict[str, Any] = {
            "rounds": len(mine),
            "c1_errors": sum(m["errors"] for m in mine),
            "c32_errors": sum(m["c32"]["errors"] for m in mine),
            "calls": sum(m["completed"] + m["c32"]["completed"] for m in mine),
            "with_ratelimit_headers": sum(
                m["with_ratelimit_headers"] + m["c32"].get("with_ratelimit_headers", 0) for m in mine
            ),
        }
        for name, values in figures.items():
            present = [v for v in values if v is not None]
            entry[name] = _median(present)
            entry[f"{name}_spread_pct"] = _spread_pct(present)
        entry["overhead_p50_ms_range"] = (
            round(max(figures["overhead_p50_ms"]) - min(figures["overhead_p50_ms"]), 3)
            if len(mine) > 1 and None not in figures["overhead_p50_ms"]
            else None
        )
        paths[path] = entry

    ratio = [
        round(r["governed"]["c32"]["rps"] / r["bare"]["c32"]["rps"], 3)
        for r in rounds
        if r["bare"]["c32"]["rps"]
    ]

    def delta(get: Any) -> list[float]:
        return [
            round(get(r["governed"]) - get(r["bare"]), 3)
            for r in rounds
            if get(r["governed"]) is not None and get(r["bare"]) is not None
        ]

    return {
        "bare": paths["bare"],
        "governed": paths["governed"],
        "rps_ratio": _paired(ratio),
        "rps_ratio_of_medians": (
            round(paths["governed"]["rps"] / paths["bare"]["rps"], 3) if paths["bare"]["rps"] else None
        ),
        "extra_overhead_p50_ms": _paired(delta(lambda m: m["overhead_ms"].get("p50"))),
        "extra_overhead_p99_ms": _paired(delta(lambda m: m["overhead_ms"].get("p99"))),
        "extra_in_view_p50_ms": _paired(
            delta(lambda m: m["self_reported"].get("overhead_ms", {}).get("p50"))
        ),
        "extra_cpu_ms_per_request": _paired(
            delta(lambda m: m["c32"]["resources"].get("gateway_cpu_ms_per_request"))
        ),
        "governed_bad_answers": sum(bad_answers(r["governed"]) for r in rounds),
    }


def rounds_note(values: list[float], op: str, limit: float, digits: int, unit: str = "") -> str:
    """'rounds 0.93, 0.97, 0.91: 3 of 3 meet it' — what the median verdict stands on."""
    if not values:
        return "no round completed"
    met = sum(1 for v in values if (v >= limit if op == ">=" else v <= limit))
    shown = ", ".join(f"{v:+.{digits}f}" if unit else f"{v:.{digits}f}" for v in values)
    return f"median of rounds {shown}{unit}: {met} of {len(values)} meet it"

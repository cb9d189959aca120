"""The overview's chart specs (static/console/charts.js) from billing.overview and
billing.selectors: labels in the tenant's zone, money as numbers for drawing only (the tables and
the CSV show exact decimals)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.models import ERROR_CLASSES
from billing.overview import OTHER, ModelSeries, Range, Speed, Traffic
from billing.selectors import AlertEntry, BudgetTrack

ERROR_LABELS = {
    "errors_invalid_request": "invalid request",
    "errors_authentication": "authentication",
    "errors_budget": "budget / credits",
    "errors_permission": "permission",
    "errors_rate_limit": "rate limited",
    "errors_other_4xx": "other 4xx",
    "errors_client_closed": "client closed",
    "errors_5xx": "upstream / 5xx",
}


def label(span: Range, moment: datetime) -> str:
    local = moment.astimezone(span.zone)
    if span.hourly:
        return f"{local:%b} {local.day} {local:%H:%M %Z}"
    return f"{local:%a} {local:%b} {local.day}"


def _usd(value: Decimal | None) -> str | None:
    """Dollars for a chart as exact decimal text (never a float: money stays Decimal to the page);
    Chart.js reads numeric strings as numbers, and charts.js formats them with Number()."""
    return None if value is None else format(value, "f")


def _markers(span: Range, markers: list[AlertEntry]) -> list[dict[str, Any]]:
    return [
        {"at": span.keys.index(span.key_of(m.sent_at)), "text": _marker_text(m)}
        for m in markers
        if span.key_of(m.sent_at) in span.keys
    ]


def spend_chart(span: Range, traffic: list[Traffic], markers: list[AlertEntry]) -> dict[str, Any]:
    """Spend per bucket, with a marker where each budget alert fired."""
    return {
        "type": "bar",
        "labels": [label(span, bucket.start) for bucket in traffic],
        "unit": "USD",
        "series": [{"label": f"Spend per {span.resolution}", "data": [_usd(b.cost) for b in traffic]}],
        "markers": _markers(span, markers),
        "empty": "No spend in this range yet",
    }


def budget_chart(track: BudgetTrack, markers: list[AlertEntry]) -> dict[str, Any]:
    """The budget's period: spent so far (cumulative), the projection to its end at the rate so
    far, and the budget; alerts marked where they fired."""
    budget, span = track.status.budget, track.span
    labels = [label(span, span.bucket_start(key)) for key in span.keys]
    return {
        "type": "line",
        "labels": labels,
        "unit": "USD",
        "legend": True,
        "series": [
            {
                "label": f"Spent this {budget.period}",
                "data": [_usd(v) for v in track.cumulative],
                "fill": True,
            },
            {
                "label": "Projection",
                "data": [_usd(v) for v in track.projection],
                "dashed": True,
                "color": "#868e96",
            },
            {
                "label": f"Budget ${budget.amount.normalize():f}",
                "data": [_usd(budget.amount)] * len(labels),
                "dashed": True,
                "color": "#c92a2a",
            },
        ],
        "markers": _markers(span, markers),
        "empty": "Nothing spent this period yet",
    }


def _marker_text(marker: AlertEntry) -> str:
    alert = marker.alert
    if alert.kind == "forecast":
        return "forecast alert"
    return f"{alert.threshold} % alert"


def requests_chart(span: Range, traffic: list[Traffic]) -> dict[str, Any]:
    labels = [label(span, bucket.start) for bucket in traffic]
    series: list[dict[str, Any]] = [
        {"label": "succeeded", "data": [b.requests - b.error_count for b in traffic], "color": "#2b8a3e"}
    ]
    for name in ERROR_CLASSES:
        counts = [b.errors[name] for b in traffic]
        if any(counts):
            series.append({"label": ERROR_LABELS[name], "data": counts})
    return {"type": "bar", "labels": labels, "unit": "requests", "stacked": True, "legend": True, "series": series,
            "empty": "No calls in this range yet"}  # fmt: skip


def error_rate_chart(span: Range, traffic: list[Traffic]) -> dict[str, Any]:
    def rate(errors: int, requests: int) -> float | None:
        return None if requests == 0 else round(errors * 100 / requests, 2)

    labels = [label(span, bucket.start) for bucket in traffic]
    series: list[dict[str, Any]] = [
        {
            "label": "all errors",
            "data": [rate(b.error_count, b.requests) for b in traffic],
            "color": "#c92a2a",
        }
    ]
    for name in ERROR_CLASSES:
        if any(b.errors[name] for b in traffic):
            series.append({"label": ERROR_LABELS[name], "data": [rate(b.errors[name], b.requests) for b in traffic],
                           "dashed": True})  # fmt: skip
    return {"type": "line", "labels": labels, "unit": "%", "legend": True, "series": series,
            "empty": "No calls in this range yet"}  # fmt: skip


def tokens_chart(span: Range, models: ModelSeries) -> dict[str, Any]:
    labels = [label(span, span.bucket_start(key)) for key in span.keys]
    names = [*models.shown, *([OTHER] if OTHER in models.tokens else [])]
    return {
        "type": "bar",
        "labels": labels,
        "unit": "tokens",
        "stacked": True,
        "legend": True,
        "series": [{"label": name, "data": models.tokens[name]} for name in names],
        "empty": "No tokens in this range yet",
    }


def latency_chart(span: Range, speeds: list[Speed]) -> dict[str, Any]:
    labels = [label(span, s.start) for s in speeds]
    series = [
        {"label": "latency p50", "data": [s.latency[0] for s in speeds], "color": "#3b5bdb"},
        {"label": "latency p95", "data": [s.latency[1] for s in speeds], "color": "#7048e8"},
        {"label": "latency p99", "data": [s.latency[2] for s in speeds], "color": "#c2255c"},
        {"label": "TTFT p50", "data": [s.ttft[0] for s in speeds], "color": "#1098ad", "dashed": True},
        {"label": "TTFT p95", "data": [s.ttft[1] for s in speeds], "color": "#2b8a3e", "dashed": True},
        {"label": "TTFT p99", "data": [s.ttft[2] for s in speeds], "color": "#f08c00", "dashed": True},
    ]
    return {"type": "line", "labels": labels, "unit": "ms", "legend": True, "series": series,
            "empty": "No calls in this range yet"}  # fmt: skip


def speed_chart(span: Range, speeds: list[Speed]) -> dict[str, Any]:
    return {
        "type": "line",
        "labels": [label(span, s.start) for s in speeds],
        "unit": "tok/s",
        "legend": True,
        "series": [
            {
                "label": "output tokens per second",
                "data": [s.tokens_per_second for s in speeds],
                "color": "#e8590c",
                "fill": True,
            }
        ],
        "empty": "No completed streams in this range yet",
    }

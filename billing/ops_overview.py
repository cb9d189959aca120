"""The queries and charts of the operator overview (/ops/, billing.views_ops_overview): the whole
gateway over a range, in UTC.

Everything comes from the hourly rollups, never the raw rows: spend and requests per tenant from
the tenant hours (UsageHourlyTenant), per requested model from the model hours (UsageHourlyModel),
error rates, latency percentiles and upstream attempts per provider and deployment from the
deployment hours (UsageHourlyDeployment). Each is summed per bucket of the range (an hour, or a UTC
day) in SQL; percentiles are read off the summed latency histograms (billing/histograms.py). The
biggest few tenants and models get a series of their own, the rest one "others" series. Money stays
Decimal, and reaches the charts as decimal text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import reduce
from operator import add
from typing import Any

from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDate

from accounts.models import Tenant
from billing import histograms
from billing.charts import label
from billing.models import (
    ERROR_CLASSES,
    BudgetAlert,
    ReconcileRun,
    UsageHourlyDeployment,
    UsageHourlyModel,
    UsageHourlyTenant,
)
from billing.overview import Range, _bucketed

SERIES_LIMIT = 6  # tenants / models with a series of their own; the rest are summed as "others"
OTHER_TENANTS = "(other tenants)"
OTHER_MODELS = "(other models)"
_ERRORS = reduce(add, (F(name) for name in ERROR_CLASSES))
# The errors that say an upstream is unwell (not the caller's mistakes): 5xx and broken streams.
_UPSTREAM_ERRORS = F("errors_5xx")


def _usd(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


# --- spend and requests by tenant and by model ------------------------------------------------------


@dataclass
class Split:
    """A total per bucket for the biggest few (by spend) and the rest: what a stacked chart draws."""

    names: list[str]  # the series, biggest first ("others" last, when there are others)
    cost: dict[str, list[Decimal]]
    requests: dict[str, list[int]]
    totals: list[tuple[str, int, Decimal]]  # (name, requests, cost) over the range, biggest first

    @property
    def empty(self) -> bool:
        return not self.totals


def _split(rows: dict[tuple[Any, ...], Any], span: Range, name_of: dict[Any, str], others: str) -> Split:
    totals: dict[Any, list[Any]] = {}
    for (_, who), row in rows.items():
        total = totals.setdefault(who, [0, Decimal(0)])
        total[0] += int(row["n"])
        total[1] += Decimal(row["usd"])
    ranked = sorted(totals.items(), key=lambda item: (-item[1][1], -item[1][0], str(item[0])))
    shown = [who for who, _ in ranked[:SERIES_LIMIT]]
    names = [name_of.get(who, str(who)) for who in shown]
    if len(ranked) > SERIES_LIMIT:
        names.append(others)
    position = {key: index for index, key in enumerate(span.keys)}
    cost = {name: [Decimal(0)] * len(span.keys) for name in names}
    requests = {name: [0] * len(span.keys) for name in names}
    series_of = {who: name_of.get(who, str(who)) for who in shown}
    for (key, who), row in rows.items():
        at = position.get(key)
        if at is None:
            continue
        name = series_of.get(who, others)
        cost[name][at] += Decimal(row["usd"])
        requests[name][at] += int(row["n"])
    return Split(
        names=names,
        cost=cost,
        requests=requests,
        totals=[(name_of.get(who, str(who)), int(n), usd) for who, (n, usd) in ranked],
    )


def by_tenant(*, span: Range) -> Split:
    """Spend and requests per bucket of the biggest tenants (by spend over the range) and the rest."""
    rows = _bucketed(UsageHourlyTenant.objects.all(), span, "tenant_id", n=Sum("requests"), usd=Sum("cost"))
    ids = {who for _, who in rows}
    names = {pk: name for pk, name in Tenant.objects.filter(pk__in=ids).values_list("pk", "name")}
    names[0] = "(no tenant)"
    label_of = {pk: names.get(pk, f"deleted tenant #{pk}") for pk in ids}
    return _split(rows, span, label_of, OTHER_TENANTS)


def by_model(*, span: Range) -> Split:
    """Spend and requests per bucket of the biggest requested models (every tenant's) and the rest."""
    rows = _bucketed(
        UsageHourlyModel.objects.all(), span, "requested_model", n=Sum("requests"), usd=Sum("cost")
    )
    label_of = {name: name or "(no model)" for _, name in rows}
    return _split(rows, span, label_of, OTHER_MODELS)


# --- providers and deployments ------------------------------------------------------------------------

_LATENCY = histograms.COLUMNS["latency"]
_HEALTH_SUMS = {
    "n": Sum("requests"),
    "e": Sum(_ERRORS),
    "u": Sum(_UPSTREAM_ERRORS),
    "usd": Sum("cost"),
    "attempts": Sum("upstream_attempts"),
    "failures": Sum("upstream_failures"),
    "r429": Sum("upstream_429s"),
    **{name: Sum(name) for name in _LATENCY},
}


def _millis(micros: float | None) -> float | None:
    return None if micros is None else round(micros / 1000, 1)


@dataclass
class Health:
    """A provider's or a deployment's calls over the range (latencies in ms, from the histogram)."""

    name: str
    requests: int = 0
    errors: int = 0
    upstream_errors: int = 0
    cost: Decimal = Decimal(0)
    attempts: int = 0
    failures: int = 0
    rate_limited: int = 0  # upstream 429s
    latency: list[int] = field(default_factory=lambda: [0] * histograms.BUCKETS)
    deployment_id: int = 0
    state: str = ""  # breaker: "open", "half_open", "failing" or "" (closed)
    # A deployment's route, its routing strategy and the deployment's share (%) of the calls the
    # route's deployments served in the range: how the strategy split the traffic.
    route: str = ""
    strategy: str = ""
    share: float | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.requests += int(row["n"])
        self.errors += int(row["e"])
        self.upstream_errors += int(row["u"])
        self.cost += Decimal(row["usd"])
        self.attempts += int(row["attempts"])
        self.failures += int(row["failures"])
        self.rate_limited += int(row["r429"])
        for index, name in enumerate(_LATENCY):
            self.latency[index] += int(row[name])

    @property
    def error_rate(self) -> float | None:
        return None if not self.requests else round(self.errors * 100 / self.requests, 2)

    @property
    def failure_rate(self) -> float | None:
        return None if not self.attempts else round(self.failures * 100 / self.attempts, 2)

    def percentile(self, q: float) -> float | None:
        return _millis(histograms.percentile(self.latency, q))

    @property
    def p50(self) -> float | None:
        return self.percentile(0.50)

    @property
    def p95(self) -> float | None:
        return self.percentile(0.95)

    @property
    def p99(self) -> float | None:
        return self.percentile(0.99)


@dataclass
class ProviderHealth:
    providers: list[Health]  # by requests, most first
    deployments: list[Health]  # by requests, most first (attempt-only rows too)
    error_rate: dict[str, list[float | None]]  # per provider, per bucket (%)
    p95: dict[str, list[float | None]]  # per provider, per bucket (ms)
    rate_limited: dict[int, list[int]]  # upstream 429s per deployment (those with any), per bucket


NO_PROVIDER = "(no upstream)"


def provider_health(*, span: Range, deployment_names: dict[int, str]) -> ProviderHealth:
    """Calls, errors, latency percentiles and upstream attempts per provider and per deployment,
    over the range and per bucket. `deployment_names`: what to call each deployment id."""
    rows = _bucketed(UsageHourlyDeployment.objects.all(), span, "provider", "deployment_id", **_HEALTH_SUMS)
    providers: dict[str, Health] = {}
    deployments: dict[int, Health] = {}
    position = {key: index for index, key in enumerate(span.keys)}
    per_bucket: dict[str, list[Health]] = {}
    rate_limited: dict[int, list[int]] = {}
    for (key, provider, deployment_id), row in rows.items():
        if provider:  # "" holds only attempts at a deployment that did not serve the call
            name = provider
        elif deployment_id:
            name = ""
        else:
            name = NO_PROVIDER
        if name:
            providers.setdefault(name, Health(name=name)).add(row)
            at = position.get(key)
            if at is not None:
                buckets = per_bucket.setdefault(name, [Health(name=name) for _ in span.keys])
                buckets[at].add(row)
        if deployment_id:
            health = deployments.get(deployment_id)
            if health is None:
                label_text = deployment_names.get(deployment_id, f"deleted deployment #{deployment_id}")
                health = deployments[deployment_id] = Health(name=label_text, deployment_id=deployment_id)
            health.add(row)
            if int(row["r429"]):
                at = position.get(key)
                if at is not None:
                    rate_limited.setdefault(deployment_id, [0] * len(span.keys))[at] += int(row["r429"])
    ranked = sorted(providers.values(), key=lambda h: (-h.requests, h.name))
    return ProviderHealth(
        providers=ranked,
        deployments=sorted(deployments.values(), key=lambda h: (-h.requests, -h.attempts, h.name)),
        error_rate={h.name: [b.error_rate for b in per_bucket[h.name]] for h in ranked[:SERIES_LIMIT]},
        p95={h.name: [b.p95 for b in per_bucket[h.name]] for h in ranked[:SERIES_LIMIT]},
        rate_limited=rate_limited,
    )


def deployment_ids(*, span: Range) -> list[int]:
    """The deployments with calls or attempts in the range (to name them)."""
    return list(
        UsageHourlyDeployment.objects.filter(hour__gte=span.start, hour__lt=span.end, deployment_id__gt=0)
        .order_by("deployment_id")
        .values_list("deployment_id", flat=True)
        .distinct()
    )


# --- budget alerts and the last reconcile ---------------------------------------------------------------


@dataclass(frozen=True)
class SentAlert:
    tenant: str
    tenant_slug: str
    budget: str
    kind: str
    threshold: int
    spend: Decimal
    sent_at: datetime


def alerts_per_day(*, span: Range) -> tuple[list[date], list[int]]:
    """Budget alerts sent per UTC day of the range (every tenant's)."""
    first: date = span.start.astimezone(span.zone).date()
    last: date = (span.end - timedelta(microseconds=1)).astimezone(span.zone).date()
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    counts = dict(
        BudgetAlert.objects.filter(created_at__gte=span.start, created_at__lt=span.end)
        .annotate(day=TruncDate("created_at", tzinfo=span.zone))
        .values("day")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("day", "n")
    )
    return days, [int(counts.get(day, 0)) for day in days]


def recent_alerts(*, span: Range, limit: int = 10) -> list[SentAlert]:
    rows = (
        BudgetAlert.objects.filter(created_at__gte=span.start, created_at__lt=span.end)
        .select_related("budget__tenant", "budget__api_key")
        .order_by("-created_at", "-id")[:limit]
    )
    result = []
    for alert in rows:
        budget = alert.budget
        scope = budget.scope if budget.api_key is None else f"key {budget.api_key.name}"
        result.append(
            SentAlert(
                tenant=budget.tenant.name,
                tenant_slug=budget.tenant.slug,
                budget=f"{scope}, {budget.period}ly ${budget.amount.normalize():f}",
                kind=alert.kind,
                threshold=alert.threshold,
                spend=alert.spend,
                sent_at=alert.created_at,
            )
        )
    return result


def last_reconcile() -> ReconcileRun | None:
    return ReconcileRun.objects.order_by("-ran_at", "-id").first()


# --- chart specs (static/console/charts.js) -------------------------------------------------------------


def _labels(span: Range) -> list[str]:
    return [label(span, span.bucket_start(key)) for key in span.keys]


def split_charts(span: Range, split: Split, what: str) -> dict[str, dict[str, Any]]:
    labels = _labels(span)
    return {
        "spend": {
            "type": "bar",
            "labels": labels,
            "unit": "USD",
            "stacked": True,
            "legend": True,
            "series": [{"label": name, "data": [_usd(v) for v in split.cost[name]]} for name in split.names],
            "empty": f"No spend by any {what} in this range yet",
        },
        "requests": {
            "type": "bar",
            "labels": labels,
            "unit": "requests",
            "stacked": True,
            "legend": True,
            "series": [{"label": name, "data": split.requests[name]} for name in split.names],
            "empty": f"No calls by any {what} in this range yet",
        },
    }


def health_charts(span: Range, health: ProviderHealth, names: dict[int, str]) -> dict[str, dict[str, Any]]:
    labels = _labels(span)
    return {
        "errors": {
            "type": "line",
            "labels": labels,
            "unit": "%",
            "legend": True,
            "series": [{"label": name, "data": data} for name, data in health.error_rate.items()],
            "empty": "No calls in this range yet",
        },
        "latency": {
            "type": "line",
            "labels": labels,
            "unit": "ms",
            "legend": True,
            "series": [{"label": f"{name} p95", "data": data} for name, data in health.p95.items()],
            "empty": "No calls in this range yet",
        },
        "rate_limited": {
            "type": "bar",
            "labels": labels,
            "unit": "requests",
            "stacked": True,
            "legend": True,
            "series": [
                {"label": names.get(deployment, f"deployment #{deployment}"), "data": data}
                for deployment, data in sorted(health.rate_limited.items())
            ],
            "empty": "No upstream refused a call with 429 in this range",
        },
    }


def alerts_chart(days: Sequence[date], counts: Sequence[int]) -> dict[str, Any]:
    return {
        "type": "bar",
        "labels": [f"{day:%a} {day:%b} {day.day}" for day in days],
        "unit": "alerts",
        "legend": True,
        "series": [{"label": "budget alerts sent per day", "data": list(counts), "color": "#c92a2a"}],
        "empty": "No budget alert was sent in this range",
    }

"""The operator overview, /ops/ (`billing_ops:overview`): the whole gateway over a range, in UTC.

Spend and requests by tenant and by model; error rates, latency percentiles and upstream 429s by
provider and deployment; deployments in cooldown (the circuit breakers, read through
gateway.ops_health, imported here in the view: billing never imports gateway at module level); the
usage pipeline's lag; the last usage_reconcile; budget alerts sent. Only operators get in
(accounts.access.operator_page: everyone else, anonymous included, gets a 404).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.access import operator_page
from billing import ops_overview, overview
from billing.forms import RangeForm
from billing.usage import pipeline_state


def _range(data: Any) -> tuple[overview.Range, RangeForm]:
    """The range the query string asks for, in UTC; the last 7 days (and the form's errors) if wrong."""
    form = RangeForm(data)
    if form.is_valid():
        try:
            span = overview.overview_range(
                tenant=None,
                preset=form.cleaned_data["range"],
                first_day=form.cleaned_data.get("first"),
                last_day=form.cleaned_data.get("last"),
            )
            return span, form
        except overview.RangeError as exc:
            form.add_error(None, str(exc))
    return overview.overview_range(tenant=None, preset="7d"), form


def _pipeline() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"embedded": True, "flush_seconds": settings.TOLLHOUSE_USAGE_FLUSH_SECONDS}
    try:
        return {"state": pipeline_state()}
    except (redis.RedisError, OSError) as exc:
        return {"error": f"Redis could not be read ({type(exc).__name__}): the pipeline's state is unknown."}


@require_GET
@operator_page
def overview_page(request: HttpRequest) -> HttpResponse:
    from gateway.ops_health import breaker_health, deployment_labels

    span, range_form = _range(request.GET)
    tenants = ops_overview.by_tenant(span=span)
    models = ops_overview.by_model(span=span)
    breakers = breaker_health()
    labels = deployment_labels([*ops_overview.deployment_ids(span=span), *breakers.states])
    names = {pk: str(label) for pk, label in labels.items()}
    health = ops_overview.provider_health(span=span, deployment_names=names)
    # How each route's strategy split its calls between its deployments (issue 16): a deployment's
    # share of the calls its route's deployments served in the range.
    route_calls: dict[str, int] = {}
    for deployment in health.deployments:
        deployment.state = breakers.states.get(deployment.deployment_id, "")
        label = labels.get(deployment.deployment_id)
        deployment.route = label.route if label else ""
        deployment.strategy = label.strategy.replace("_", " ") if label else ""
        if label:
            route_calls[label.route] = route_calls.get(label.route, 0) + deployment.requests
    for deployment in health.deployments:
        total = route_calls.get(deployment.route, 0)
        deployment.share = round(deployment.requests * 100 / total, 1) if total else None
    days, alert_counts = ops_overview.alerts_per_day(span=span)
    requests = sum(n for _, n, _ in tenants.totals)
    errors = sum(provider.errors for provider in health.providers)
    context = {
        "span": span,
        "range_form": range_form,
        "presets": overview.PRESETS,
        "total_cost": sum((usd for _, _, usd in tenants.totals), start=Decimal(0)),
        "requests": requests,
        "requests_text": f"{requests:,}",
        "error_rate": round(errors * 100 / requests, 2) if requests else None,
        "tenant_count": len(tenants.totals),
        "tenants": tenants,
        "models": models,
        "health": health,
        "breakers": breakers,
        "pipeline": _pipeline(),
        "reconcile": ops_overview.last_reconcile(),
        "alerts": ops_overview.recent_alerts(span=span),
        "alert_total": sum(alert_counts),
        "charts": {
            "tenants": ops_overview.split_charts(span, tenants, "tenant"),
            "models": ops_overview.split_charts(span, models, "model"),
            "health": ops_overview.health_charts(span, health, names),
            "alerts": ops_overview.alerts_chart(days, alert_counts),
        },
    }
    return render(request, "billing/ops_overview.html", context)

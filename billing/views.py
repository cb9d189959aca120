"""Console pages of billing: overview, budgets, credits, usage explorer and its CSV export.

Each goes through `accounts.access.tenant_page(action)`: anonymous → sign-in, another tenant → 404,
a role without the action → 403. Reads go through billing/overview.py and billing/selectors.py,
writes through the services (billing/budgets.py, billing/credits.py), which write the audit log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import can, tenant_page
from accounts.audit import Actor
from billing import charts, overview, selectors
from billing.alerts import budget_webhook_test_send
from billing.budgets import budget_delete, budget_set
from billing.credits import WRONG_CODE, code_redeem, credit_balance, redeem_counters, redeem_throttle
from billing.forms import BudgetForm, RangeForm, RedeemForm, UsageFilterForm
from billing.models import Budget
from config import clientip


def _range(tenant: Any, data: Any) -> tuple[overview.Range, RangeForm]:
    """The range the query string asks for; the last 7 days (and the form's errors) if it is wrong."""
    form = RangeForm(data)
    if form.is_valid():
        try:
            span = overview.overview_range(
                tenant=tenant,
                preset=form.cleaned_data["range"],
                first_day=form.cleaned_data.get("first"),
                last_day=form.cleaned_data.get("last"),
            )
            return span, form
        except overview.RangeError as exc:
            form.add_error(None, str(exc))
    return overview.overview_range(tenant=tenant, preset="7d"), form


def _base_url() -> str:
    return f"{settings.TOLLHOUSE_PUBLIC_URL}/v1"


def _picked(tenant: Any, request: HttpRequest) -> tuple[str | None, int | None]:
    """The latency chart's model and key (another tenant's key id: 404)."""
    model = request.GET.get("model") or None
    if model is not None and (len(model) > 200 or "\x00" in model):
        raise Http404
    key_text = request.GET.get("key") or ""
    key_id: int | None = None
    if key_text:
        if not key_text.isascii() or not key_text.isdigit() or len(key_text) > 18:
            raise Http404
        key_id = int(key_text)
        if key_id != 0 and not any(key.pk == key_id for key in selectors.tenant_keys(tenant=tenant)):
            raise Http404
    return model, key_id


@require_GET
@tenant_page("overview.view")
def overview_page(request: HttpRequest, *, tenant: Any, membership: Any) -> HttpResponse:
    span, range_form = _range(tenant, request.GET)
    traffic = overview.traffic_series(tenant=tenant, span=span)
    speeds = overview.latency_series(tenant=tenant, span=span)
    models = overview.tokens_by_model(tenant=tenant, span=span)
    track = selectors.budget_track(tenant=tenant, span=span)
    markers = selectors.alert_markers(tenant=tenant, span=span)
    total_cost = sum((bucket.cost for bucket in traffic), start=Decimal(0))
    requests = sum(bucket.requests for bucket in traffic)
    errors = sum(bucket.error_count for bucket in traffic)
    context = {
        "span": span,
        "range_form": range_form,
        "presets": overview.PRESETS,
        "never_called": not selectors.tenant_has_calls(tenant=tenant),
        "base_url": _base_url(),
        "public_url": settings.TOLLHOUSE_PUBLIC_URL,
        "keys_url": reverse("accounts:keys", args=[tenant.slug]),
        "total_cost": total_cost,
        "saved_cost": sum((bucket.saved_cost for bucket in traffic), start=Decimal(0)),
        "cache_hits": sum(bucket.cache_hits for bucket in traffic),
        "requests": f"{requests:,}",
        "errors": errors,
        "error_rate": round(errors * 100 / requests, 2) if requests else None,
        "track": track,
        "markers": markers,
        "top_keys": overview.top_spenders(tenant=tenant, span=span, by="key"),
        "top_models": [model for model in models.models[:10]],
        "top_end_users": overview.top_spenders(tenant=tenant, span=span, by="end_user"),
        "latency_models": [model.model for model in models.models],
        "latency_keys": selectors.tenant_keys(tenant=tenant),
        "latency_url": reverse("billing:latency", args=[tenant.slug]),
        "range_query": urlencode({k: v for k, v in request.GET.items() if k in ("range", "first", "last")}),
        "charts": {
            "spend": charts.spend_chart(span, traffic, markers),
            "budget": charts.budget_chart(track, selectors.alert_markers(tenant=tenant, span=track.span))
            if track
            else None,
            "requests": charts.requests_chart(span, traffic),
            "errors": charts.error_rate_chart(span, traffic),
            "tokens": charts.tokens_chart(span, models),
            "latency": charts.latency_chart(span, speeds),
            "speed": charts.speed_chart(span, speeds),
        },
    }
    return render(request, "billing/overview.html", context)


@require_GET
@tenant_page("overview.view")
def latency_json(request: HttpRequest, *, tenant: Any, membership: Any) -> HttpResponse:
    """The latency and output-speed charts for one model and/or key (the overview's picker)."""
    span, form = _range(tenant, request.GET)
    if form.errors:
        return JsonResponse(
            {"error": " ".join(str(e) for errors in form.errors.values() for e in errors)}, status=400
        )
    model, key_id = _picked(tenant, request)
    speeds = overview.latency_series(tenant=tenant, span=span, model=model, api_key_id=key_id)
    return JsonResponse(
        {"latency": charts.latency_chart(span, speeds), "speed": charts.speed_chart(span, speeds)}
    )


# --- budgets ------------------------------------------------------------------------------------------


def _budget_initial(budget: Budget) -> dict[str, Any]:
    return {
        "scope": budget.scope,
        "api_key": str(budget.api_key_id or ""),
        "end_user": budget.end_user,
        "amount": format(budget.amount.normalize(), "f"),  # 20, 30.5: not 20.000000000 (nor 2E+1)
        "period": budget.period,
        "hard": budget.hard,
        "thresholds": ", ".join(str(t) for t in budget.thresholds),
        "emails": "\n".join(budget.emails),
        "webhook_url": budget.webhook_url,
    }


_FIELD_OF = {"amount": "amount", "thresholds": "thresholds", "emails": "emails", "webhook_url": "webhook_url",
             "api_key": "api_key", "end_user": "end_user", "period": "period"}  # fmt: skip


def _budget_save(request: HttpRequest, tenant: Any, form: BudgetForm) -> bool:
    data = form.cleaned_data
    keys = {key.pk: key for key in selectors.tenant_keys(tenant=tenant)}
    api_key = None
    if data["scope"] == Budget.Scope.KEY:
        api_key = keys.get(int(data["api_key"])) if data["api_key"] else None
        if api_key is None:
            form.add_error("api_key", "Choose the key this budget is for.")
            return False
    try:
        budget_set(
            tenant=tenant,
            api_key=api_key,
            end_user=data["end_user"] if data["scope"] == Budget.Scope.END_USER else None,
            usd=data["amount"],
            period=data["period"],
            hard=data["hard"],
            thresholds=data["thresholds"],
            emails=data["emails"],
            webhook_url=data["webhook_url"],
            actor=Actor.console(request.user),
        )
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, errors in exc.message_dict.items():
                form.add_error(_FIELD_OF.get(field), errors)
        else:
            form.add_error(None, exc.messages)
        return False
    return True


@require_http_methods(["GET", "POST"])
@tenant_page("budgets.view")
def budgets_page(request: HttpRequest, *, tenant: Any, membership: Any) -> HttpResponse:
    keys = selectors.tenant_keys(tenant=tenant)
    editing = None
    if request.method == "POST":
        if not can(membership, "budgets.edit"):
            return HttpResponse("Your role may not change budgets.", status=403)
        form = BudgetForm(request.POST, keys=keys)
        if form.is_valid() and _budget_save(request, tenant, form):
            messages.success(request, "Budget saved.")
            return redirect("billing:budgets", slug=tenant.slug)
        status = 400
    else:
        edit_id = request.GET.get("edit", "")
        if edit_id:
            editing = selectors.budget_for_tenant(tenant=tenant, budget_id=_id(edit_id))
            if editing is None:
                raise Http404
        form = BudgetForm(initial=_budget_initial(editing) if editing else None, keys=keys)
        status = 200
    context = {
        "statuses": selectors.budgets_for_tenant(tenant=tenant),
        "history": selectors.alert_history(tenant=tenant),
        "form": form,
        "editing": editing,
    }
    return render(request, "billing/budgets.html", context, status=status)


def _id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise Http404
    return int(text)


def _budget(tenant: Any, budget_id: str) -> Budget:
    budget = selectors.budget_for_tenant(tenant=tenant, budget_id=_id(budget_id))
    if budget is None:
        raise Http404
    return budget


@require_POST
@tenant_page("budgets.edit")
def budget_remove(request: HttpRequest, *, tenant: Any, membership: Any, budget_id: str) -> HttpResponse:
    budget_delete(budget=_budget(tenant, budget_id), actor=Actor.console(request.user))
    messages.success(request, "Budget deleted.")
    return redirect("billing:budgets", slug=tenant.slug)


@require_POST
@tenant_page("budgets.edit")
def budget_webhook_test(
    request: HttpRequest, *, tenant: Any, membership: Any, budget_id: str
) -> HttpResponse:
    status, error = budget_webhook_test_send(budget=_budget(tenant, budget_id))
    if error:
        messages.error(request, f"The test was not delivered: {error}")
    else:
        messages.success(request, f"Test delivered (HTTP {status}).")
    return redirect("billing:budgets", slug=tenant.slug)


# --- credits ------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@tenant_page("credits.view")
def credits_page(request: HttpRequest, *, tenant: Any, membership: Any) -> HttpResponse:
    form = RedeemForm()
    status = 200
    if request.method == "POST":
        if not can(membership, "credits.redeem"):
            return HttpResponse("Your role may not redeem codes.", status=403)
        counters = redeem_counters(tenant=tenant, client_ip=clientip.from_meta(request.META))
        if any(redeem_throttle.failures(counter) >= redeem_throttle.limit for counter in counters):
            response = HttpResponse("Too many wrong codes. Try again later.", status=429)
            response["Retry-After"] = str(redeem_throttle.retry_after())
            return response
        form = RedeemForm(request.POST)
        if form.is_valid():
            try:
                entry = code_redeem(
                    tenant=tenant, code=form.cleaned_data["code"], actor=Actor.console(request.user)
                )
            except ValidationError:
                # Unknown, expired and already redeemed read alike: a guesser learns nothing.
                form.add_error("code", WRONG_CODE)
                for counter in counters:
                    redeem_throttle.failed(counter)
            else:
                messages.success(request, f"Redeemed: {entry.amount.normalize():f} USD added.")
                return redirect("billing:credits", slug=tenant.slug)
        status = 400
    try:
        page = selectors.credit_ledger_page(tenant=tenant, after=request.GET.get("after", ""))
    except selectors.BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    context = {"balance": credit_balance(tenant), "page": page, "form": form}
    return render(request, "billing/credits.html", context, status=status)


# --- usage explorer -----------------------------------------------------------------------------------


def _usage_filter(tenant: Any, data: Any) -> tuple[selectors.UsageFilter | None, UsageFilterForm]:
    form = UsageFilterForm(data, keys=selectors.tenant_keys(tenant=tenant))
    if not form.is_valid():
        return None, form
    try:
        span = overview.overview_range(
            tenant=tenant,
            preset=form.cleaned_data["range"],
            first_day=form.cleaned_data.get("first"),
            last_day=form.cleaned_data.get("last"),
        )
    except overview.RangeError as exc:
        form.add_error(None, str(exc))
        return None, form
    key = form.cleaned_data.get("key")
    query = selectors.UsageFilter(
        start=span.start,
        end=span.end,
        api_key_id=int(key) if key else None,
        model=form.cleaned_data.get("model") or "",
        end_user=form.cleaned_data.get("end_user") or "",
        status_class=form.cleaned_data.get("status") or "",
    )
    return query, form


@require_GET
@tenant_page("usage.view")
def usage_page(request: HttpRequest, *, tenant: Any, membership: Any) -> HttpResponse:
    query, form = _usage_filter(tenant, request.GET)
    page = None
    if query is not None:
        try:
            page = selectors.usage_page(tenant=tenant, query=query, after=request.GET.get("after", ""))
        except selectors.BadCursor as exc:
            form.add_error(None, str(exc))
    params = {k: v for k, v in request.GET.items() if k != "after"}
    keys = {key.pk: key for key in selectors.tenant_keys(tenant=tenant)}
    context = {
        "form": form,
        "page": page,
        "rows": [(row, keys.get(row.api_key_id or 0)) for row in page.rows] if page else [],
        "query_string": urlencode(params),
        "next_url": f"?{urlencode({**params, 'after': page.next_cursor})}"
        if page and page.next_cursor
        else "",
        "csv_url": reverse("billing:usage_csv", args=[tenant.slug])
        + (f"?{urlencode(params)}" if params else ""),
        "never_called": not selectors.tenant_has_calls(tenant=tenant),
        "base_url": _base_url(),
        "public_url": settings.TOLLHOUSE_PUBLIC_URL,
        "keys_url": reverse("accounts:keys", args=[tenant.slug]),
    }
    return render(request, "billing/usage.html", context, status=200 if query is not None else 400)


@require_GET
@tenant_page("usage.view")
def usage_detail(request: HttpRequest, *, tenant: Any, membership: Any, record_id: str) -> HttpResponse:
    record = selectors.usage_record_for(tenant=tenant, record_id=_id(record_id))
    if record is None:
        raise Http404
    key = next((k for k in selectors.tenant_keys(tenant=tenant) if k.pk == record.api_key_id), None)
    context = {
        "record": record,
        "key": key,
        "body_log": selectors.body_log_for(tenant=tenant, request_id=record.request_id),
        "body_logging": tenant.body_logging,
    }
    return render(request, "billing/usage_detail.html", context)


@tenant_page("usage.export")
def _export_allowed(request: HttpRequest, *, tenant: Any, membership: Any) -> HttpResponse:
    # The access check of the export, run (sync) before the async view streams; 204 means go on.
    return HttpResponse(status=204)


async def usage_csv(request: HttpRequest, slug: str) -> HttpResponse | StreamingHttpResponse:
    """The explorer's filtered range as CSV, streamed: the header goes out at once, then a keyset
    query per chunk of rows, each on a worker thread, so memory stays flat for millions of rows."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    gate: HttpResponse = await sync_to_async(_export_allowed)(request, slug)  # type: ignore[call-arg]
    if gate.status_code != 204:
        return gate
    tenant = request.tenant  # type: ignore[attr-defined]
    query, form = await sync_to_async(_usage_filter)(tenant, request.GET)
    if query is None:
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        return HttpResponseBadRequest(errors, content_type="text/plain; charset=utf-8")
    chunks = selectors.usage_csv_chunks(tenant=tenant, query=query)

    def next_chunk() -> str | None:
        return next(chunks, None)

    async def stream() -> AsyncIterator[str]:
        while True:
            chunk = await sync_to_async(next_chunk)()
            if chunk is None:
                return
            yield chunk

    stamp = timezone.now().astimezone(ZoneInfo(tenant.timezone))
    name = f"usage-{tenant.slug}-{stamp:%Y%m%d-%H%M}.csv"
    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response

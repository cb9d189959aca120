"""The operator console's prices page (/ops/prices/, `billing_ops:prices`): per upstream model the
price in force and the next scheduled one, a model's history, and price changes with an effective
date that is never in the past (billing.services.model_price_schedule). A price in force is
immutable; a scheduled one may be edited or withdrawn until it takes effect."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import operator_page
from accounts.audit import Actor
from billing import selectors, services
from billing.models import ModelPrice

PAGE_SIZE = 50


def _price_field(label: str, *, required: bool = True, help_text: str = "") -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        required=required,
        min_value=Decimal(0),
        max_value=services.MAX_PRICE,
        max_digits=20,
        decimal_places=9,
        help_text=help_text,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )


class PriceForm(forms.Form):
    """USD per million tokens, from a moment (UTC) that is now or later."""

    model = forms.CharField(
        max_length=200,
        label="Upstream model",
        help_text="The model id a deployment names.",
        widget=forms.TextInput(attrs={"list": "upstream-models", "autocomplete": "off"}),
    )
    effective_from = forms.DateTimeField(
        required=False,
        label="In force from (UTC)",
        help_text="Now or later; empty: at once. Prices already in force never change.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    input_per_mtok = _price_field("Input")
    cached_input_per_mtok = _price_field("Cached input")
    cache_write_per_mtok = _price_field("Cache write", required=False, help_text="Empty: as input.")
    cache_write_1h_per_mtok = _price_field(
        "Cache write, 1 hour", required=False, help_text="Empty: as cache write."
    )
    output_per_mtok = _price_field("Output")

    def clean_model(self) -> str:
        model: str = self.cleaned_data["model"].strip()
        if not model or any(not ch.isprintable() for ch in model):
            raise forms.ValidationError("Enter the upstream model id, as a deployment names it.")
        return model


def _save(request: HttpRequest, form: PriceForm, *, price: ModelPrice | None = None) -> ModelPrice | None:
    if not form.is_valid():
        return None
    data = form.cleaned_data
    try:
        return services.model_price_schedule(
            model=data["model"],
            input_per_mtok=data["input_per_mtok"],
            cached_input_per_mtok=data["cached_input_per_mtok"],
            output_per_mtok=data["output_per_mtok"],
            cache_write_per_mtok=data["cache_write_per_mtok"],
            cache_write_1h_per_mtok=data["cache_write_1h_per_mtok"],
            effective_from=data["effective_from"],
            price=price,
            actor=Actor.console(request.user),
        )
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, errors in exc.error_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form.add_error(None, exc)
        return None


def _known_models() -> list[str]:
    from django.apps import apps

    deployment = apps.get_model("gateway", "Deployment")  # billing needs nothing from gateway's code
    names = deployment.objects.order_by("upstream_model").values_list("upstream_model", flat=True).distinct()
    return list(names[:500])


@operator_page
@require_http_methods(["GET", "POST"])
def prices(request: HttpRequest) -> HttpResponse:
    model = request.GET.get("model", "")[:200]
    initial: dict[str, Any] = {"model": model} if model else {}
    form = PriceForm(request.POST or None, initial=initial)
    if request.method == "POST":
        saved = _save(request, form)
        if saved is not None:
            when = (
                "at once"
                if saved.effective_from <= timezone.now()
                else f"from {saved.effective_from:%Y-%m-%d %H:%M} UTC"
            )
            messages.success(request, f"Price of {saved.model} set, in force {when}.")
            return redirect(_model_url(saved.model))
    now = timezone.now()
    search = request.GET.get("q", "").strip()[:200]
    names, more = selectors.price_models_page(
        after=request.GET.get("after", "")[:200], search=search, limit=PAGE_SIZE
    )
    views = selectors.prices_for_models(names, at=now)
    history = list(selectors.price_history(model)[:200]) if model else []
    for price in history:
        price.in_future = price.effective_from > now  # type: ignore[attr-defined]
    current = selectors.prices_for_models([model], at=now)[model] if model else None
    context = {
        "form": form,
        "rows": [views[name] for name in names],
        "more": more,
        "next_after": names[-1] if more and names else "",
        "search": search,
        "model": model,
        "history": history,
        "current": current,
        "known_models": _known_models(),
        "now": now,
    }
    return render(request, "billing/ops_prices.html", context, status=400 if form.errors else 200)


def _scheduled(price_id: int) -> ModelPrice:
    price: ModelPrice | None = ModelPrice.objects.filter(pk=price_id).first()
    if price is None:
        raise Http404("No such price.")
    return price


@operator_page
@require_http_methods(["GET", "POST"])
def price_edit(request: HttpRequest, price_id: int) -> HttpResponse:
    price = _scheduled(price_id)
    if price.effective_from <= timezone.now():
        messages.error(request, "That price is in force and cannot change: schedule a new one instead.")
        return redirect(_model_url(price.model))
    initial = {name: getattr(price, name) for name in ("model", "effective_from", *services.PRICE_FIELDS)}
    form = PriceForm(request.POST or None, initial=initial)
    if request.method == "POST":
        saved = _save(request, form, price=price)
        if saved is not None:
            messages.success(request, f"Scheduled price of {saved.model} saved.")
            return redirect(_model_url(saved.model))
    context = {"form": form, "price": price}
    return render(request, "billing/ops_price_edit.html", context, status=400 if form.errors else 200)


@operator_page
@require_POST
def price_delete(request: HttpRequest, price_id: int) -> HttpResponse:
    price = _scheduled(price_id)
    try:
        services.model_price_delete(price=price, actor=Actor.console(request.user))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request, f"Scheduled price of {price.model} from {price.effective_from:%Y-%m-%d %H:%M} withdrawn."
        )
    return redirect(_model_url(price.model))


def _model_url(model: str) -> str:
    """The prices page showing `model`'s history."""
    return f"{reverse('billing_ops:prices')}?{urlencode({'model': model})}"

"""The operator console's providers and routes pages (/ops/providers/, /ops/routes/).

Every view goes through `@operator_page` (404 for anyone who is not an operator), reads through
gateway/selectors.py and writes through gateway/services.py with the signed-in operator as the
audit log's actor. A provider's credential is write-only: the pages show where it comes from and a
mask (gateway.selectors.credential_state), never the value, not even on the page that saved it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.forms import BaseForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import operator_page
from accounts.audit import Actor
from gateway import selectors, services
from gateway.connection import DEFAULT_PROMPT, provider_test
from gateway.forms_ops import ConnectionTestForm, DeploymentForm, ProviderForm, RouteForm
from gateway.models import Deployment, ModelRoute, Provider


def _actor(request: HttpRequest) -> Actor:
    return Actor.console(request.user)


def _errors_onto(form: BaseForm, exc: ValidationError) -> None:
    """A service's refusal, shown where it belongs: on its field when the form has it, else above."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc)


# -- providers ------------------------------------------------------------------------------------


@operator_page
def providers(request: HttpRequest) -> HttpResponse:
    rows = list(selectors.providers_for_ops())
    pairs = list(Deployment.objects.values_list("id", "provider_id"))
    states = selectors.breaker_states(deployment_id for deployment_id, _ in pairs)
    counts: dict[tuple[int, str], int] = {}  # (provider, breaker state) -> deployments
    for deployment_id, provider_id in pairs:
        if deployment_id in states:
            key = (provider_id, states[deployment_id].state)
            counts[key] = counts.get(key, 0) + 1
    for provider in rows:
        provider.credential_state = selectors.credential_state(provider)  # type: ignore[attr-defined]
        provider.cooling = counts.get((provider.pk, "open"), 0)  # type: ignore[attr-defined]
        provider.probing = counts.get((provider.pk, "half_open"), 0)  # type: ignore[attr-defined]
    return render(request, "gateway/ops_providers.html", {"rows": rows})


def _provider_page(
    request: HttpRequest,
    *,
    provider: Provider | None,
    form: ProviderForm,
    test_form: ConnectionTestForm | None = None,
    result: Any = None,
    status: int = 200,
) -> HttpResponse:
    context: dict[str, Any] = {"provider": provider, "form": form, "test_form": test_form, "result": result}
    if provider is not None:
        context["credential_state"] = selectors.credential_state(provider)
        context["deployments"] = list(
            provider.deployments.select_related("route").order_by("route__name", "priority", "id")[:200]
        )
    return render(request, "gateway/ops_provider.html", context, status=status)


def _test_form(provider: Provider, data: Any = None) -> ConnectionTestForm:
    first = provider.deployments.order_by("priority", "id").values_list("upstream_model", flat=True).first()
    return ConnectionTestForm(data, initial={"model": first or "", "prompt": DEFAULT_PROMPT})


@operator_page
@require_http_methods(["GET", "POST"])
def provider_new(request: HttpRequest) -> HttpResponse:
    form = ProviderForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            provider = services.provider_save(
                provider=form.instance,
                credential=form.cleaned_data["credential"] or None,
                actor=_actor(request),
            )
        except ValidationError as exc:
            _errors_onto(form, exc)
        else:
            messages.success(request, f"Provider {provider.name} created.")
            return redirect("gateway_ops:provider_edit", provider_id=provider.pk)
    return _provider_page(request, provider=None, form=form, status=400 if form.errors else 200)


@operator_page
@require_http_methods(["GET", "POST"])
def provider_edit(request: HttpRequest, provider_id: int) -> HttpResponse:
    provider = selectors.provider_for_ops(provider_id)
    form = ProviderForm(request.POST or None, instance=selectors.provider_for_ops(provider_id))
    if request.method == "POST" and form.is_valid():
        try:
            services.provider_save(
                provider=form.instance,
                credential=form.cleaned_data["credential"] or None,
                actor=_actor(request),
            )
        except ValidationError as exc:
            _errors_onto(form, exc)
        else:
            messages.success(request, f"Provider {form.instance.name} saved.")
            return redirect("gateway_ops:provider_edit", provider_id=provider.pk)
    return _provider_page(
        request,
        provider=provider,
        form=form,
        test_form=_test_form(provider),
        status=400 if form.errors else 200,
    )


@operator_page
@require_POST
def provider_credential_clear(request: HttpRequest, provider_id: int) -> HttpResponse:
    provider = selectors.provider_for_ops(provider_id)
    services.provider_save(provider=provider, credential="", actor=_actor(request))
    messages.success(request, f"The stored credential of {provider.name} was removed.")
    return redirect("gateway_ops:provider_edit", provider_id=provider.pk)


@operator_page
@require_POST
def provider_connection_test(request: HttpRequest, provider_id: int) -> HttpResponse:
    provider = selectors.provider_for_ops(provider_id)
    test_form = _test_form(provider, request.POST)
    result = None
    if test_form.is_valid():
        result = provider_test(
            provider=provider,
            model=test_form.cleaned_data["model"],
            prompt=test_form.cleaned_data["prompt"] or DEFAULT_PROMPT,
        )
    return _provider_page(
        request,
        provider=provider,
        form=ProviderForm(instance=provider),
        test_form=test_form,
        result=result,
        status=400 if test_form.errors else 200,
    )


# -- routes and deployments -------------------------------------------------------------------------


@operator_page
def routes(request: HttpRequest) -> HttpResponse:
    rows = list(selectors.routes_for_ops())
    prices = selectors.deployment_prices(rows, at=timezone.now())
    for route in rows:
        route.deployment_rows = list(route.deployments.all())  # type: ignore[attr-defined]
        for deployment in route.deployment_rows:  # type: ignore[attr-defined]
            deployment.price = prices.get(deployment.upstream_model)
    return render(request, "gateway/ops_routes.html", {"rows": rows})


def _route_page(
    request: HttpRequest,
    *,
    route: ModelRoute | None,
    form: RouteForm,
    deployment_form: DeploymentForm | None = None,
    status: int = 200,
) -> HttpResponse:
    context: dict[str, Any] = {"route": route, "form": form, "deployment_form": deployment_form}
    if route is not None:
        context["deployments"] = deployments = list(route.deployments.all())
        breakers = selectors.breaker_states(d.pk for d in deployments)
        prices = selectors.deployment_prices([route], at=timezone.now())
        for deployment in deployments:
            deployment.breaker = breakers.get(deployment.pk)  # type: ignore[attr-defined]
            deployment.price = prices.get(deployment.upstream_model)  # type: ignore[attr-defined]
        context["deployment_form"] = deployment_form or DeploymentForm(prefix="deployment")
    return render(request, "gateway/ops_route.html", context, status=status)


@operator_page
@require_http_methods(["GET", "POST"])
def route_new(request: HttpRequest) -> HttpResponse:
    form = RouteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            route = services.route_save(route=form.instance, actor=_actor(request))
        except ValidationError as exc:
            _errors_onto(form, exc)
        else:
            messages.success(request, f"Route {route.name} created: add its deployments below.")
            return redirect("gateway_ops:route_edit", route_id=route.pk)
    return _route_page(request, route=None, form=form, status=400 if form.errors else 200)


@operator_page
@require_http_methods(["GET", "POST"])
def route_edit(request: HttpRequest, route_id: int) -> HttpResponse:
    route = selectors.route_for_ops(route_id)
    form = RouteForm(request.POST or None, instance=selectors.route_for_ops(route_id))
    if request.method == "POST" and form.is_valid():
        try:
            services.route_save(route=form.instance, actor=_actor(request))
        except ValidationError as exc:
            _errors_onto(form, exc)
        else:
            messages.success(request, f"Route {form.instance.name} saved.")
            return redirect("gateway_ops:route_edit", route_id=route.pk)
    return _route_page(request, route=route, form=form, status=400 if form.errors else 200)


@operator_page
@require_POST
def deployment_new(request: HttpRequest, route_id: int) -> HttpResponse:
    route = selectors.route_for_ops(route_id)
    form = DeploymentForm(request.POST, prefix="deployment", instance=Deployment(route=route))
    if form.is_valid():
        try:
            deployment = services.deployment_save(deployment=form.instance, actor=_actor(request))
        except ValidationError as exc:
            _errors_onto(form, exc)
        else:
            messages.success(request, f"Deployment {deployment.provider}/{deployment.upstream_model} added.")
            return redirect("gateway_ops:route_edit", route_id=route.pk)
    return _route_page(request, route=route, form=RouteForm(instance=route), deployment_form=form, status=400)


@operator_page
@require_http_methods(["GET", "POST"])
def deployment_edit(request: HttpRequest, route_id: int, deployment_id: int) -> HttpResponse:
    route = selectors.route_for_ops(route_id)
    deployment = selectors.deployment_for_ops(route, deployment_id)
    form = DeploymentForm(request.POST or None, instance=deployment)
    if request.method == "POST" and form.is_valid():
        try:
            services.deployment_save(deployment=form.instance, actor=_actor(request))
        except ValidationError as exc:
            _errors_onto(form, exc)
        else:
            messages.success(request, "Deployment saved.")
            return redirect("gateway_ops:route_edit", route_id=route.pk)
    context = {"route": route, "deployment": selectors.deployment_for_ops(route, deployment_id), "form": form}
    return render(request, "gateway/ops_deployment.html", context, status=400 if form.errors else 200)


@operator_page
@require_POST
def deployment_toggle(request: HttpRequest, route_id: int, deployment_id: int) -> HttpResponse:
    route = selectors.route_for_ops(route_id)
    with transaction.atomic():
        deployment = selectors.deployment_for_ops(route, deployment_id)
        deployment.enabled = not deployment.enabled
        services.deployment_save(deployment=deployment, actor=_actor(request))
    state = "enabled" if deployment.enabled else "disabled"
    messages.success(request, f"Deployment {deployment.provider}/{deployment.upstream_model} {state}.")
    return redirect("gateway_ops:route_edit", route_id=route.pk)


@operator_page
@require_POST
def deployment_delete(request: HttpRequest, route_id: int, deployment_id: int) -> HttpResponse:
    route = selectors.route_for_ops(route_id)
    deployment = selectors.deployment_for_ops(route, deployment_id)
    services.deployment_delete(deployment=deployment, actor=_actor(request))
    messages.success(request, f"Deployment {deployment.provider}/{deployment.upstream_model} deleted.")
    return redirect("gateway_ops:route_edit", route_id=route.pk)

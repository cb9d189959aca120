"""The operator's plans pages, /ops/plans/: list (with how many tenants each), create, edit, delete
(refused for a plan in use). Writes go through accounts.services.plan_save / plan_delete, which
validate (allowed models must be routes or aliases) and write the audit log."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import operator_page
from accounts.audit import Actor
from accounts.forms_ops import PlanForm
from accounts.models import Plan
from accounts.selectors import plan_for_operator, plans_with_tenants
from accounts.services import looser_keys_sentence, plan_delete, plan_save


@operator_page
@require_GET
def plans(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/ops/plans.html", {"plans": list(plans_with_tenants())})


def _save(request: HttpRequest, plan: Plan, form: PlanForm) -> bool:
    """Apply the form to `plan` and save it through the service; False (errors on the form) if refused."""
    for name in PlanForm.FIELDS:
        setattr(plan, name, form.cleaned_data[name])
    try:
        plan_save(plan=plan, actor=Actor.console(request.user))
    except ValidationError as exc:
        form.add_service_errors(exc)
        return False
    return True


@operator_page
@require_http_methods(["GET", "POST"])
def plan_new(request: HttpRequest) -> HttpResponse:
    form = PlanForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid() and _save(request, plan := Plan(), form):
        messages.success(request, f"Created the plan {plan.name}.")
        return redirect("accounts_ops:plans")
    context = {"form": form, "plan": None}
    return render(request, "accounts/ops/plan_form.html", context, status=400 if form.errors else 200)


@operator_page
@require_http_methods(["GET", "POST"])
def plan_edit(request: HttpRequest, plan_id: str) -> HttpResponse:
    plan = plan_for_operator(plan_id)
    if request.method != "POST":
        form = PlanForm(initial=PlanForm.initial_for(plan))
    else:
        form = PlanForm(request.POST)
        if form.is_valid() and _save(request, plan, form):
            messages.success(request, f"Saved the plan {plan.name}: the gateway applies it within seconds.")
            sentence = looser_keys_sentence(plan=plan)
            if sentence:
                messages.warning(request, sentence)
            return redirect("accounts_ops:plans")
        plan = plan_for_operator(plan_id)  # as stored, for the page's title
    tenants = plan.tenants.count()
    context = {"form": form, "plan": plan, "tenant_count": tenants}
    return render(request, "accounts/ops/plan_form.html", context, status=400 if form.errors else 200)


@operator_page
@require_POST
def plan_remove(request: HttpRequest, plan_id: str) -> HttpResponse:
    plan = plan_for_operator(plan_id)
    try:
        plan_delete(plan=plan, actor=Actor.console(request.user))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("accounts_ops:plan", plan_id=plan.pk)
    messages.success(request, f"Deleted the plan {plan.name}.")
    return redirect("accounts_ops:plans")

"""/api/v1/tenants/<slug>/budgets/: a tenant's budgets (tenant, key, end user) with their spend this
period: list, set (create, or change the one the subject already has for that period), retrieve,
change, delete. The same services as the budgets page (billing/budgets.py) and the same selectors."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import TenantApiView
from accounts.api.errors import BadRequest, NotFound
from accounts.api.fields import text_field, usd_field
from accounts.selectors import api_key_for_user
from billing import selectors
from billing.budgets import budget_delete, budget_save, budget_set
from billing.models import Budget

TAGS = ["budgets"]


class BudgetStatusSerializer(serializers.Serializer):  # type: ignore[type-arg]
    label = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    spent = usd_field("USD spent this period (each end user: the biggest spender's).")
    subject = serializers.CharField(help_text="Each end user: who spent most; else empty.")
    subjects = serializers.IntegerField(help_text="Each end user: how many spent anything.")
    projected = usd_field("Spend by the period's end at this rate, or null.", allow_null=True)


class BudgetSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    amount = usd_field("USD per period.")
    thresholds = serializers.ListField(child=serializers.IntegerField(), help_text="Alert percentages.")
    emails = serializers.ListField(child=serializers.CharField())
    webhook_url = serializers.CharField(help_text="Where alerts are POSTed; empty for none.")
    status = serializers.SerializerMethodField()

    class Meta:
        model = Budget
        fields = [
            "id",
            "scope",
            "api_key",
            "end_user",
            "amount",
            "period",
            "hard",
            "thresholds",
            "emails",
            "webhook_url",
            "created_at",
            "updated_at",
            "status",
        ]
        read_only_fields = fields

    @extend_schema_field(BudgetStatusSerializer(allow_null=True))
    def get_status(self, budget: Budget) -> dict[str, Any] | None:
        found = self.context.get("statuses", {}).get(budget.pk)
        return None if found is None else dict(BudgetStatusSerializer(found).data)


def _thresholds() -> serializers.ListField:
    return serializers.ListField(
        required=False,
        child=serializers.IntegerField(min_value=1, max_value=1000),
        min_length=1,
        max_length=20,
        help_text="Alert at these percentages of the amount (default 50, 80, 100).",
    )


def _emails() -> serializers.ListField:
    return serializers.ListField(
        required=False,
        child=serializers.EmailField(max_length=254),
        max_length=50,
        help_text="Who gets alerts.",
    )


class BudgetSetSerializer(serializers.Serializer):  # type: ignore[type-arg]
    scope = serializers.ChoiceField(choices=Budget.Scope.choices, default=Budget.Scope.TENANT)
    api_key = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, help_text="For scope key: the key's id."
    )
    end_user = text_field(
        200,
        required=False,
        allow_blank=True,
        default="",
        help_text="For scope end_user: one, or empty for each.",
    )
    amount = usd_field("USD per period, more than 0.")
    period = serializers.ChoiceField(choices=Budget.Period.choices, default=Budget.Period.MONTH)
    hard = serializers.BooleanField(
        default=True, help_text="Refuse calls it cannot pay for (else alert only)."
    )
    thresholds = _thresholds()
    emails = _emails()
    webhook_url = serializers.URLField(required=False, allow_blank=True, max_length=500)


class BudgetChangeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    amount = usd_field("USD per period, more than 0.", required=False)
    hard = serializers.BooleanField(required=False)
    thresholds = _thresholds()
    emails = _emails()
    webhook_url = serializers.URLField(required=False, allow_blank=True, max_length=500)


def _statuses(tenant: Any) -> dict[int, selectors.BudgetStatus]:
    return {found.budget.pk: found for found in selectors.budgets_for_tenant(tenant=tenant)}


class BudgetListView(TenantApiView):
    actions = {"get": "budgets.view", "post": "budgets.edit"}
    service_fields = {"__all__": ""}

    @extend_schema(operation_id="budgets_list", tags=TAGS, responses=BudgetSerializer(many=True))
    def get(self, request: Request, **kwargs: Any) -> Response:
        page = self.paginate_queryset(Budget.objects.filter(tenant=self.tenant))
        context = {"statuses": _statuses(self.tenant)}
        return self.get_paginated_response(BudgetSerializer(page, many=True, context=context).data)

    @extend_schema(
        operation_id="budgets_set",
        tags=TAGS,
        request=BudgetSetSerializer,
        responses={200: BudgetSerializer, 201: BudgetSerializer},
        description="Set the budget of a subject (the tenant, a key, end users) for a period: creates it "
        "(201), or changes the one the subject has for that period (200), keeping its spend so far.",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        data = self.valid(BudgetSetSerializer)
        api_key = None
        if data["scope"] == Budget.Scope.KEY:
            if data["api_key"] is None:
                raise BadRequest("A key budget names its key.", field="api_key")
            try:
                api_key = api_key_for_user(request.user, self.tenant, data["api_key"])
            except Http404:
                raise BadRequest("No such key in this tenant.", field="api_key") from None
        elif data["api_key"] is not None:
            raise BadRequest("Only a key budget names a key.", field="api_key")
        existing = set(Budget.objects.filter(tenant=self.tenant).values_list("pk", flat=True))
        budget = budget_set(
            tenant=self.tenant,
            api_key=api_key,
            end_user=data["end_user"] if data["scope"] == Budget.Scope.END_USER else None,
            usd=data["amount"],
            period=data["period"],
            hard=data["hard"],
            thresholds=data.get("thresholds"),
            emails=data.get("emails"),
            webhook_url=data.get("webhook_url"),
            actor=self.actor(),
        )
        body = BudgetSerializer(budget, context={"statuses": _statuses(self.tenant)}).data
        return Response(body, status=status.HTTP_200_OK if budget.pk in existing else status.HTTP_201_CREATED)


class BudgetDetailView(TenantApiView):
    actions = {"get": "budgets.view", "patch": "budgets.edit", "delete": "budgets.edit"}
    pagination_class = None

    def _budget(self, budget_id: int) -> Budget:
        budget = selectors.budget_for_tenant(tenant=self.tenant, budget_id=budget_id)
        if budget is None:
            raise NotFound("No such object.")
        return budget

    @extend_schema(operation_id="budgets_retrieve", tags=TAGS, responses=BudgetSerializer)
    def get(self, request: Request, budget_id: int, **kwargs: Any) -> Response:
        budget = self._budget(budget_id)
        return Response(BudgetSerializer(budget, context={"statuses": _statuses(self.tenant)}).data)

    @extend_schema(
        operation_id="budgets_change",
        tags=TAGS,
        request=BudgetChangeSerializer,
        responses=BudgetSerializer,
        description="Change a budget's amount, hardness, thresholds, recipients or webhook (its subject "
        "and period stay; set another period with POST .../budgets/).",
    )
    def patch(self, request: Request, budget_id: int, **kwargs: Any) -> Response:
        budget = self._budget(budget_id)
        for name, value in self.valid(BudgetChangeSerializer).items():
            setattr(budget, name, value)
        budget = budget_save(budget=budget, actor=self.actor())
        return Response(BudgetSerializer(budget, context={"statuses": _statuses(self.tenant)}).data)

    @extend_schema(operation_id="budgets_delete", tags=TAGS, responses={204: None})
    def delete(self, request: Request, budget_id: int, **kwargs: Any) -> Response:
        budget_delete(budget=self._budget(budget_id), actor=self.actor())
        return Response(status=status.HTTP_204_NO_CONTENT)

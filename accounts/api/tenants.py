"""Operator endpoints for tenants, /api/v1/tenants/: list (search, status, plan; this month's spend),
create (with its first owner), retrieve, update (plan, overrides, settings, and `status` to suspend
or resume), top up credits.

The same services and selectors as the operator's tenants pages (accounts/views_ops_tenants.py):
`accounts.members.tenant_create_with_owner`, `accounts.services.tenant_save` and
`tenant_status_set`, `billing.credits.credit_topup`; `tenant_for_operator`,
`billing.selectors.tenants_this_month`. Everyone who is not an operator gets 404 (OperatorApiView).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import OperatorApiView
from accounts.api.errors import BadRequest
from accounts.api.fields import MAX_INT, text_field, usd_field
from accounts.members import tenant_create_with_owner
from accounts.models import Invitation, Plan, Tenant
from accounts.selectors import tenant_for_operator
from accounts.services import tenant_save, tenant_status_set
from billing.credits import credit_balance, credit_topup
from billing.selectors import tenants_this_month

TAGS = ["tenants (operator)"]

SETTINGS = (
    "name",
    "plan",
    "timezone",
    "rpm_limit",
    "tpm_limit",
    "concurrency_limit",
    "end_user_rpm_limit",
    "end_user_tpm_limit",
    "end_user_concurrency_limit",
    "body_logging",
    "prepaid",
)


class TenantMonthSerializer(serializers.Serializer):  # type: ignore[type-arg]
    spend = usd_field("USD spent this calendar month, in the tenant's time zone.")
    requests = serializers.IntegerField()


class TenantSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    plan = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    this_month = serializers.SerializerMethodField(help_text="Spend and requests this calendar month.")

    class Meta:
        model = Tenant
        fields = [
            "id",
            "slug",
            "name",
            "status",
            "plan",
            "timezone",
            "prepaid",
            "body_logging",
            "rpm_limit",
            "tpm_limit",
            "concurrency_limit",
            "end_user_rpm_limit",
            "end_user_tpm_limit",
            "end_user_concurrency_limit",
            "created_at",
            "this_month",
        ]
        read_only_fields = fields

    @extend_schema_field(TenantMonthSerializer)
    def get_this_month(self, tenant: Tenant) -> dict[str, Any]:
        month = self.context.get("month", {}).get(tenant.pk)
        data = {"spend": month.spend if month else 0, "requests": month.requests if month else 0}
        return TenantMonthSerializer(data).data  # type: ignore[return-value]


class TenantDetailSerializer(TenantSerializer):
    balance = serializers.SerializerMethodField(help_text="The prepaid credit balance in USD (exact).")

    class Meta(TenantSerializer.Meta):
        fields = [*TenantSerializer.Meta.fields, "balance"]
        read_only_fields = fields

    @extend_schema_field(usd_field("USD"))
    def get_balance(self, tenant: Tenant) -> str:
        return f"{credit_balance(tenant):f}"


class TenantFiltersSerializer(serializers.Serializer):  # type: ignore[type-arg]
    q = text_field(100, required=False, default="", help_text="Part of the name or the slug.")
    status = serializers.ChoiceField(choices=Tenant.Status.choices, required=False, default="")
    plan = text_field(100, required=False, default="", help_text="A plan's name.")


def _plan(name: str | None, field: str = "plan") -> Plan | None:
    if name is None or name == "":
        return None
    plan = Plan.objects.filter(name=name).first()
    if plan is None:
        raise BadRequest(f"There is no plan named {name[:100]!r}.", field=field)
    return plan


def _limit() -> serializers.IntegerField:
    return serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_INT)


class TenantCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = text_field(200)
    slug = serializers.SlugField(max_length=100)
    plan = text_field(
        100, required=False, allow_null=True, default=None, help_text="A plan's name; null = none."
    )
    timezone = text_field(64, required=False, default="UTC", help_text="An IANA name such as Europe/Paris.")
    prepaid = serializers.BooleanField(required=False, default=False)
    owner_email = serializers.EmailField(
        max_length=254, help_text="An account with it becomes owner at once; anyone else is invited by email."
    )


class OwnerSerializer(serializers.Serializer):  # type: ignore[type-arg]
    email = serializers.CharField()
    invited = serializers.BooleanField(help_text="True: an invitation was emailed; false: already a member.")


class TenantCreatedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    tenant = TenantDetailSerializer()
    owner = OwnerSerializer()


class TenantUpdateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Only the fields sent are changed."""

    name = text_field(200, required=False)
    plan = text_field(100, required=False, allow_null=True, help_text="A plan's name; null = none.")
    timezone = text_field(64, required=False)
    rpm_limit = _limit()
    tpm_limit = _limit()
    concurrency_limit = _limit()
    end_user_rpm_limit = _limit()
    end_user_tpm_limit = _limit()
    end_user_concurrency_limit = _limit()
    body_logging = serializers.BooleanField(required=False)
    prepaid = serializers.BooleanField(required=False)
    status = serializers.ChoiceField(
        choices=Tenant.Status.choices,
        required=False,
        help_text="suspended: every gateway refuses its calls at once (403 tenant_suspended); active: resume.",
    )


class TopupSerializer(serializers.Serializer):  # type: ignore[type-arg]
    usd = usd_field("USD to add: more than 0, at most 9 decimal places.")
    note = text_field(500, required=False, default="", allow_blank=True)
    start_prepaid = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Put a tenant not yet on prepaid credits on them (else such a tenant is refused).",
    )


class TopupResultSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    kind = serializers.CharField()
    amount = usd_field("USD")
    note = serializers.CharField()
    created_at = serializers.DateTimeField()
    balance = usd_field("The balance after the top-up.")


def _detail(tenant: Tenant) -> dict[str, Any]:
    return TenantDetailSerializer(tenant, context={"month": tenants_this_month([tenant])}).data  # type: ignore[return-value]


class TenantListView(OperatorApiView):
    def tenants(self, filters: dict[str, Any]) -> QuerySet[Tenant]:
        tenants = Tenant.objects.select_related("plan")
        if filters["q"]:
            tenants = tenants.filter(Q(name__icontains=filters["q"]) | Q(slug__icontains=filters["q"]))
        if filters["status"]:
            tenants = tenants.filter(status=filters["status"])
        if filters["plan"]:
            tenants = tenants.filter(plan=_plan(filters["plan"]))
        return tenants

    @extend_schema(
        operation_id="tenants_list",
        tags=TAGS,
        parameters=[
            OpenApiParameter("q", str, description="Part of the name or the slug."),
            OpenApiParameter("status", str, enum=Tenant.Status.values),
            OpenApiParameter("plan", str, description="A plan's name."),
        ],
        responses=TenantSerializer(many=True),
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        filters = self.valid(TenantFiltersSerializer, data=request.query_params)
        page = self.paginate_queryset(self.tenants(filters))
        assert page is not None
        month = tenants_this_month(page)
        return self.get_paginated_response(TenantSerializer(page, many=True, context={"month": month}).data)

    @extend_schema(
        operation_id="tenants_create",
        tags=TAGS,
        request=TenantCreateSerializer,
        responses={201: TenantCreatedSerializer},
        description="Create a tenant and give it its first owner (all or nothing).",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        data = self.valid(TenantCreateSerializer)
        tenant, owner = tenant_create_with_owner(
            name=data["name"],
            slug=data["slug"],
            plan=_plan(data["plan"]),
            timezone_name=data["timezone"],
            prepaid=data["prepaid"],
            owner_email=data["owner_email"],
            actor=self.actor(),
        )
        invited = isinstance(owner, Invitation)
        email = owner.email if isinstance(owner, Invitation) else owner.user.email
        body = {"tenant": _detail(tenant), "owner": {"email": email, "invited": invited}}
        return Response(body, status=status.HTTP_201_CREATED)


class TenantDetailView(OperatorApiView):
    pagination_class = None

    @extend_schema(operation_id="tenants_retrieve", tags=TAGS, responses=TenantDetailSerializer)
    def get(self, request: Request, slug: str, **kwargs: Any) -> Response:
        return Response(_detail(tenant_for_operator(slug)))

    @extend_schema(
        operation_id="tenants_update",
        tags=TAGS,
        request=TenantUpdateSerializer,
        responses=TenantDetailSerializer,
        description="Change the fields sent (PATCH semantics); `status` suspends or resumes the tenant.",
    )
    def patch(self, request: Request, slug: str, **kwargs: Any) -> Response:
        tenant = tenant_for_operator(slug)
        data = self.valid(TenantUpdateSerializer)
        with transaction.atomic():
            changes = {name: data[name] for name in SETTINGS if name in data}
            if "plan" in changes:
                changes["plan"] = _plan(changes["plan"])
            if changes:
                for name, value in changes.items():
                    setattr(tenant, name, value)
                tenant_save(tenant=tenant, actor=self.actor())
            if "status" in data:
                tenant_status_set(tenant=tenant, status=data["status"], actor=self.actor())
        return Response(_detail(tenant_for_operator(slug)))


class TenantTopupView(OperatorApiView):
    pagination_class = None

    @extend_schema(
        operation_id="tenants_topup",
        tags=TAGS,
        request=TopupSerializer,
        responses={201: TopupResultSerializer},
        description="Add prepaid credits (a top-up line of the tenant's ledger), as `credits_topup`.",
    )
    def post(self, request: Request, slug: str, **kwargs: Any) -> Response:
        tenant = tenant_for_operator(slug)
        data = self.valid(TopupSerializer)
        if data["usd"] <= 0:
            raise BadRequest("A top-up must be more than 0 USD.", field="usd")
        with transaction.atomic():
            entry = credit_topup(
                tenant=tenant,
                usd=data["usd"],
                note=data["note"],
                actor=self.actor(),
                start_prepaid=data["start_prepaid"],
            )
        body = {
            "id": entry.pk,
            "kind": entry.kind,
            "amount": entry.amount,
            "note": entry.note,
            "created_at": entry.created_at,
            "balance": credit_balance(tenant),
        }
        return Response(TopupResultSerializer(body).data, status=status.HTTP_201_CREATED)

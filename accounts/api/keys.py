"""/api/v1/tenants/<slug>/keys/: a tenant's API keys: list, issue (the secret in this answer only),
retrieve, rotate with a grace period (the new secret in this answer only), revoke.

The same services as the keys page (accounts/views_keys.py): `billing.budgets.
api_key_issue_with_budget` (as `manage.py key_issue`), `accounts.services.api_key_rotate` and
`api_key_revoke`; the same selectors (`api_keys_for_tenant`, `api_key_for_user`) and actions.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import TenantApiView
from accounts.api.fields import limit_field, name_list, text_field, usd_field
from accounts.models import ApiKey
from accounts.selectors import api_key_for_user, api_keys_for_tenant
from accounts.services import MAX_ROTATION_GRACE, api_key_revoke, api_key_rotate
from billing.budgets import api_key_issue_with_budget
from billing.selectors import key_usage_this_period

TAGS = ["keys"]


class KeyUsageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    period = serializers.CharField(help_text="day, week or month: the key's budget's, else the month.")
    start = serializers.DateTimeField()
    spend = usd_field("USD spent this period.")
    requests = serializers.IntegerField()
    budget = usd_field("The key's budget for the period, or null.", allow_null=True, source="budget.amount")
    last_used = serializers.DateTimeField(allow_null=True)


class ApiKeySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    in_grace = serializers.BooleanField(
        read_only=True, help_text="Rotated, and the previous secret still works until previous_valid_until."
    )
    allowed_models = serializers.ListField(child=serializers.CharField(), read_only=True)
    allowed_ips = serializers.ListField(child=serializers.CharField(), read_only=True)
    usage = serializers.SerializerMethodField(help_text="Spend and calls this period (null if not read).")

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "status",
            "created_at",
            "expires_at",
            "revoked_at",
            "rotated_at",
            "previous_prefix",
            "previous_valid_until",
            "in_grace",
            "allowed_models",
            "allowed_ips",
            "rpm_limit",
            "tpm_limit",
            "concurrency_limit",
            "cache",
            "cache_ttl",
            "usage",
        ]
        read_only_fields = fields

    @extend_schema_field(KeyUsageSerializer(allow_null=True))
    def get_usage(self, key: ApiKey) -> dict[str, Any] | None:
        usage = self.context.get("usage", {}).get(key.pk)
        return None if usage is None else KeyUsageSerializer(usage).data


class ApiKeyIssueSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = text_field(200, help_text="To recognise the key by, e.g. the app using it.")
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="Null = never."
    )
    allowed_models = name_list("Model names or aliases; empty = every model the tenant may use.")
    allowed_ips = name_list("IP addresses or CIDR ranges; empty = from anywhere.", item_length=64)
    rpm_limit = limit_field("Requests per minute; null = the tenant's.")
    tpm_limit = limit_field("Tokens per minute; null = the tenant's.")
    concurrency_limit = limit_field("Calls in flight at once; null = the tenant's.")
    cache = serializers.BooleanField(
        required=False, default=False, help_text="Answer repeated identical requests from the response cache."
    )
    cache_ttl = limit_field("Seconds a cached answer is kept; null = TOLLHOUSE_CACHE_TTL_SECONDS.")
    budget = usd_field(
        "The key's own budget in USD; null = none.", required=False, allow_null=True, default=None
    )
    budget_period = serializers.ChoiceField(
        choices=["day", "week", "month"], required=False, allow_null=True, default=None
    )
    budget_hard = serializers.BooleanField(
        required=False, default=True, help_text="Refuse calls past the budget (else only alert)."
    )


class IssuedKeySerializer(serializers.Serializer):  # type: ignore[type-arg]
    key = ApiKeySerializer()
    secret = serializers.CharField(help_text="The API key (th-...): shown in this answer only.")


class ApiKeyRotateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    grace_seconds = serializers.IntegerField(
        min_value=0,
        max_value=int(MAX_ROTATION_GRACE.total_seconds()),
        default=0,
        help_text="How long the previous secret keeps working (0 = stops now; at most 30 days).",
    )


class KeyListView(TenantApiView):
    actions = {"get": "keys.view", "post": "keys.issue"}
    service_fields = {"amount": "budget", "period": "budget_period"}

    @extend_schema(operation_id="keys_list", tags=TAGS, responses=ApiKeySerializer(many=True))
    def get(self, request: Request, **kwargs: Any) -> Response:
        page = self.paginate_queryset(api_keys_for_tenant(self.tenant))
        assert page is not None
        usage = key_usage_this_period(tenant=self.tenant, api_keys=page)
        return self.get_paginated_response(ApiKeySerializer(page, many=True, context={"usage": usage}).data)

    @extend_schema(
        operation_id="keys_issue",
        tags=TAGS,
        request=ApiKeyIssueSerializer,
        responses={201: IssuedKeySerializer},
        description="Issue a key (and its own budget, if `budget` is given). The secret is in this answer only.",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        data = self.valid(ApiKeyIssueSerializer)
        issued = api_key_issue_with_budget(
            tenant=self.tenant,
            name=data["name"],
            actor=self.actor(),
            expires_at=data["expires_at"],
            allowed_models=data["allowed_models"],
            allowed_ips=data["allowed_ips"],
            rpm_limit=data["rpm_limit"],
            tpm_limit=data["tpm_limit"],
            concurrency_limit=data["concurrency_limit"],
            cache=data["cache"],
            cache_ttl=data["cache_ttl"],
            budget_usd=data["budget"],
            budget_period=data["budget_period"],
            budget_hard=data["budget_hard"],
        )
        return _secret(issued.api_key, issued.raw, status.HTTP_201_CREATED)


class KeyDetailView(TenantApiView):
    actions = {"get": "keys.view"}
    pagination_class = None

    @extend_schema(operation_id="keys_retrieve", tags=TAGS, responses=ApiKeySerializer)
    def get(self, request: Request, key_id: int, **kwargs: Any) -> Response:
        key = api_key_for_user(request.user, self.tenant, key_id)
        usage = key_usage_this_period(tenant=self.tenant, api_keys=[key])
        return Response(ApiKeySerializer(key, context={"usage": usage}).data)


class KeyRotateView(TenantApiView):
    actions = {"post": "keys.rotate"}
    pagination_class = None
    service_fields = {"grace": "grace_seconds"}

    @extend_schema(
        operation_id="keys_rotate",
        tags=TAGS,
        request=ApiKeyRotateSerializer,
        responses=IssuedKeySerializer,
        description="A new secret for the key; the previous one keeps working for `grace_seconds`. "
        "The key keeps its id, budgets, spend and rate windows. The new secret is in this answer only.",
    )
    def post(self, request: Request, key_id: int, **kwargs: Any) -> Response:
        key = api_key_for_user(request.user, self.tenant, key_id)
        data = self.valid(ApiKeyRotateSerializer)
        issued = api_key_rotate(
            api_key=key, grace=timedelta(seconds=data["grace_seconds"]), actor=self.actor()
        )
        return _secret(issued.api_key, issued.raw, status.HTTP_200_OK)


class KeyRevokeView(TenantApiView):
    actions = {"post": "keys.revoke"}
    pagination_class = None

    @extend_schema(
        operation_id="keys_revoke",
        tags=TAGS,
        request=None,
        responses=ApiKeySerializer,
        description="Revoke the key: calls with it stop within seconds. Revoking a revoked key changes nothing.",
    )
    def post(self, request: Request, key_id: int, **kwargs: Any) -> Response:
        key = api_key_for_user(request.user, self.tenant, key_id)
        if key.status != ApiKey.Status.REVOKED:
            key = api_key_revoke(api_key=key, actor=self.actor())
        return Response(ApiKeySerializer(key).data)


def _secret(key: ApiKey, raw: str, status_code: int) -> Response:
    """The one answer a key's secret is in: never cached by anyone."""
    response = Response({"key": ApiKeySerializer(key).data, "secret": raw}, status=status_code)
    response["Cache-Control"] = "no-store"
    return response

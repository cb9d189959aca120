"""GET /api/v1/me/: who the token acts as: its user, whether they are an operator, and their role in
each of their tenants (what the token may do there follows accounts.permissions)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import ApiView
from accounts.permissions import is_operator
from accounts.selectors import memberships_for_user


class MembershipSummarySerializer(serializers.Serializer):  # type: ignore[type-arg]
    tenant = serializers.CharField(source="tenant.slug", help_text="The tenant's slug (its URLs' <slug>).")
    tenant_name = serializers.CharField(source="tenant.name")
    role = serializers.CharField()


class TokenSummarySerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    prefix = serializers.CharField()
    expires_at = serializers.DateTimeField()


class MeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    username = serializers.CharField()
    email = serializers.CharField()
    operator = serializers.BooleanField()
    token = TokenSummarySerializer()
    memberships = MembershipSummarySerializer(many=True)


class MeView(ApiView):
    pagination_class = None

    @extend_schema(responses=MeSerializer, operation_id="me_retrieve", tags=["me"])
    def get(self, request: Request, **kwargs: Any) -> Response:
        user = request.user
        data = {
            "username": user.get_username(),
            "email": user.email,
            "operator": is_operator(user),
            "token": request.auth,
            "memberships": list(memberships_for_user(user)),
        }
        return Response(MeSerializer(data).data)

"""/api/v1/tenants/<slug>/signing-keys/: the keys a tenant's own backend signs end-user tokens (JWTs)
with: list, add (an HS256 key given no secret gets a generated one, in this answer only),
deactivate. The same services as the signing-keys page (accounts/signing.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import signing
from accounts.api.base import TenantApiView
from accounts.api.fields import text_field
from accounts.models import SigningKey
from accounts.selectors import signing_key_for_tenant, signing_keys_of_tenant

TAGS = ["signing keys"]


class SigningKeySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = SigningKey
        fields = ["id", "name", "issuer", "key_id", "algorithm", "public_key", "active", "created_at"]
        read_only_fields = fields


class SigningKeyAddSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = text_field(200)
    issuer = text_field(200, help_text="The `iss` claim your tokens carry; one issuer belongs to one tenant.")
    algorithm = serializers.ChoiceField(choices=SigningKey.Algorithm.values)
    key_id = text_field(
        200, required=False, default="", allow_blank=True, help_text="The `kid` header, if any."
    )
    secret = text_field(
        2048,
        required=False,
        default="",
        allow_blank=True,
        help_text="HS256: your shared secret (at least 32 bytes), or empty for a generated one.",
    )
    public_key = text_field(
        10_000, required=False, default="", allow_blank=True, help_text="RS256/ES256: PEM."
    )


class AddedSigningKeySerializer(serializers.Serializer):  # type: ignore[type-arg]
    signing_key = SigningKeySerializer()
    secret = serializers.CharField(
        allow_null=True, help_text="The generated HS256 secret (in this answer only), or null."
    )


class SigningKeyListView(TenantApiView):
    actions = {"get": "signing_keys.view", "post": "signing_keys.edit"}

    @extend_schema(operation_id="signing_keys_list", tags=TAGS, responses=SigningKeySerializer(many=True))
    def get(self, request: Request, **kwargs: Any) -> Response:
        page = self.paginate_queryset(signing_keys_of_tenant(self.tenant))
        return self.get_paginated_response(SigningKeySerializer(page, many=True).data)

    @extend_schema(
        operation_id="signing_keys_add",
        tags=TAGS,
        request=SigningKeyAddSerializer,
        responses={201: AddedSigningKeySerializer},
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        data = self.valid(SigningKeyAddSerializer)
        issued = signing.signing_key_issue(tenant=self.tenant, actor=self.actor(), **data)
        body = {"signing_key": SigningKeySerializer(issued.signing_key).data, "secret": issued.secret or None}
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class SigningKeyDeactivateView(TenantApiView):
    actions = {"post": "signing_keys.edit"}
    pagination_class = None

    @extend_schema(
        operation_id="signing_keys_deactivate",
        tags=TAGS,
        request=None,
        responses=SigningKeySerializer,
        description="Deactivate a signing key: tokens it signed stop working at once.",
    )
    def post(self, request: Request, signing_key_id: int, **kwargs: Any) -> Response:
        signing_key = signing_key_for_tenant(self.tenant, signing_key_id)
        if signing_key.active:
            signing_key = signing.signing_key_deactivate(signing_key=signing_key, actor=self.actor())
        return Response(SigningKeySerializer(signing_key).data)

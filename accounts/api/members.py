"""/api/v1/tenants/<slug>/members/ and .../invitations/: a tenant's members and open invitations:
list, invite by email, change a role (only an owner grants or takes the owner role; a tenant keeps
an owner), remove, revoke an invitation.

The same services as the members page (accounts/members.py), the same selectors and actions."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import members as services
from accounts.api.base import TenantApiView
from accounts.api.fields import text_field
from accounts.models import Invitation, Membership
from accounts.selectors import invitation_for_tenant, invitations_open, member_for_tenant, members_of_tenant

TAGS = ["members"]
ROLES = Membership.Role.choices


class MemberSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    email = serializers.CharField(source="user.email", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    name = serializers.CharField(source="user.get_full_name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "username", "name", "role", "created_at"]
        read_only_fields = fields


class RoleSerializer(serializers.Serializer):  # type: ignore[type-arg]
    role = serializers.ChoiceField(choices=ROLES)


class InvitationSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    invited_by = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "state", "invited_by", "created_at", "expires_at"]
        read_only_fields = fields

    def get_invited_by(self, invitation: Invitation) -> str | None:
        user = invitation.invited_by
        return None if user is None else str(user.email or user.get_username())


class InviteSerializer(serializers.Serializer):  # type: ignore[type-arg]
    email = text_field(254, help_text="Who to invite; the link goes to this address.")
    role = serializers.ChoiceField(choices=ROLES, default=Membership.Role.MEMBER)


class MemberListView(TenantApiView):
    actions = {"get": "members.view"}

    @extend_schema(operation_id="members_list", tags=TAGS, responses=MemberSerializer(many=True))
    def get(self, request: Request, **kwargs: Any) -> Response:
        page = self.paginate_queryset(members_of_tenant(self.tenant))
        return self.get_paginated_response(MemberSerializer(page, many=True).data)


class MemberDetailView(TenantApiView):
    actions = {"get": "members.view", "patch": "members.role", "delete": "members.remove"}
    pagination_class = None

    @extend_schema(operation_id="members_retrieve", tags=TAGS, responses=MemberSerializer)
    def get(self, request: Request, member_id: int, **kwargs: Any) -> Response:
        return Response(MemberSerializer(member_for_tenant(self.tenant, member_id)).data)

    @extend_schema(
        operation_id="members_role",
        tags=TAGS,
        request=RoleSerializer,
        responses=MemberSerializer,
        description="Change a member's role. Only an owner grants or takes away the owner role, and a "
        "tenant always keeps an owner.",
    )
    def patch(self, request: Request, member_id: int, **kwargs: Any) -> Response:
        member = member_for_tenant(self.tenant, member_id)
        role = self.valid(RoleSerializer)["role"]
        changed = services.member_role_change(membership=member, role=role, actor=self.actor())
        return Response(MemberSerializer(changed).data)

    @extend_schema(
        operation_id="members_remove",
        tags=TAGS,
        responses={204: None},
        description="Remove a member (only an owner removes an owner; a tenant keeps an owner).",
    )
    def delete(self, request: Request, member_id: int, **kwargs: Any) -> Response:
        member = member_for_tenant(self.tenant, member_id)
        services.member_remove(membership=member, actor=self.actor())
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(TenantApiView):
    actions = {"get": "members.view", "post": "members.invite"}

    @extend_schema(operation_id="invitations_list", tags=TAGS, responses=InvitationSerializer(many=True))
    def get(self, request: Request, **kwargs: Any) -> Response:
        page = self.paginate_queryset(invitations_open(self.tenant))
        return self.get_paginated_response(InvitationSerializer(page, many=True).data)

    @extend_schema(
        operation_id="invitations_create",
        tags=TAGS,
        request=InviteSerializer,
        responses={201: InvitationSerializer},
        description="Invite someone by email with a role: the link goes to them by email (never in this "
        "answer). Only an owner invites an owner.",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        data = self.valid(InviteSerializer)
        invitation = services.invitation_create(
            tenant=self.tenant, email=data["email"], role=data["role"], actor=self.actor()
        )
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)


class InvitationRevokeView(TenantApiView):
    actions = {"post": "members.invite"}
    pagination_class = None

    @extend_schema(
        operation_id="invitations_revoke",
        tags=TAGS,
        request=None,
        responses=InvitationSerializer,
        description="Revoke an open invitation: its link stops working.",
    )
    def post(self, request: Request, invitation_id: int, **kwargs: Any) -> Response:
        invitation = invitation_for_tenant(self.tenant, invitation_id)
        revoked = services.invitation_revoke(invitation=invitation, actor=self.actor())
        return Response(InvitationSerializer(revoked).data)

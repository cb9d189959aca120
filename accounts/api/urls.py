"""The accounts endpoints of the management API, mounted under /api/v1/ (accounts/api/root_urls.py)."""

from __future__ import annotations

from django.urls import path

from accounts.api import keys, me, members, signing_keys, tenants

app_name = "accounts_api"

T = "tenants/<slug:slug>/"

urlpatterns = [
    path("me/", me.MeView.as_view(), name="me"),
    # Operator endpoints (404 for everyone else): every tenant.
    path("tenants/", tenants.TenantListView.as_view(), name="tenants"),
    path(T, tenants.TenantDetailView.as_view(), name="tenant"),
    path(f"{T}topup/", tenants.TenantTopupView.as_view(), name="tenant_topup"),
    path(f"{T}keys/", keys.KeyListView.as_view(), name="keys"),
    path(f"{T}keys/<int:key_id>/", keys.KeyDetailView.as_view(), name="key"),
    path(f"{T}keys/<int:key_id>/rotate/", keys.KeyRotateView.as_view(), name="key_rotate"),
    path(f"{T}keys/<int:key_id>/revoke/", keys.KeyRevokeView.as_view(), name="key_revoke"),
    path(f"{T}members/", members.MemberListView.as_view(), name="members"),
    path(f"{T}members/<int:member_id>/", members.MemberDetailView.as_view(), name="member"),
    path(f"{T}invitations/", members.InvitationListView.as_view(), name="invitations"),
    path(
        f"{T}invitations/<int:invitation_id>/revoke/",
        members.InvitationRevokeView.as_view(),
        name="invitation_revoke",
    ),
    path(f"{T}signing-keys/", signing_keys.SigningKeyListView.as_view(), name="signing_keys"),
    path(
        f"{T}signing-keys/<int:signing_key_id>/deactivate/",
        signing_keys.SigningKeyDeactivateView.as_view(),
        name="signing_key_deactivate",
    ),
]

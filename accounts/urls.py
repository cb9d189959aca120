"""Console URLs of accounts: sign-in and passwords, then a tenant's keys, members, signing keys and
audit pages under /t/<slug>/ (each view goes through accounts.access.tenant_page)."""

from __future__ import annotations

from django.urls import path

from accounts import (
    views,
    views_audit,
    views_invitations,
    views_keys,
    views_members,
    views_signing_keys,
    views_sso,
    views_tokens,
)

app_name = "accounts"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    # Single sign-on (accounts/views_sso.py): 404 unless TOLLHOUSE_OIDC_* configure it.
    path("oidc/authenticate/", views_sso.oidc_authenticate, name="oidc_authenticate"),
    path("oidc/callback/", views_sso.oidc_callback, name="oidc_callback"),
    path("account/password/", views.password_change, name="password_change"),
    path("account/password/done/", views.password_change_done, name="password_change_done"),
    path("account/tokens/", views_tokens.tokens, name="tokens"),
    path("account/tokens/<str:token_id>/revoke/", views_tokens.token_revoke, name="token_revoke"),
    path("password-reset/", views.password_reset, name="password_reset"),
    path("password-reset/sent/", views.password_reset_done, name="password_reset_done"),
    path("password-reset/<uidb64>/<token>/", views.password_reset_confirm, name="password_reset_confirm"),
    path("password-reset/done/", views.password_reset_complete, name="password_reset_complete"),
    path("t/<slug:slug>/keys/", views_keys.keys, name="keys"),
    path("t/<slug:slug>/keys/new/", views_keys.key_issue, name="key_issue"),
    path("t/<slug:slug>/keys/<int:key_id>/", views_keys.key_detail, name="key_detail"),
    path("t/<slug:slug>/keys/<int:key_id>/rotate/", views_keys.key_rotate, name="key_rotate"),
    path("t/<slug:slug>/keys/<int:key_id>/revoke/", views_keys.key_revoke, name="key_revoke"),
    path("t/<slug:slug>/members/", views_members.members, name="members"),
    path("t/<slug:slug>/members/invite/", views_members.member_invite, name="member_invite"),
    path("t/<slug:slug>/members/<str:member_id>/role/", views_members.member_role, name="member_role"),
    path("t/<slug:slug>/members/<str:member_id>/remove/", views_members.member_remove, name="member_remove"),
    path(
        "t/<slug:slug>/invitations/<str:invitation_id>/revoke/",
        views_members.invitation_revoke,
        name="invitation_revoke",
    ),
    path("t/<slug:slug>/signing-keys/", views_signing_keys.signing_keys, name="signing_keys"),
    path("t/<slug:slug>/signing-keys/add/", views_signing_keys.signing_key_add, name="signing_key_add"),
    path(
        "t/<slug:slug>/signing-keys/<str:signing_key_id>/deactivate/",
        views_signing_keys.signing_key_deactivate,
        name="signing_key_deactivate",
    ),
    path("t/<slug:slug>/audit/", views_audit.audit, name="audit"),
    path("invitations/accept/", views_invitations.invitation_accept_post, name="invitation_accept_post"),
    path("invitations/<str:token>/", views_invitations.invitation_accept, name="invitation_accept"),
]

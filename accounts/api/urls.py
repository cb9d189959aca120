"""The accounts endpoints of the management API, mounted under /api/v1/ (accounts/api/root_urls.py)."""

from __future__ import annotations

from django.urls import path

from accounts.api import keys, me

app_name = "accounts_api"

T = "tenants/<slug:slug>/"

urlpatterns = [
    path("me/", me.MeView.as_view(), name="me"),
    path(f"{T}keys/", keys.KeyListView.as_view(), name="keys"),
    path(f"{T}keys/<int:key_id>/", keys.KeyDetailView.as_view(), name="key"),
    path(f"{T}keys/<int:key_id>/rotate/", keys.KeyRotateView.as_view(), name="key_rotate"),
    path(f"{T}keys/<int:key_id>/revoke/", keys.KeyRevokeView.as_view(), name="key_revoke"),
]

"""The accounts endpoints of the management API, mounted under /api/v1/ (accounts/api/root_urls.py)."""

from __future__ import annotations

from django.urls import path

from accounts.api import me

app_name = "accounts_api"

urlpatterns = [
    path("me/", me.MeView.as_view(), name="me"),
]

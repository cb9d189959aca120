"""Console URLs of billing under /t/<slug>/: overview (`billing:overview` at /t/<slug>/), usage,
budgets, credits. Each view goes through accounts.access.tenant_page."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

app_name = "billing"

urlpatterns: list[URLPattern | URLResolver] = []

"""Operator pages of billing under /ops/ (namespace `billing_ops`, accounts.context.OPS_NAV): the
overview at /ops/. Each view goes through accounts.access.operator_page."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from billing import views_ops_overview

app_name = "billing_ops"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views_ops_overview.overview_page, name="overview"),
]

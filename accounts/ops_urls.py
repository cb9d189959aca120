"""Operator pages of accounts under /ops/ (namespace `accounts_ops`, accounts.context.OPS_NAV): the
audit log across tenants. Each view goes through accounts.access.operator_page."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from accounts import views_ops_audit

app_name = "accounts_ops"

urlpatterns: list[URLPattern | URLResolver] = [
    path("audit/", views_ops_audit.audit, name="audit"),
]

"""Operator pages of accounts under /ops/ (namespace `accounts_ops`, accounts.context.OPS_NAV):
tenants, plans and the audit log across tenants. Each view goes through
accounts.access.operator_page (404 for everyone but operators)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from accounts import views_ops_audit, views_ops_plans, views_ops_tenants

app_name = "accounts_ops"

urlpatterns: list[URLPattern | URLResolver] = [
    path("tenants/", views_ops_tenants.tenants, name="tenants"),
    path("tenants/new/", views_ops_tenants.tenant_new, name="tenant_new"),
    path("tenants/<slug:slug>/", views_ops_tenants.tenant_detail, name="tenant"),
    path("tenants/<slug:slug>/status/", views_ops_tenants.tenant_status, name="tenant_status"),
    path("tenants/<slug:slug>/topup/", views_ops_tenants.tenant_topup, name="tenant_topup"),
    path("plans/", views_ops_plans.plans, name="plans"),
    path("plans/new/", views_ops_plans.plan_new, name="plan_new"),
    path("plans/<str:plan_id>/", views_ops_plans.plan_edit, name="plan"),
    path("plans/<str:plan_id>/delete/", views_ops_plans.plan_remove, name="plan_delete"),
    path("audit/", views_ops_audit.audit, name="audit"),
]

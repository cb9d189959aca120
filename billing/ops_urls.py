"""Operator URLs of billing under /ops/ (config/urls.py includes this module). Each view goes
through accounts.access.operator_page (404 for everyone but operators)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from billing import views_ops_codes

app_name = "billing_ops"

urlpatterns: list[URLPattern | URLResolver] = [
    # --- redemption code batches (opsb) ---
    path("codes/", views_ops_codes.codes, name="codes"),
    path("codes/<str:batch>/void/", views_ops_codes.batch_void, name="code_batch_void"),
    # --- end redemption code batches ---
]

"""Operator pages of billing under /ops/ (namespace `billing_ops`, accounts.context.OPS_NAV): the
overview at /ops/, prices and redemption code batches. Each view goes through
accounts.access.operator_page (404 for everyone but operators)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from billing import views_ops_codes, views_ops_overview, views_ops_prices

app_name = "billing_ops"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views_ops_overview.overview_page, name="overview"),
    path("prices/", views_ops_prices.prices, name="prices"),
    path("prices/<int:price_id>/edit/", views_ops_prices.price_edit, name="price_edit"),
    path("prices/<int:price_id>/delete/", views_ops_prices.price_delete, name="price_delete"),
    path("codes/", views_ops_codes.codes, name="codes"),
    path("codes/<str:batch>/void/", views_ops_codes.batch_void, name="code_batch_void"),
]

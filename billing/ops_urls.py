"""The operator console's billing pages, under /ops/ (namespace `billing_ops`)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from billing import views_ops_prices

app_name = "billing_ops"

urlpatterns: list[URLPattern | URLResolver] = []

# --- prices (billing/views_ops_prices.py) -------------------------------------------------------------
urlpatterns += [
    path("prices/", views_ops_prices.prices, name="prices"),
    path("prices/<int:price_id>/edit/", views_ops_prices.price_edit, name="price_edit"),
    path("prices/<int:price_id>/delete/", views_ops_prices.price_delete, name="price_delete"),
]
# --- end of prices ------------------------------------------------------------------------------------

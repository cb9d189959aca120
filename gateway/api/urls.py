"""The operator's catalog endpoints of the management API, mounted under /api/v1/
(accounts/api/root_urls.py): providers, routes, deployments, and billing's prices
(billing/api/prices.py), which belong to the same catalog."""

from __future__ import annotations

from django.urls import URLPattern, path

from billing.api import prices
from gateway.api import catalog

app_name = "gateway_api"

urlpatterns: list[URLPattern] = [
    path("providers/", catalog.ProviderListView.as_view(), name="providers"),
    path("providers/<int:provider_id>/", catalog.ProviderDetailView.as_view(), name="provider"),
    path("providers/<int:provider_id>/test/", catalog.ProviderTestView.as_view(), name="provider_test"),
    path("routes/", catalog.RouteListView.as_view(), name="routes"),
    path("routes/<int:route_id>/", catalog.RouteDetailView.as_view(), name="route"),
    path("deployments/", catalog.DeploymentListView.as_view(), name="deployments"),
    path("deployments/<int:deployment_id>/", catalog.DeploymentDetailView.as_view(), name="deployment"),
    path("prices/", prices.PriceListView.as_view(), name="prices"),
    path("prices/<int:price_id>/", prices.PriceDetailView.as_view(), name="price"),
]

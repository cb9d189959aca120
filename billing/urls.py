"""Console URLs of billing under /t/<slug>/: overview (`billing:overview` at /t/<slug>/), usage,
budgets, credits. Each view goes through accounts.access.tenant_page."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from billing import views

app_name = "billing"

urlpatterns: list[URLPattern | URLResolver] = [
    path("t/<slug:slug>/", views.overview_page, name="overview"),
    path("t/<slug:slug>/latency.json", views.latency_json, name="latency"),
    path("t/<slug:slug>/budgets/", views.budgets_page, name="budgets"),
    path("t/<slug:slug>/budgets/<str:budget_id>/delete/", views.budget_remove, name="budget_delete"),
    path(
        "t/<slug:slug>/budgets/<str:budget_id>/test-webhook/", views.budget_webhook_test, name="budget_test"
    ),
    path("t/<slug:slug>/credits/", views.credits_page, name="credits"),
    path("t/<slug:slug>/usage/", views.usage_page, name="usage"),
    path("t/<slug:slug>/usage/<str:record_id>/", views.usage_detail, name="usage_detail"),
    path("t/<slug:slug>/usage.csv", views.usage_csv, name="usage_csv"),
]

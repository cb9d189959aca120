"""The billing endpoints of the management API, mounted under /api/v1/ (accounts/api/root_urls.py)."""

from __future__ import annotations

from django.urls import URLPattern, path

from billing.api import budgets, credits, usage

app_name = "billing_api"

T = "tenants/<slug:slug>/"

urlpatterns: list[URLPattern] = [
    path(f"{T}budgets/", budgets.BudgetListView.as_view(), name="budgets"),
    path(f"{T}budgets/<int:budget_id>/", budgets.BudgetDetailView.as_view(), name="budget"),
    path(f"{T}credits/", credits.CreditBalanceView.as_view(), name="credits"),
    path(f"{T}credits/ledger/", credits.CreditLedgerView.as_view(), name="credit_ledger"),
    path(f"{T}credits/redeem/", credits.CreditRedeemView.as_view(), name="credit_redeem"),
    path(f"{T}usage/series/", usage.UsageSeriesView.as_view(), name="usage_series"),
    path(f"{T}usage/calls/", usage.UsageCallListView.as_view(), name="usage_calls"),
    path(f"{T}usage/calls/<int:record_id>/", usage.UsageCallDetailView.as_view(), name="usage_call"),
    path(f"{T}usage.csv", usage.UsageCsvView.as_view(), name="usage_csv"),
]

"""Console URLs of accounts: sign-in and passwords, then a tenant's keys, members, signing keys and
audit pages under /t/<slug>/ (each view goes through accounts.access.tenant_page)."""

from __future__ import annotations

from django.urls import path

from accounts import views, views_keys

app_name = "accounts"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("account/password/", views.password_change, name="password_change"),
    path("account/password/done/", views.password_change_done, name="password_change_done"),
    path("password-reset/", views.password_reset, name="password_reset"),
    path("password-reset/sent/", views.password_reset_done, name="password_reset_done"),
    path("password-reset/<uidb64>/<token>/", views.password_reset_confirm, name="password_reset_confirm"),
    path("password-reset/done/", views.password_reset_complete, name="password_reset_complete"),
    path("t/<slug:slug>/keys/", views_keys.keys, name="keys"),
]

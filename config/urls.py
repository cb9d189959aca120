from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

import gateway.errors
from accounts.throttle import login_throttled
from config.health import healthz, readyz
from config.metrics import metrics_view


@csrf_exempt  # an API route: no session, so no CSRF; it only ever answers 404
def v1_not_found(request: HttpRequest, rest: str) -> HttpResponse:
    return gateway.errors.NotFound(f"Unknown API route: {request.path[:200]}", code="unknown_url").response()


# Password guessing: at most TOLLHOUSE_LOGIN_RATE failed sign-ins per client IP (429 beyond).
admin_login = login_throttled(admin.site.login)

urlpatterns = [
    path("v1/", include("gateway.urls")),
    path("v1/<path:rest>", v1_not_found),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics_view),
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("", lambda request: redirect("admin:index")),
]

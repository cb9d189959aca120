import importlib.util

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt

import gateway.errors
from accounts.throttle import login_throttled
from config.health import healthz, read_only, readyz
from config.metrics import metrics_view


@csrf_exempt  # an API route: no session, so no CSRF; it only ever answers 404
def v1_not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return gateway.errors.NotFound(f"Unknown API route: {request.path[:200]}", code="unknown_url").response()


# Password guessing: at most TOLLHOUSE_LOGIN_RATE failed sign-ins per client IP (429 beyond).
admin_login = login_throttled(admin.site.login)

urlpatterns = [
    path("v1/", include("gateway.urls")),
    # Every other /v1 path (`/v1` itself, a newline in it, 60 kB of it): the API's JSON 404.
    re_path(r"^v1(?:/(?P<rest>[\s\S]*))?$", v1_not_found),
    path("healthz", read_only(healthz)),
    path("readyz", read_only(readyz)),
    path("metrics", read_only(metrics_view)),
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    # The operator console (/ops/...): each app's operator pages, one URLconf per app, namespaced
    # <app>_ops (accounts.context.OPS_NAV lists them). Apps add theirs by creating `ops_urls.py`.
    *[
        path("ops/", include(f"{app}.ops_urls"))
        for app in ("billing", "accounts", "gateway")
        if importlib.util.find_spec(f"{app}.ops_urls") is not None
    ],
    # The management API (/api/v1/), its schema (/api/schema/) and docs (/api/docs/): accounts/api/.
    path("api/", include("accounts.api.root_urls")),
    # The console: sign-in and the tenant pages of each app (/t/<slug>/...), one URLconf per app.
    path("", include("accounts.urls")),
    path("", include("billing.urls")),
]

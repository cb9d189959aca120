from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

import gateway.errors


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@csrf_exempt  # an API route: no session, so no CSRF; it only ever answers 404
def v1_not_found(request: HttpRequest, rest: str) -> HttpResponse:
    return gateway.errors.NotFound(f"Unknown API route: {request.path[:200]}", code="unknown_url").response()


urlpatterns = [
    path("v1/", include("gateway.urls")),
    path("v1/<path:rest>", v1_not_found),
    path("healthz", healthz),
    path("admin/", admin.site.urls),
    path("", lambda request: redirect("admin:index")),
]

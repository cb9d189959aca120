"""The schema (/api/schema/, OpenAPI 3 by drf-spectacular, readable without a token) and its docs
page (/api/docs/: Swagger UI from drf-spectacular-sidecar's static files, started by our own
static/api/docs.js, so the page needs no CDN and no inline script under the CSP)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from accounts.api.errors import NOT_FOUND_MESSAGE, error_body


class SchemaView(SpectacularAPIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    renderer_classes = [OpenApiJsonRenderer, OpenApiYamlRenderer]


class ApiDocsView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "api/docs.html", {"schema_url": reverse("api-schema")})


@csrf_exempt  # an API path: no session, so no CSRF; it only ever answers 404
def api_not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    from django.http import JsonResponse

    return JsonResponse(error_body("not_found", NOT_FOUND_MESSAGE), status=404)

"""/api/: the management API (/api/v1/), its OpenAPI schema (/api/schema/) and docs (/api/docs/).

Each app's endpoints are in `<app>/api/urls.py` (namespace `<app>_api`), mounted here under /api/v1/
when the module exists. Any other /api/ path is the API's JSON 404.
"""

from __future__ import annotations

import importlib.util

from django.urls import include, path, re_path

from accounts.api.docs import ApiDocsView, SchemaView, api_not_found

API_APPS = ("accounts", "billing", "gateway")


def _has_api(app: str) -> bool:
    return (
        importlib.util.find_spec(f"{app}.api") is not None
        and importlib.util.find_spec(f"{app}.api.urls") is not None
    )


v1 = [path("", include(f"{app}.api.urls")) for app in API_APPS if _has_api(app)]

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SchemaView.as_view(), name="api-schema"),
    path("docs/", ApiDocsView.as_view(), name="api-docs"),
    re_path(r"^(?P<rest>[\s\S]*)$", api_not_found),
]

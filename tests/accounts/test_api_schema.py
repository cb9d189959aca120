"""/api/schema/ (OpenAPI 3 by drf-spectacular) validates and documents the token scheme and the
error shape; /api/docs/ is Swagger UI from our own static files with no inline script (CSP)."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db


def test_the_schema_is_valid_openapi_3_and_describes_the_api():
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)  # against the OpenAPI 3.0 JSON schema (drf-spectacular ships it)
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "thp_<prefix><secret>",
        "description": "A personal access token, created at /account/tokens/.",
    }
    assert all(path.startswith("/api/v1/") for path in schema["paths"])
    assert schema["components"]["schemas"]["Error"]["properties"]["error"]["required"] == [
        "code",
        "message",
        "field",
    ]
    for path_item in schema["paths"].values():
        for operation in path_item.values():
            assert {"400", "401", "404", "429"} <= set(operation["responses"])


def test_the_schema_generates_without_a_single_warning(tmp_path):
    # What `manage.py spectacular --validate --fail-on-warn` checks: any warning (an enum name
    # collision, a field it cannot type, an operation it cannot name) raises here.
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/v1/tenants/" in out.read_text()


def test_the_docs_page_is_served_from_our_static_files_without_inline_script():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in html and "style=" not in html
    assert "swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    for path in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
        assert finders.find(path), path  # shipped with us (the sidecar package or static/)

"""gateway.dialects: one route table for the ASGI handler, the URLconf, the OpenAPI document and the
metrics label, and Provider.kind offers exactly the kinds that have an adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ValidationError
from django.urls import resolve

from gateway import metrics
from gateway.asgi import gateway_handler
from gateway.dialects import CODECS, ENDPOINTS
from gateway.models import Provider
from gateway.providers import ADAPTERS

SPEC = Path(__file__).resolve().parents[3] / "gateway" / "openapi.yaml"


def test_it_serves_every_registered_route_in_the_asgi_handler_and_the_urlconf():
    handler = gateway_handler()
    assert set(handler.routes) == {endpoint.route.path for endpoint in ENDPOINTS}
    for endpoint in ENDPOINTS:
        method, _view = handler.routes[endpoint.route.path]
        assert method == endpoint.route.method
        assert resolve(endpoint.route.path).url_name == endpoint.route.operation


def test_it_documents_every_route_in_the_openapi_document():
    paths = yaml.safe_load(SPEC.read_text())["paths"]
    for endpoint in ENDPOINTS:
        assert endpoint.route.path in paths, endpoint.route.path
        assert endpoint.route.method.lower() in paths[endpoint.route.path]


def test_it_labels_metrics_by_every_codec_endpoint_and_nothing_else():
    for codec in CODECS.values():
        assert metrics._endpoint_label(codec.endpoint) == codec.endpoint
    assert metrics._endpoint_label("no-such-endpoint") == metrics.OTHER


@pytest.mark.django_db
def test_it_saves_a_provider_only_of_a_kind_with_an_adapter():
    assert {kind for kind, _label in Provider._meta.get_field("kind").choices} == set(ADAPTERS)
    provider = Provider(name="x", kind="no-such-kind", base_url="https://api.example.com/v1")
    with pytest.raises(ValidationError) as raised:
        provider.full_clean()
    assert "kind" in raised.value.message_dict
    for kind in ADAPTERS:
        Provider(name="x", kind=kind, base_url="https://api.example.com/v1").full_clean()

"""The operator reads kept bodies in the admin (gateway/admin.py BodyLogAdmin): read-only, and a
hostile search answers a page, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from accounts.services import tenant_create
from gateway.models import BodyLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1")
    client.force_login(operator)
    tenant = tenant_create(name="Acme", slug="acme")
    BodyLog.objects.create(
        request_id="req-abc123",
        tenant=tenant,
        endpoint="chat.completions",
        status=200,
        request_body='{"messages": [{"content": "find me"}]}',
        response_body='{"choices": []}',
        created_at=datetime.now(tz=UTC),
    )
    return client


def test_the_operator_lists_finds_and_reads_a_calls_bodies(operator_client):
    page = operator_client.get("/admin/gateway/bodylog/", {"q": "req-abc123"})
    assert page.status_code == 200 and "req-abc123" in page.content.decode()
    assert "0 results" in operator_client.get("/admin/gateway/bodylog/", {"q": "req-other"}).content.decode()
    entry = BodyLog.objects.get()
    detail = operator_client.get(f"/admin/gateway/bodylog/{entry.pk}/change/")
    assert detail.status_code == 200 and "find me" in detail.content.decode()


def test_nobody_adds_changes_or_deletes_a_body_log(operator_client):
    entry = BodyLog.objects.get()
    assert operator_client.get("/admin/gateway/bodylog/add/").status_code == 403
    assert (
        operator_client.post(f"/admin/gateway/bodylog/{entry.pk}/change/", {"status": 500}).status_code == 403
    )
    assert (
        operator_client.post(f"/admin/gateway/bodylog/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert BodyLog.objects.get().status == 200


@pytest.mark.parametrize(
    "query", ["%00", "req%00abc", "%ED%A0%80", "%FF%FE", "x" * 100_000, "%27%20OR%201%3D1%20--"]
)
def test_a_hostile_search_answers_a_page_not_an_error(operator_client, query):
    # Percent-encoded by hand: NUL, a lone surrogate's UTF-8 bytes, bytes that are not UTF-8.
    page = operator_client.get(f"/admin/gateway/bodylog/?q={query}")
    assert page.status_code in {200, 400}
    assert BodyLog.objects.count() == 1

"""The admin's add view issues a key and shows it once, in that response only: no cookie, no
stored message, no cache; only the key's digest reaches the database."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connection

from accounts import keys
from accounts.models import ApiKey
from accounts.services import tenant_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1"))
    return client


@pytest.fixture
def tenant():
    return tenant_create(name="Acme", slug="acme")


def add_form(tenant, **overrides):
    data = {
        "tenant": tenant.pk,
        "name": "ci",
        "status": "active",
        "expires_at_0": "",
        "expires_at_1": "",
        "allowed_models": "[]",
        "allowed_ips": '["10.1.2.3/8"]',
        "rpm_limit": "",
        "tpm_limit": "",
        "concurrency_limit": "",
        "budget": "",
    }
    return {**data, **overrides}


def issued_key(response) -> str:
    body = response.content.decode()
    start = body.index('value="th-') + len('value="')
    return body[start : body.index('"', start)]


def test_it_shows_the_new_key_once_in_the_response(operator_client, tenant):
    response = operator_client.post("/admin/accounts/apikey/add/", add_form(tenant))

    assert response.status_code == 200
    raw = issued_key(response)
    parsed = keys.parse(raw)
    stored = ApiKey.objects.get()
    assert parsed is not None and stored.prefix == parsed.prefix
    assert stored.digest == keys.digest(parsed.secret)
    assert stored.allowed_ips == ["10.0.0.0/8"]  # validated and normalised by the service
    assert f"/admin/accounts/apikey/{stored.pk}/change/" in response.content.decode()
    assert "no-store" in response["Cache-Control"]


def test_it_never_puts_the_key_in_a_cookie_the_session_or_a_message(operator_client, tenant):
    response = operator_client.post("/admin/accounts/apikey/add/", add_form(tenant))
    raw = issued_key(response)
    secret = keys.parse(raw).secret

    for cookie in response.cookies.values():
        assert secret not in cookie.value
    assert secret not in str(response.get("Set-Cookie", ""))
    assert not [str(m) for m in get_messages(response.wsgi_request) if secret in str(m)]
    session = operator_client.session
    assert all(secret not in str(value) for value in session.values())
    # The next page shows no trace of it either.
    follow_up = operator_client.get("/admin/accounts/apikey/")
    assert secret not in follow_up.content.decode()


def test_it_stores_only_the_digest(operator_client, tenant):
    response = operator_client.post("/admin/accounts/apikey/add/", add_form(tenant))
    secret = keys.parse(issued_key(response)).secret

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        row = " ".join(str(value) for value in cursor.fetchone())
        cursor.execute("SELECT * FROM django_admin_log")
        log = " ".join(str(value) for row in cursor.fetchall() for value in row)
        cursor.execute("SELECT session_data FROM django_session")
        sessions = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert secret not in row and secret not in log and secret not in sessions


def test_it_issues_nothing_on_a_bad_form(operator_client, tenant):
    response = operator_client.post(
        "/admin/accounts/apikey/add/", add_form(tenant, allowed_ips='["10.0.0.0/8", "not-an-ip"]')
    )
    assert response.status_code == 200
    assert "Not an IP address or CIDR range: &#x27;not-an-ip&#x27;" in response.content.decode()
    assert 'value="th-' not in response.content.decode()
    assert ApiKey.objects.count() == 0


def test_it_refuses_to_issue_a_key_already_expired_next_to_the_field(db):
    from django.contrib.auth import get_user_model
    from django.test import Client

    from accounts.models import ApiKey
    from accounts.services import tenant_create

    operator = get_user_model().objects.create_superuser("op2", "op2@example.com", "pw-operator-2")
    tenant = tenant_create(name="Expiring", slug="expiring")
    client = Client()
    client.force_login(operator)
    response = client.post(
        "/admin/accounts/apikey/add/",
        {
            "tenant": tenant.pk,
            "name": "late",
            "status": "active",
            "expires_at_0": "2001-01-01",
            "expires_at_1": "10:00:00",
            "allowed_models": "[]",
            "allowed_ips": "[]",
        },
    )
    assert response.status_code == 200
    assert "expires_at" in response.context["adminform"].form.errors
    assert not ApiKey.objects.filter(name="late").exists()

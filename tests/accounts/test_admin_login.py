import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


def test_it_stops_password_guessing_at_the_login_rate(client, settings):
    get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1")
    statuses = [
        client.post("/admin/login/", {"username": "op", "password": f"guess-{i}"}).status_code
        for i in range(12)
    ]
    assert statuses[:10] == [200] * 10  # the form again, with an error
    assert statuses[10:] == [403, 403]


def test_it_lets_the_operator_in(client):
    get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1")
    response = client.post(
        "/admin/login/", {"username": "op", "password": "pw-operator-1", "next": "/admin/"}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"

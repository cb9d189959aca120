"""The login's guessing limit: per client IP (and per account), in Redis, and never a 500 when Redis is gone."""

import logging

import pytest
import time_machine
from django.contrib.auth import get_user_model

from accounts.throttle import login_throttle

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters():
    login_throttle().reset()
    # The window is a calendar minute: keep the test inside one.
    with time_machine.travel("2026-11-23 12:00:05Z", tick=False):
        yield
    login_throttle().reset()


@pytest.fixture
def operator():
    return get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1")


def guess(client, n, username="op", **extra):
    return [
        client.post("/admin/login/", {"username": username, "password": f"guess-{i}"}, **extra).status_code
        for i in range(n)
    ]


def test_it_stops_password_guessing_at_the_login_rate(client, operator):
    statuses = guess(client, 12)
    assert statuses[:10] == [200] * 10  # the form again, with an error
    assert statuses[10:] == [429, 429]
    response = client.post("/admin/login/", {"username": "op", "password": "pw-operator-1"})
    assert response.status_code == 429 and int(response["Retry-After"]) > 0


def test_it_lets_the_operator_in(client, operator):
    response = client.post(
        "/admin/login/", {"username": "op", "password": "pw-operator-1", "next": "/admin/"}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_it_does_not_count_successful_sign_ins(client, operator):
    for _ in range(12):
        assert (
            client.post("/admin/login/", {"username": "op", "password": "pw-operator-1"}).status_code == 302
        )
        client.logout()


def test_it_ignores_a_forwarded_address_from_an_untrusted_peer(client, operator):
    statuses = [
        client.post(
            "/admin/login/",
            {"username": "op", "password": "nope"},
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        ).status_code
        for i in range(15)
    ]
    assert statuses.count(429) == 5


def test_it_counts_per_forwarded_client_behind_a_trusted_proxy(client, operator, settings):
    from ipaddress import ip_network

    settings.TOLLHOUSE_TRUSTED_PROXIES = (ip_network("127.0.0.0/8"),)
    one = guess(client, 11, HTTP_X_FORWARDED_FOR="198.51.100.7", REMOTE_ADDR="127.0.0.1")
    # Another client (guessing another account: the account "op" is held back wherever from).
    other = guess(client, 1, "op2", HTTP_X_FORWARDED_FOR="198.51.100.8", REMOTE_ADDR="127.0.0.1")
    assert one[-1] == 429 and other == [200]


def test_it_keeps_limiting_in_process_when_redis_refuses(client, operator, settings, caplog):
    from config.redis import sync_client

    sync_client.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        with caplog.at_level(logging.WARNING, logger="accounts.throttle"):
            statuses = guess(client, 12)
        assert statuses[:10] == [200] * 10 and statuses[10:] == [429, 429]
        assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
    finally:
        sync_client.cache_clear()

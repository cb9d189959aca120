"""/healthz and /readyz: unauthenticated, fast, and /readyz names the part that is down (database,
Redis, broker, migrations) without saying anything about hosts or credentials."""

from __future__ import annotations

import time

import httpx
import pytest
from django.conf import settings
from django.db import connection

from config import health
from tests.support.process import GatewayProcess, RedisServer, database_down, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_is_ready_when_everything_answers(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_it_names_the_database_when_it_is_unreachable_and_recovers(client):
    with database_down():
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "failed": ["database"]}
        assert client.get("/healthz").status_code == 200  # the process itself still answers
    assert client.get("/readyz").status_code == 200


def test_it_names_pending_migrations(client, monkeypatch):
    from django.db.migrations.executor import MigrationExecutor

    monkeypatch.setattr(health, "_migrated", False)
    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: ["0099_pending"])
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["failed"] == ["migrations"]


def test_it_names_a_broker_that_is_not_the_redis_it_already_checks(client, settings):
    settings.CELERY_BROKER_URL = "amqp://guest:secret-password@127.0.0.1:1//"
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["failed"] == ["broker"]
    assert "secret-password" not in response.content.decode() and "127.0.0.1" not in response.content.decode()


@pytest.mark.skipif(
    not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
)
def test_a_live_gateway_reports_its_redis_down_and_back():
    with RedisServer() as redis_server:
        env = subprocess_env(settings_dict=connection.settings_dict, redis_url=redis_server.url)
        with GatewayProcess(env=env) as gateway:
            assert httpx.get(gateway.url + "/readyz", timeout=5).status_code == 200
            redis_server.stop()
            started = time.monotonic()
            down = httpx.get(gateway.url + "/readyz", timeout=5)
            assert down.status_code == 503 and down.json()["failed"] == ["redis"]
            assert time.monotonic() - started < 3  # fast, even with Redis gone
            assert str(redis_server.port) not in down.text
            redis_server.start()
            assert httpx.get(gateway.url + "/readyz", timeout=5).status_code == 200
            assert "Traceback" not in gateway.log()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"])
def test_it_answers_other_methods_with_a_plain_405_and_allow(path, method):
    from django.test import Client

    # As a browser or a script would meet it: CSRF enforced (the test client skips it by default).
    response = Client(enforce_csrf_checks=True).generic(method, path)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert b"<" not in response.content  # not Django's HTML CSRF page


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_it_answers_head(client, path):
    assert client.head(path).status_code == 200

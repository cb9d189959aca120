"""The production profile over plain http, as `manage.py serve` runs it behind a TLS-terminating load
balancer: the console is redirected to https unless a trusted proxy says the client came over https
(X-Forwarded-Proto from anyone else is ignored), and /v1 is never redirected, known route or not."""

from __future__ import annotations

import httpx
import pytest
from django.conf import settings as django_settings

from tests.support.process import GatewayProcess, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}


def production(trusted_proxies: str) -> GatewayProcess:
    env = subprocess_env(
        settings_dict=django_settings.DATABASES["default"],
        redis_url=django_settings.REDIS_URL,
        TOLLHOUSE_SSL_REDIRECT="true",  # production's default; the test profile turns it off
        TOLLHOUSE_TRUSTED_PROXIES=trusted_proxies,
    )
    return GatewayProcess(env=env)


def test_a_spoofed_forwarded_proto_from_an_untrusted_peer_is_redirected_and_v1_never_is(world):
    # The README's example: the load balancers are 10.0.0.0/8; this client is on 127.0.0.1.
    with production("10.0.0.0/8") as gateway:
        spoofed = httpx.get(gateway.url + "/admin/login/", headers={"X-Forwarded-Proto": "https"})
        assert spoofed.status_code == 301 and spoofed.headers["location"].startswith("https://")

        auth = {"Authorization": f"Bearer {world.key}"}
        assert httpx.post(gateway.url + "/v1/chat/completions", headers=auth, json=CHAT).status_code == 200
        for method, path in [
            ("GET", "/v1"),
            ("GET", "/v1/"),
            ("POST", "/v1/completions"),
            ("GET", "/v1/files"),
            ("GET", "/v1/models/"),
            ("GET", "/v1/" + "x" * 60_000),
        ]:
            response = httpx.request(method, gateway.url + path, headers=auth, timeout=10)
            assert response.status_code == 404, (path[:40], response.status_code, response.text[:200])
            assert response.json()["error"]["code"] == "unknown_url"
        log = gateway.log()
    assert "DisallowedRedirect" not in log and '"level":"ERROR"' not in log, log[-2000:]


def test_a_trusted_proxys_forwarded_proto_is_believed(world):
    with production("127.0.0.1/32") as gateway:
        said_https = httpx.get(gateway.url + "/admin/login/", headers={"X-Forwarded-Proto": "https"})
        assert said_https.status_code == 200
        said_nothing = httpx.get(gateway.url + "/admin/login/")
        assert said_nothing.status_code == 301

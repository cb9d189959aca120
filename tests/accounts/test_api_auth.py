"""The management API's way in (accounts/api/authentication.py, accounts/api/base.py): a personal
access token or 401 in the one error shape; one answer for every token we do not know; expired and
revoked tokens refused; per-token and per-address limits (429 with Retry-After); no session."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import PersonalAccessToken
from tests.support.api import client_with, expired_token_for, revoked_token_for, token_for

pytestmark = pytest.mark.django_db

ME = "/api/v1/me/"


def error(response):
    assert response["Content-Type"] == "application/json", response.content[:200]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    return body["error"]


def test_it_answers_who_the_token_acts_as(roles):
    response = client_with(token_for(roles.admin)).get(ME)
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == roles.admin.username
    assert body["operator"] is False
    assert body["memberships"] == [{"tenant": "acme", "tenant_name": "Acme", "role": "admin"}]
    assert body["token"]["prefix"] and "digest" not in body["token"]


def test_it_refuses_a_call_without_a_token_with_401(roles):
    response = Client().get(ME)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert error(response)["code"] == "not_authenticated"


def test_it_ignores_a_console_session(console_client):
    """The console's session cookie is not a way in (so no CSRF question arises either)."""
    response = console_client("owner").get(ME)
    assert response.status_code == 401
    assert error(response)["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer thp_nosuchprefix0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "Bearer th-abc",
        "Basic dXNlcjpwYXNz",
        "Bearer " + "x" * 5000,
        "thp_",
    ],
)
def test_it_gives_one_answer_for_anything_that_is_not_a_token(roles, header):
    response = Client(headers={"Authorization": header}).get(ME)
    assert response.status_code == 401
    assert error(response) == {"code": "invalid_token", "message": "The token is not valid.", "field": None}


def test_a_wrong_secret_of_a_real_prefix_looks_like_an_unknown_token(roles):
    raw = token_for(roles.owner)
    wrong = raw[:-4] + ("aaaa" if not raw.endswith("aaaa") else "bbbb")
    response = client_with(wrong).get(ME)
    assert response.status_code == 401
    assert error(response)["code"] == "invalid_token"


def test_an_expired_token_is_401_token_expired(roles):
    response = client_with(expired_token_for(roles.owner)).get(ME)
    assert response.status_code == 401
    assert error(response)["code"] == "token_expired"


def test_a_revoked_token_is_401_token_revoked(roles):
    response = client_with(revoked_token_for(roles.owner)).get(ME)
    assert response.status_code == 401
    assert error(response)["code"] == "token_revoked"


def test_a_deactivated_users_token_is_refused(roles):
    raw = token_for(roles.owner)
    roles.owner.is_active = False
    roles.owner.save()
    assert client_with(raw).get(ME).status_code == 401


def test_it_notes_the_last_use_at_most_once_a_minute(roles, django_assert_max_num_queries):
    raw = token_for(roles.owner)
    client = client_with(raw)
    assert client.get(ME).status_code == 200
    token = PersonalAccessToken.objects.get(prefix=raw[4:16])
    first = token.last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=5)
    assert client.get(ME).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at == first  # not written again within the minute


def test_it_limits_calls_per_token_with_429_and_retry_after(roles, settings):
    settings.TOLLHOUSE_API_RATE = "3/m"
    client = client_with(token_for(roles.owner))
    assert [client.get(ME).status_code for _ in range(3)] == [200, 200, 200]
    response = client.get(ME)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert error(response)["code"] == "rate_limited"
    # Another token of the same user has its own count.
    assert client_with(token_for(roles.owner)).get(ME).status_code == 200


def test_it_limits_failed_token_checks_per_address(roles, settings):
    settings.TOLLHOUSE_API_AUTH_FAILURE_RATE = "2/m"
    stranger = Client(headers={"Authorization": "Bearer thp_" + "a" * 52}, REMOTE_ADDR="203.0.113.9")
    assert [stranger.get(ME).status_code for _ in range(2)] == [401, 401]
    response = stranger.get(ME)
    assert response.status_code == 429
    assert error(response)["code"] == "too_many_failures"
    assert int(response["Retry-After"]) >= 1
    # Even the right token from that address waits; another address is not affected.
    good = token_for(roles.owner)
    assert (
        Client(headers={"Authorization": f"Bearer {good}"}, REMOTE_ADDR="203.0.113.9").get(ME).status_code
        == 429
    )
    assert (
        Client(headers={"Authorization": f"Bearer {good}"}, REMOTE_ADDR="203.0.113.10").get(ME).status_code
        == 200
    )


def test_errors_have_one_shape_for_unknown_paths_and_methods(roles):
    client = client_with(token_for(roles.owner))
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert error(response)["code"] == "not_found"
    response = client.delete(ME)
    assert response.status_code == 405
    assert error(response)["code"] == "method_not_allowed"
    assert "GET" in response["Allow"]


def test_it_answers_json_whatever_the_accept_header(roles):
    response = client_with(token_for(roles.owner)).get(ME, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"

"""Sign-in, sign-out, password change and reset for the console (accounts/views.py)."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

pytestmark = pytest.mark.django_db


def sign_in(client, username, password, **extra):
    return client.post("/login/", {"username": username, "password": password}, **extra)


def test_it_signs_in_by_email_and_lands_on_the_first_tenant(roles):
    client = Client()
    response = sign_in(client, "viewer@acme.test", roles.password)
    assert response.status_code == 302
    assert response["Location"] == "/"
    landing = client.get("/")
    assert landing.status_code == 302
    assert landing["Location"].startswith("/t/acme/")


def test_it_signs_in_by_username_and_follows_next(roles):
    client = Client()
    response = client.post(
        "/login/?next=/t/acme/keys/",
        {"username": "owner-acme", "password": roles.password, "next": "/t/acme/keys/"},
    )
    assert response["Location"] == "/t/acme/keys/"


def test_it_does_not_follow_next_off_site(roles):
    client = Client()
    response = client.post(
        "/login/", {"username": "owner-acme", "password": roles.password, "next": "https://evil.test/"}
    )
    assert response["Location"] == "/"


@pytest.mark.parametrize(
    "username", ["owner@acme.test", "nobody@acme.test", "x\x00y", "a" * 5000, "owner-acme"]
)
def test_it_refuses_a_wrong_password_with_the_form_again(roles, username):
    response = sign_in(Client(), username, "wrong-password")
    assert response.status_code == 200
    assert "_auth_user_id" not in response.wsgi_request.session
    assert response.context["form"].errors
    assert b'class="form-errors"' in response.content or b'class="error"' in response.content


def test_it_throttles_sign_in_per_client_ip(roles, settings):
    settings.TOLLHOUSE_LOGIN_RATE = "3/m"
    from accounts.throttle import login_throttle

    login_throttle.cache_clear()
    try:
        client = Client(REMOTE_ADDR="203.0.113.9")
        for number in range(3):
            assert sign_in(client, f"guess{number}@acme.test", "nope").status_code == 200
        refused = sign_in(client, "owner@acme.test", roles.password)
        assert refused.status_code == 429
        assert int(refused["Retry-After"]) > 0
        # Another address is not held back.
        assert (
            sign_in(Client(REMOTE_ADDR="203.0.113.10"), "owner@acme.test", roles.password).status_code == 302
        )
    finally:
        login_throttle.cache_clear()


def test_it_throttles_sign_in_per_account_across_addresses(roles, settings):
    settings.TOLLHOUSE_LOGIN_RATE = "3/m"
    from accounts.throttle import login_throttle

    login_throttle.cache_clear()
    try:
        for number in range(3):
            client = Client(REMOTE_ADDR=f"198.51.100.{number + 1}")
            assert sign_in(client, "Owner@Acme.test", "nope").status_code == 200
        refused = sign_in(Client(REMOTE_ADDR="198.51.100.50"), "owner@acme.test", roles.password)
        assert refused.status_code == 429
        # Other accounts from a fresh address are not.
        assert (
            sign_in(Client(REMOTE_ADDR="198.51.100.51"), "admin@acme.test", roles.password).status_code == 302
        )
    finally:
        login_throttle.cache_clear()


def test_the_window_slides_so_a_slot_boundary_gives_no_fresh_allowance(roles, settings):
    # Three failures in the last second of one minute and a guess in the first second of the next:
    # a fixed window would start counting afresh; the sliding window still counts them.
    import datetime as dt

    import time_machine

    from accounts.throttle import login_throttle

    settings.TOLLHOUSE_LOGIN_RATE = "3/m"
    login_throttle.cache_clear()
    try:
        with time_machine.travel(dt.datetime(2026, 5, 1, 12, 0, 59, tzinfo=dt.UTC), tick=False) as clock:
            for number in range(3):
                client = Client(REMOTE_ADDR=f"198.51.100.{number + 1}")
                assert sign_in(client, "owner@acme.test", "nope").status_code == 200
            clock.move_to(dt.datetime(2026, 5, 1, 12, 1, 1, tzinfo=dt.UTC))
            assert (
                sign_in(Client(REMOTE_ADDR="198.51.100.9"), "owner@acme.test", roles.password).status_code
                == 429
            )
            # A whole window later the failures have slid out.
            clock.move_to(dt.datetime(2026, 5, 1, 12, 2, 1, tzinfo=dt.UTC))
            assert (
                sign_in(Client(REMOTE_ADDR="198.51.100.9"), "owner@acme.test", roles.password).status_code
                == 302
            )
    finally:
        login_throttle.cache_clear()


def test_it_signs_out_with_post_only(console_client):
    client = console_client("owner")
    assert client.get("/logout/").status_code == 405
    assert client.get("/t/acme/keys/").status_code == 200
    response = client.post("/logout/")
    assert response.status_code == 302
    assert client.get("/t/acme/keys/").status_code == 302


def test_sign_out_needs_the_csrf_token(roles):
    client = Client(enforce_csrf_checks=True)
    client.force_login(roles.owner)
    assert client.post("/logout/").status_code == 403
    assert client.get("/t/acme/keys/").status_code == 200


def test_it_changes_the_password(console_client, roles):
    client = console_client("member")
    response = client.post(
        "/account/password/",
        {
            "old_password": roles.password,
            "new_password1": "a-new-pass-4471",
            "new_password2": "a-new-pass-4471",
        },
    )
    assert response["Location"] == "/account/password/done/"
    roles.member.refresh_from_db()
    assert roles.member.check_password("a-new-pass-4471")


def test_it_resets_a_password_by_email_with_a_link_to_the_public_url(roles, settings):
    settings.TOLLHOUSE_PUBLIC_URL = "https://console.example.test"
    response = Client(HTTP_HOST="evil.test").post("/password-reset/", {"email": "viewer@acme.test"})
    assert response["Location"] == "/password-reset/sent/"
    assert len(mail.outbox) == 1
    body = mail.outbox[0].body
    assert "evil.test" not in body
    link = re.search(r"https://console\.example\.test(/password-reset/\S+/)", body).group(1)
    client = Client()
    form = client.get(link, follow=True)
    assert form.status_code == 200 and form.context["validlink"]
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": "fresh-pass-9183", "new_password2": "fresh-pass-9183"}
    )
    assert done["Location"] == "/password-reset/done/"
    assert sign_in(Client(), "viewer@acme.test", "fresh-pass-9183").status_code == 302
    # The link works once.
    assert client.get(link, follow=True).context["validlink"] is False


def test_a_reset_for_an_unknown_address_looks_the_same_and_sends_nothing(roles):
    response = Client().post("/password-reset/", {"email": "nobody@nowhere.test"})
    assert response["Location"] == "/password-reset/sent/"
    assert mail.outbox == []


def test_pages_carry_the_content_security_policy(roles):
    response = Client().get("/login/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"<script>" not in response.content

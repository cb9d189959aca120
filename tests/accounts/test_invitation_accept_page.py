"""/invitations/<token>/, the public page an invitation email links to: a new account with a password,
the signed-in invitee joining with a button, someone else signed in sent away, an existing account
asked to sign in; expired, revoked, used and unknown links refused with a sentence; failed attempts
throttled per client IP; CSRF on the form."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from accounts.audit import Actor
from accounts.members import invitation_create, invitation_revoke
from accounts.models import AuditEntry, Invitation, Membership
from tests.support.invitations import invitation_link

pytestmark = pytest.mark.django_db
User = get_user_model()
PASSWORD = "a-long-enough-passphrase-7"


def invite(roles, email="new@example.com", role="member"):
    invitation_create(tenant=roles.tenant, email=email, role=role, actor=Actor.console(roles.owner))
    return invitation_link()[1]


def post(client, token, data=None):
    """The page's forms post the token in their body (never in the URL a POST is logged under)."""
    return client.post("/invitations/accept/", {"token": token, **(data or {})})


def test_a_new_person_sets_a_password_and_is_signed_in_as_a_member(roles):
    token = invite(roles)
    client = Client()
    page = client.get(f"/invitations/{token}/")
    assert page.status_code == 200 and "Create your account for" in page.content.decode()
    assert "no-store" in page["Cache-Control"]
    assert 'action="/invitations/accept/"' in page.content.decode()
    assert client.post(f"/invitations/{token}/", {"password1": PASSWORD}).status_code == 405
    response = post(client, token, {"name": "Nina", "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302
    user = User.objects.get(email="new@example.com")
    assert Membership.objects.get(user=user).tenant == roles.tenant
    assert client.get("/t/acme/keys/").status_code == 200  # signed in
    assert AuditEntry.objects.filter(action="invitation.accept", tenant=roles.tenant).count() == 1
    # The link is spent.
    again = Client().get(f"/invitations/{token}/")
    assert again.status_code == 410 and "already been used" in again.content.decode()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "Nina", "password1": PASSWORD, "password2": PASSWORD + "x"}, "password2"),
        ({"name": "Nina", "password1": "short", "password2": "short"}, "password1"),
        ({"name": "Nina", "password1": "", "password2": ""}, "password1"),
        ({"name": "N" * 151, "password1": PASSWORD, "password2": PASSWORD}, "name"),
        ({"name": "Ni\x00na", "password1": PASSWORD, "password2": PASSWORD}, "name"),
    ],
)
def test_bad_input_is_refused_inline_and_nothing_is_created(roles, data, field):
    token = invite(roles)
    response = post(Client(), token, data)
    assert response.status_code == 400
    assert f'id="id_{field}_error"' in response.content.decode()
    assert not User.objects.filter(email="new@example.com").exists()
    assert Invitation.objects.get().state == "pending"


def test_the_signed_in_invitee_joins_with_one_button(roles, console_client):
    token = invite(roles, email="owner@globex.test", role="viewer")
    client = console_client("outsider")
    assert "Join Acme" in client.get(f"/invitations/{token}/").content.decode()
    assert post(client, token).status_code == 302
    assert Membership.objects.get(tenant=roles.tenant, user=roles.outsider).role == "viewer"


def test_someone_else_signed_in_is_told_to_sign_out(roles, console_client):
    token = invite(roles)
    client = console_client("viewer")
    page = client.get(f"/invitations/{token}/").content.decode()
    assert "This invitation is for <strong>new@example.com</strong>" in page
    assert post(client, token).status_code == 403
    assert Invitation.objects.get().state == "pending"


def test_an_existing_account_is_asked_to_sign_in(roles):
    token = invite(roles, email="owner@globex.test")
    page = Client().get(f"/invitations/{token}/").content.decode()
    assert "/login/?next=%2Finvitations%2F" in page
    response = post(Client(), token, {"password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 409 and not Membership.objects.filter(
        user=roles.outsider, tenant=roles.tenant
    )


def test_unusable_links_say_why(roles):
    expired = invite(roles, email="late@example.com")
    Invitation.objects.filter(email="late@example.com").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    revoked = invite(roles, email="gone@example.com")
    invitation_revoke(invitation=Invitation.objects.get(email="gone@example.com"))
    for token, status, text in [
        (expired, 410, "has expired"),
        (revoked, 410, "was withdrawn"),
        ("A" * 43, 404, "not valid"),
    ]:
        for response in (
            Client().get(f"/invitations/{token}/"),
            post(Client(), token, {"password1": PASSWORD, "password2": PASSWORD}),
        ):
            assert response.status_code == status and text in response.content.decode()
    assert not User.objects.filter(email__in=["late@example.com", "gone@example.com"]).exists()


def test_failed_attempts_are_throttled_per_address(roles, settings):
    settings.TOLLHOUSE_INVITATION_RATE = "3/m"
    from accounts.throttle import invitation_throttle

    invitation_throttle.cache_clear()
    try:
        token = invite(roles)
        client = Client(REMOTE_ADDR="203.0.113.9")
        for _ in range(3):
            assert client.get("/invitations/guess-guess-guess/").status_code == 404
        assert client.get(f"/invitations/{token}/").status_code == 429  # even a good link, from there
        assert Client(REMOTE_ADDR="203.0.113.10").get(f"/invitations/{token}/").status_code == 200
    finally:
        invitation_throttle.cache_clear()


def test_it_needs_the_csrf_token(roles):
    token = invite(roles)
    response = post(
        Client(enforce_csrf_checks=True),
        token,
        {"name": "Nina", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 403 and not User.objects.filter(email="new@example.com").exists()

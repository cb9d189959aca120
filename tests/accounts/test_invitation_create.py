"""accounts.members.invitation_create / invitation_revoke: who may invite whom, one open invitation
per address, the email (subject, text, HTML) with a link whose token is never stored, and nothing
saved when the input is bad or the email cannot be sent."""

from __future__ import annotations

import smtplib
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.audit import Actor
from accounts.members import invitation_create, invitation_for_token, invitation_revoke, token_digest
from accounts.models import Invitation, Membership
from accounts.services import tenant_create
from tests.support.invitations import invitation_link

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def acme():
    return tenant_create(name="Acme", slug="acme", timezone_name="Europe/Paris")


def member(tenant, role, name):
    user = User.objects.create_user(name, f"{name}@acme.test", "pw-long-enough-1")
    Membership.objects.create(tenant=tenant, user=user, role=role)
    return user


@pytest.fixture
def owner(acme):
    return member(acme, "owner", "olive")


@pytest.fixture
def admin(acme):
    return member(acme, "admin", "adam")


def test_it_emails_a_link_and_stores_only_the_digest(acme, owner):
    invitation = invitation_create(
        tenant=acme, email=" New.Person@Example.COM ", role="member", actor=Actor.console(owner)
    )
    assert (invitation.email, invitation.role, invitation.invited_by) == (
        "new.person@example.com",
        "member",
        owner,
    )
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new.person@example.com"]
    assert message.subject == "[Tollhouse] olive@acme.test invited you to Acme"
    url, token = invitation_link(message)
    assert url == f"http://127.0.0.1:8000/invitations/{token}/"
    assert "as a member" in message.body and "(Europe/Paris)" in message.body
    stored = Invitation.objects.get()
    assert stored.token_digest == token_digest(token) and token not in stored.token_digest
    assert invitation_for_token(token) == stored
    assert invitation_for_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None


def test_it_expires_after_the_configured_days(acme, owner, settings):
    settings.TOLLHOUSE_INVITATION_DAYS = 3
    with time_machine.travel("2026-03-01 12:00Z", tick=False):
        invitation = invitation_create(
            tenant=acme, email="a@example.com", role="viewer", actor=Actor.console(owner)
        )
        assert invitation.expires_at == timezone.now() + timedelta(days=3)
        assert invitation.state == "pending"
    with time_machine.travel("2026-03-04 12:00:01Z"):
        assert Invitation.objects.get().state == "expired"


def test_it_refuses_a_second_open_invitation_but_replaces_an_expired_one(acme, owner):
    first = invitation_create(tenant=acme, email="a@example.com", role="member", actor=Actor.console(owner))
    with pytest.raises(ValidationError) as caught:
        invitation_create(tenant=acme, email="A@example.com", role="admin", actor=Actor.console(owner))
    assert "already has an open invitation" in caught.value.message_dict["email"][0]
    Invitation.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    second = invitation_create(tenant=acme, email="a@example.com", role="admin", actor=Actor.console(owner))
    first.refresh_from_db()
    assert first.state == "revoked" and second.state == "pending"
    assert len(mail.outbox) == 2


def test_it_refuses_to_invite_a_member(acme, owner, admin):
    with pytest.raises(ValidationError) as caught:
        invitation_create(tenant=acme, email="ADAM@acme.test", role="member", actor=Actor.console(owner))
    assert caught.value.message_dict == {"email": ["adam@acme.test is already a member of Acme."]}
    assert not Invitation.objects.exists() and not mail.outbox


def test_an_admin_cannot_invite_an_owner(acme, admin):
    with pytest.raises(ValidationError) as caught:
        invitation_create(tenant=acme, email="boss@example.com", role="owner", actor=Actor.console(admin))
    assert caught.value.message_dict == {"role": ["Only an owner can invite an owner."]}
    invitation_create(tenant=acme, email="helper@example.com", role="admin", actor=Actor.console(admin))
    assert Invitation.objects.count() == 1


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_invite(acme, role):
    with pytest.raises(PermissionDenied):
        invitation_create(
            tenant=acme, email="x@example.com", role="viewer", actor=Actor.console(member(acme, role, "m"))
        )
    assert not Invitation.objects.exists()


def test_someone_of_another_tenant_cannot_invite(acme):
    globex = tenant_create(name="Globex", slug="globex")
    with pytest.raises(PermissionDenied):
        invitation_create(
            tenant=acme,
            email="x@example.com",
            role="member",
            actor=Actor.console(member(globex, "owner", "eve")),
        )


def test_a_command_or_the_operator_may_invite_an_owner(acme):
    invitation_create(tenant=acme, email="first@example.com", role="owner")
    operator = User.objects.create_superuser("op", "op@example.com", "pw-operator-1")
    invitation_create(tenant=acme, email="second@example.com", role="owner", actor=Actor.console(operator))
    assert "The Tollhouse operator invited you" in mail.outbox[0].subject.replace("[Tollhouse] ", "")
    assert Invitation.objects.filter(role="owner").count() == 2


@pytest.mark.parametrize(
    ("email", "role", "fields"),
    [
        ("", "member", {"email"}),
        ("not-an-address", "member", {"email"}),
        ("a\x00b@example.com", "member", {"email"}),
        ("x" * 250 + "@example.com", "member", {"email"}),
        ("ok@example.com", "superuser", {"role"}),
        ("nope", "", {"email", "role"}),
    ],
)
def test_it_refuses_bad_input_and_stores_nothing(acme, owner, email, role, fields):
    with pytest.raises(ValidationError) as caught:
        invitation_create(tenant=acme, email=email, role=role, actor=Actor.console(owner))
    assert set(caught.value.message_dict) == fields
    assert not Invitation.objects.exists() and not mail.outbox


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(email=st.one_of(st.emails(), st.text(max_size=300)))
def test_any_email_input_is_stored_as_given_or_refused_cleanly(acme, owner, email):
    Invitation.objects.all().delete()
    try:
        invitation = invitation_create(tenant=acme, email=email, role="member", actor=Actor.console(owner))
    except ValidationError as exc:
        assert set(exc.message_dict) == {"email"}
        assert not Invitation.objects.exists()
    else:
        stored = Invitation.objects.get()
        assert stored.email == invitation.email == email.strip().lower()
        assert len(stored.email) <= 254 and stored.email.isprintable()


def test_nothing_is_saved_when_the_email_cannot_be_sent(acme, owner, monkeypatch):
    def refuse(self, messages):
        raise smtplib.SMTPServerDisconnected("gone")

    monkeypatch.setattr("django.core.mail.backends.locmem.EmailBackend.send_messages", refuse)
    with pytest.raises(ValidationError) as caught:
        invitation_create(tenant=acme, email="a@example.com", role="member", actor=Actor.console(owner))
    assert "could not be sent; nothing was saved" in caught.value.message_dict["email"][0]
    assert not Invitation.objects.exists()


def test_revoke_closes_an_open_invitation_once(acme, owner, admin):
    invitation = invitation_create(
        tenant=acme, email="a@example.com", role="member", actor=Actor.console(owner)
    )
    invitation_revoke(invitation=invitation, actor=Actor.console(admin))
    assert Invitation.objects.get().state == "revoked"
    with pytest.raises(ValidationError, match="already revoked"):
        invitation_revoke(invitation=invitation, actor=Actor.console(owner))
    with pytest.raises(PermissionDenied):
        invitation_revoke(invitation=invitation, actor=Actor.console(member(acme, "member", "m")))

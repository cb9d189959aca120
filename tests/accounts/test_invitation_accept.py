"""accounts.members.invitation_accept: a new account with a password, or the signed-in user with the
invited address; one use (also when two accepts race); expired, revoked, used or unknown links get a
clear sentence and change nothing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.members import invitation_accept, invitation_create, invitation_revoke
from accounts.models import Invitation, Membership
from accounts.services import tenant_create
from tests.support.invitations import invitation_link

User = get_user_model()
PASSWORD = "a-long-enough-passphrase-7"


@pytest.fixture
def acme(db):
    return tenant_create(name="Acme", slug="acme")


def invite(tenant, email="new@example.com", role="admin"):
    invitation_create(tenant=tenant, email=email, role=role)
    return invitation_link()[1]


def test_it_creates_the_account_and_the_membership(acme):
    token = invite(acme, "New@Example.com")
    membership = invitation_accept(token=token, password=PASSWORD, name="  Nina   New ")
    user = membership.user
    assert (membership.tenant, membership.role) == (acme, "admin")
    assert (user.email, user.first_name) == ("new@example.com", "Nina New")
    assert user.check_password(PASSWORD)
    invitation = Invitation.objects.get()
    assert invitation.state == "accepted" and invitation.accepted_by == user


def test_it_attaches_the_signed_in_user_with_that_address(acme):
    globex = tenant_create(name="Globex", slug="globex")
    user = User.objects.create_user("gina", "Gina@globex.test", "pw-gina-12345")
    Membership.objects.create(tenant=globex, user=user, role="owner")
    token = invite(acme, "gina@globex.test", role="viewer")
    membership = invitation_accept(token=token, user=user)
    assert (membership.user, membership.role) == (user, "viewer")
    assert User.objects.count() == 1 and user.memberships.count() == 2


def test_it_refuses_another_signed_in_user(acme):
    token = invite(acme, "gina@globex.test")
    eve = User.objects.create_user("eve", "eve@globex.test", "pw-eve-123456")
    with pytest.raises(ValidationError) as caught:
        invitation_accept(token=token, user=eve)
    assert caught.value.code == "wrong_account"
    assert (
        "This invitation is for gina@globex.test, and you are signed in as eve@globex.test"
        in caught.value.message
    )
    assert Invitation.objects.get().state == "pending" and not Membership.objects.exists()


def test_an_existing_account_must_sign_in_first(acme):
    User.objects.create_user("gina", "gina@globex.test", "pw-gina-12345")
    token = invite(acme, "gina@globex.test")
    with pytest.raises(ValidationError) as caught:
        invitation_accept(token=token, password=PASSWORD)
    assert caught.value.code == "sign_in"
    assert Invitation.objects.get().state == "pending"


def test_it_is_single_use(acme):
    token = invite(acme)
    invitation_accept(token=token, password=PASSWORD)
    with pytest.raises(ValidationError) as caught:
        invitation_accept(token=token, password=PASSWORD)
    assert (caught.value.code, caught.value.message) == ("used", "This invitation has already been used.")
    assert Membership.objects.count() == 1


def test_expired_and_revoked_and_unknown_links_are_refused(acme):
    expired = invite(acme, "late@example.com")
    Invitation.objects.filter(email="late@example.com").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    revoked = invite(acme, "gone@example.com")
    invitation_revoke(invitation=Invitation.objects.get(email="gone@example.com"))
    for token, code in [
        (expired, "expired"),
        (revoked, "revoked"),
        ("not-a-real-token", "invalid"),
        ("", "invalid"),
        ("../../etc/passwd", "invalid"),
        ("x" * 5000, "invalid"),
    ]:
        with pytest.raises(ValidationError) as caught:
            invitation_accept(token=token, password=PASSWORD)
        assert caught.value.code == code
    assert not Membership.objects.exists() and User.objects.count() == 0


@pytest.mark.parametrize(
    ("password", "name", "fields"),
    [
        ("", "Nina", {"password"}),
        ("short", "Nina", {"password"}),
        ("password123", "Nina", {"password"}),
        (PASSWORD, "x" * 151, {"name"}),
        (PASSWORD, "Ni\x00na", {"name"}),
        ("", "x" * 151, {"password", "name"}),
    ],
)
def test_bad_password_or_name_changes_nothing(acme, password, name, fields):
    token = invite(acme)
    with pytest.raises(ValidationError) as caught:
        invitation_accept(token=token, password=password, name=name)
    assert set(caught.value.message_dict) == fields
    assert Invitation.objects.get().state == "pending" and User.objects.count() == 0


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=200))
def test_any_name_is_stored_tidied_or_refused_cleanly(acme, name):
    User.objects.all().delete()
    Invitation.objects.all().delete()
    token = invite(acme)
    try:
        membership = invitation_accept(token=token, password=PASSWORD, name=name)
    except ValidationError as exc:
        assert set(exc.message_dict) == {"name"}
        assert User.objects.count() == 0 and Invitation.objects.get().state == "pending"
    else:
        stored = User.objects.get(pk=membership.user_id).first_name
        assert stored == " ".join(name.split()) and len(stored) <= 150 and stored.isprintable()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("signed_in", [False, True])
def test_two_accepts_at_once_make_one_membership(signed_in):
    acme = tenant_create(name="Acme", slug="acme")
    user = User.objects.create_user("nina", "new@example.com", "pw-nina-12345") if signed_in else None
    token = invite(acme)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def accept() -> None:
        try:
            barrier.wait()
            invitation_accept(token=token, user=user, password=PASSWORD)
            outcomes.append("ok")
        except ValidationError as exc:
            outcomes.append(str(exc.code))
        finally:
            connection.close()

    threads = [threading.Thread(target=accept) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok", "used", "used", "used"]
    assert Membership.objects.count() == 1 and User.objects.count() == 1
    assert Invitation.objects.get().state == "accepted"

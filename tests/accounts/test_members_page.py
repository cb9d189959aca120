"""/t/<slug>/members/ and its actions, for every visitor (owner, admin, member, viewer, a member of
another tenant, anonymous): each sees and may do what accounts/permissions.py says; another tenant's
member or invitation id is a 404; refused input shows inline errors and writes nothing; every change
leaves one audit row."""

from __future__ import annotations

import pytest
from django.core import mail
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.audit import Actor
from accounts.members import invitation_create
from accounts.models import AuditEntry, Invitation, Membership
from tests.support.console import EVERY_VISITOR

pytestmark = pytest.mark.django_db

PAGE = "/t/acme/members/"
INVITE = "/t/acme/members/invite/"


def audited():
    """Audit rows other than the fixtures' own (their tenants and memberships)."""
    return AuditEntry.objects.exclude(action__in=("tenant.create", "member.add"))


def role_url(member, action="role"):
    return f"/t/acme/members/{member.pk}/{action}/"


def membership(roles, role):
    return Membership.objects.get(tenant=roles.tenant, user=roles.user(role))


# --- who sees the page -----------------------------------------------------------------------------

EXPECTED_PAGE = {"owner": 200, "admin": 200, "member": 200, "viewer": 403, "outsider": 404}


@pytest.mark.parametrize("visitor", EVERY_VISITOR)
def test_it_checks_access_to_the_page(console_client, visitor):
    response = console_client(visitor).get(PAGE)
    if visitor == "anonymous":
        assert response.status_code == 302 and response["Location"] == f"/login/?next={PAGE}"
        return
    assert response.status_code == EXPECTED_PAGE[visitor]
    if response.status_code == 200:
        body = response.content.decode()
        for role in ("owner", "admin", "member", "viewer"):
            assert f"{role}@acme.test" in body
        assert "owner@globex.test" not in body


def test_it_shows_forms_only_to_who_may_use_them(console_client, roles):
    invitation_create(
        tenant=roles.tenant, email="new@example.com", role="viewer", actor=Actor.console(roles.owner)
    )
    owner = console_client("owner").get(PAGE).content.decode()
    admin = console_client("admin").get(PAGE).content.decode()
    member = console_client("member").get(PAGE).content.decode()
    assert "Send invitation" in owner and "Send invitation" in admin and "Send invitation" not in member
    assert "new@example.com" in member and "Revoke" not in member and 'name="role"' not in member
    # An admin may not hand out the owner role, nor change an owner's.
    assert '<option value="owner"' in owner and '<option value="owner"' not in admin
    owner_row = membership(roles, "owner").pk
    assert f'action="/t/acme/members/{owner_row}/role/"' in owner
    assert f'action="/t/acme/members/{owner_row}/role/"' not in admin
    assert f'action="/t/acme/members/{owner_row}/remove/"' in owner
    assert f'action="/t/acme/members/{owner_row}/remove/"' not in admin


# --- invite ----------------------------------------------------------------------------------------

EXPECTED_INVITE = {
    "owner": 302,
    "admin": 302,
    "member": 403,
    "viewer": 403,
    "outsider": 404,
    "anonymous": 302,
}


@pytest.mark.parametrize("visitor", EVERY_VISITOR)
def test_it_checks_access_to_invite(console_client, roles, visitor):
    response = console_client(visitor).post(INVITE, {"email": "new@example.com", "role": "member"})
    assert response.status_code == EXPECTED_INVITE[visitor]
    sent = visitor in ("owner", "admin")
    assert Invitation.objects.filter(email="new@example.com").exists() is sent
    assert len(mail.outbox) == (1 if sent else 0)
    if sent:
        assert response["Location"] == PAGE
        entry = AuditEntry.objects.get(action="invitation.create")
        assert (entry.tenant, entry.actor, entry.object_type) == (
            roles.tenant,
            f"console:{visitor}@acme.test",
            "accounts.invitation",
        )
        assert entry.after["email"] == "new@example.com" and entry.after["role"] == "member"
    elif visitor == "anonymous":
        assert response["Location"].startswith("/login/")


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"email": "not an address", "role": "member"}, "email", "Enter a valid email address."),
        ({"email": "a\x00b@example.com", "role": "member"}, "email", ""),
        ({"email": "x" * 300 + "@example.com", "role": "member"}, "email", ""),
        ({"email": "new@example.com", "role": "superuser"}, "role", "Select a valid choice."),
        ({"email": "admin@acme.test", "role": "member"}, "email", "already a member of Acme"),
    ],
)
def test_bad_invitations_are_refused_inline(console_client, data, field, message):
    response = console_client("owner").post(INVITE, data)
    assert response.status_code == 400
    assert f'id="id_{field}_error"' in response.content.decode()
    assert message in response.content.decode()
    assert not Invitation.objects.exists() and not mail.outbox and not audited().exists()


def test_an_admin_cannot_invite_an_owner(console_client):
    response = console_client("admin").post(INVITE, {"email": "boss@example.com", "role": "owner"})
    assert response.status_code == 400 and not Invitation.objects.exists()


def test_it_needs_the_csrf_token(roles):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(roles.owner)
    response = client.post(INVITE, {"email": "new@example.com", "role": "member"})
    assert response.status_code == 403 and not Invitation.objects.exists()


# --- revoke an invitation ----------------------------------------------------------------------------

EXPECTED_REVOKE = {
    "owner": 302,
    "admin": 302,
    "member": 403,
    "viewer": 403,
    "outsider": 404,
    "anonymous": 302,
}


@pytest.mark.parametrize("visitor", EVERY_VISITOR)
def test_it_checks_access_to_revoke(console_client, roles, visitor):
    invitation = invitation_create(tenant=roles.tenant, email="new@example.com", role="member")
    response = console_client(visitor).post(f"/t/acme/invitations/{invitation.pk}/revoke/")
    assert response.status_code == EXPECTED_REVOKE[visitor]
    revoked = visitor in ("owner", "admin")
    assert (Invitation.objects.get().state == "revoked") is revoked
    assert AuditEntry.objects.filter(action="invitation.revoke").count() == (1 if revoked else 0)


def test_revoking_a_closed_invitation_says_so(console_client, roles):
    invitation = invitation_create(tenant=roles.tenant, email="new@example.com", role="member")
    client = console_client("owner")
    assert client.post(f"/t/acme/invitations/{invitation.pk}/revoke/").status_code == 302
    response = client.post(f"/t/acme/invitations/{invitation.pk}/revoke/")
    assert response.status_code == 400 and "This invitation is already revoked." in response.content.decode()
    assert AuditEntry.objects.filter(action="invitation.revoke").count() == 1


def test_another_tenants_invitation_is_a_404(console_client, roles):
    theirs = invitation_create(tenant=roles.other, email="new@example.com", role="member")
    for client in (console_client("owner"), console_client("admin")):
        assert client.post(f"/t/acme/invitations/{theirs.pk}/revoke/").status_code == 404
        assert client.post("/t/acme/invitations/99999999999999999999/revoke/").status_code == 404
    # ...and through their own tenant's URL, ours is not reachable to the outsider either.
    ours = invitation_create(tenant=roles.tenant, email="other@example.com", role="member")
    assert console_client("outsider").post(f"/t/globex/invitations/{ours.pk}/revoke/").status_code == 404
    assert Invitation.objects.filter(revoked_at__isnull=False).count() == 0


# --- change a role ------------------------------------------------------------------------------------

EXPECTED_ROLE = {"owner": 302, "admin": 302, "member": 403, "viewer": 403, "outsider": 404, "anonymous": 302}


@pytest.mark.parametrize("visitor", EVERY_VISITOR)
def test_it_checks_access_to_change_a_role(console_client, roles, visitor):
    target = membership(roles, "viewer")
    response = console_client(visitor).post(role_url(target), {"role": "member"})
    assert response.status_code == EXPECTED_ROLE[visitor]
    changed = visitor in ("owner", "admin")
    assert Membership.objects.get(pk=target.pk).role == ("member" if changed else "viewer")
    entries = AuditEntry.objects.filter(action="member.role")
    assert entries.count() == (1 if changed else 0)
    if changed:
        who = "viewer@acme.test"
        assert (entries[0].before, entries[0].after) == (
            {"user": who, "role": "viewer"},
            {"user": who, "role": "member"},
        )


def test_the_last_owner_is_refused_inline(console_client, roles):
    owner = membership(roles, "owner")
    response = console_client("owner").post(role_url(owner), {"role": "viewer"})
    assert response.status_code == 400
    assert "Acme needs at least one owner" in response.content.decode()
    assert Membership.objects.get(pk=owner.pk).role == "owner" and not audited().exists()


def test_an_admin_cannot_touch_an_owner_or_make_one(console_client, roles):
    admin = console_client("admin")
    assert admin.post(role_url(membership(roles, "owner")), {"role": "viewer"}).status_code == 400
    assert admin.post(role_url(membership(roles, "viewer")), {"role": "owner"}).status_code == 400
    assert admin.post(role_url(membership(roles, "owner"), "remove")).status_code == 400
    assert Membership.objects.filter(tenant=roles.tenant, role="owner").count() == 1
    assert not audited().exists()


@pytest.mark.parametrize("role", ["", "superuser", "x" * 10_000, "owner\x00"])
def test_a_bad_role_is_refused_inline(console_client, roles, role):
    target = membership(roles, "viewer")
    response = console_client("owner").post(role_url(target), {"role": role})
    assert response.status_code == 400 and Membership.objects.get(pk=target.pk).role == "viewer"


# --- remove --------------------------------------------------------------------------------------------

EXPECTED_REMOVE = {
    "owner": 302,
    "admin": 302,
    "member": 403,
    "viewer": 403,
    "outsider": 404,
    "anonymous": 302,
}


@pytest.mark.parametrize("visitor", EVERY_VISITOR)
def test_it_checks_access_to_remove(console_client, roles, visitor):
    target = membership(roles, "viewer")
    response = console_client(visitor).post(role_url(target, "remove"))
    assert response.status_code == EXPECTED_REMOVE[visitor]
    removed = visitor in ("owner", "admin")
    assert Membership.objects.filter(pk=target.pk).exists() is not removed
    entries = AuditEntry.objects.filter(action="member.remove")
    assert entries.count() == (1 if removed else 0)
    if removed:
        assert entries[0].before["role"] == "viewer" and entries[0].after is None


def test_another_tenants_member_is_a_404(console_client, roles):
    theirs = Membership.objects.get(user=roles.outsider)
    for action, data in (("role", {"role": "viewer"}), ("remove", {})):
        response = console_client("owner").post(f"/t/acme/members/{theirs.pk}/{action}/", data)
        assert response.status_code == 404
    assert Membership.objects.get(pk=theirs.pk).role == "owner"


def test_get_on_an_action_is_refused(console_client, roles):
    assert console_client("owner").get(INVITE).status_code == 405
    assert console_client("owner").get(role_url(membership(roles, "viewer"), "remove")).status_code == 405


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(email=st.one_of(st.emails(), st.text(max_size=300)))
def test_any_typed_address_is_invited_or_refused_inline(console_client, roles, email):
    Invitation.objects.all().delete()
    mail.outbox.clear()
    response = console_client("owner").post(INVITE, {"email": email, "role": "member"})
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        stored = Invitation.objects.get()
        assert stored.email == email.strip().lower() and len(mail.outbox) == 1
    else:
        assert 'id="id_email_error"' in response.content.decode()
        assert not Invitation.objects.exists() and not mail.outbox

"""accounts.members.member_role_change and member_remove: owners and admins manage members; only an
owner grants, changes or removes the owner role; a tenant always keeps one owner, also when two owners
demote each other at the same moment."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from accounts.audit import Actor
from accounts.members import member_remove, member_role_change
from accounts.models import Membership
from accounts.services import tenant_create

User = get_user_model()


def join(tenant, role, name):
    user = User.objects.create_user(name, f"{name}@acme.test", "pw-long-enough-1")
    return Membership.objects.create(tenant=tenant, user=user, role=role)


@pytest.fixture
def acme(db):
    return tenant_create(name="Acme", slug="acme")


def role_of(membership):
    return Membership.objects.get(pk=membership.pk).role


def test_an_owner_changes_any_role(acme):
    owner, other = join(acme, "owner", "olive"), join(acme, "member", "mo")
    member_role_change(membership=other, role="owner", actor=Actor.console(owner.user))
    assert role_of(other) == "owner"
    member_role_change(
        membership=owner, role="viewer", actor=Actor.console(owner.user)
    )  # another owner remains
    assert role_of(owner) == "viewer"


def test_the_last_owner_cannot_be_demoted_or_removed(acme):
    owner = join(acme, "owner", "olive")
    with pytest.raises(ValidationError) as caught:
        member_role_change(membership=owner, role="admin", actor=Actor.console(owner.user))
    assert caught.value.message_dict == {
        "role": ["Acme needs at least one owner: make someone else an owner first."]
    }
    with pytest.raises(ValidationError, match="needs at least one owner"):
        member_remove(membership=owner, actor=Actor.console(owner.user))
    assert role_of(owner) == "owner"


def test_an_admin_manages_members_but_not_owners(acme):
    owner, admin, other = (
        join(acme, "owner", "olive"),
        join(acme, "admin", "adam"),
        join(acme, "viewer", "vi"),
    )
    member_role_change(membership=other, role="member", actor=Actor.console(admin.user))
    assert role_of(other) == "member"
    for target, role in [(other, "owner"), (owner, "admin")]:
        with pytest.raises(ValidationError) as caught:
            member_role_change(membership=target, role=role, actor=Actor.console(admin.user))
        assert "Only an owner can" in caught.value.message_dict["role"][0]
    with pytest.raises(ValidationError, match="Only an owner can remove an owner"):
        member_remove(membership=owner, actor=Actor.console(admin.user))
    member_remove(membership=other, actor=Actor.console(admin.user))
    assert (role_of(owner), Membership.objects.filter(pk=other.pk).exists()) == ("owner", False)
    assert User.objects.filter(pk=other.user_id).exists()  # the account stays


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_change_nothing(acme, role):
    actor, other = join(acme, role, "me"), join(acme, "viewer", "vi")
    with pytest.raises(PermissionDenied):
        member_role_change(membership=other, role="admin", actor=Actor.console(actor.user))
    with pytest.raises(PermissionDenied):
        member_remove(membership=other, actor=Actor.console(actor.user))
    assert role_of(other) == "viewer"


def test_an_owner_of_another_tenant_changes_nothing(acme):
    globex = tenant_create(name="Globex", slug="globex")
    eve, other = join(globex, "owner", "eve"), join(acme, "viewer", "vi")
    with pytest.raises(PermissionDenied):
        member_role_change(membership=other, role="admin", actor=Actor.console(eve.user))
    with pytest.raises(PermissionDenied):
        member_remove(membership=other, actor=Actor.console(eve.user))


def test_a_role_that_does_not_exist_is_refused(acme):
    owner, other = join(acme, "owner", "olive"), join(acme, "viewer", "vi")
    for role in ["", "superuser", "OWNER", "x" * 1000]:
        with pytest.raises(ValidationError) as caught:
            member_role_change(membership=other, role=role, actor=Actor.console(owner.user))
        assert set(caught.value.message_dict) == {"role"}
    assert role_of(other) == "viewer"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["demote", "remove"])
def test_two_owners_leaving_at_once_leave_one_owner(how):
    acme = tenant_create(name="Acme", slug="acme")
    first, second = join(acme, "owner", "olive"), join(acme, "owner", "otto")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def leave(membership) -> None:
        try:
            barrier.wait()
            if how == "demote":
                member_role_change(membership=membership, role="member", actor=Actor.console(membership.user))
            else:
                member_remove(membership=membership, actor=Actor.console(membership.user))
            outcomes.append("ok")
        except ValidationError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=leave, args=(m,)) for m in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok", "refused"]
    assert Membership.objects.filter(tenant=acme, role="owner").count() == 1

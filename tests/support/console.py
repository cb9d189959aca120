"""The console's shared test base: a tenant with one user per role, and an outsider who owns a
second tenant (as healthchecks' hc/test.py has an owner, a team member and an outsider).

Fixtures (tests/conftest.py): `roles` (a `Roles`), `console_client(role)` (a signed-in Django test
client for "owner", "admin", "member", "viewer", "outsider", or an anonymous one for "anonymous").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROLES = ("owner", "admin", "member", "viewer")
EVERY_VISITOR = (*ROLES, "outsider", "anonymous")
PASSWORD = "console-pw-7d1e4b"  # every role user's password (they are test users)


@dataclass
class Roles:
    tenant: Any  # "acme": owner, admin, member, viewer
    other: Any  # "globex": outsider is its owner
    owner: Any
    admin: Any
    member: Any
    viewer: Any
    outsider: Any
    password: str = PASSWORD

    def user(self, role: str) -> Any:
        """The user of a role name (None for "anonymous")."""
        return None if role == "anonymous" else getattr(self, role)


def make_roles(*, slug: str = "acme", other_slug: str = "globex", timezone_name: str = "UTC") -> Roles:
    from django.contrib.auth import get_user_model

    from accounts.models import Membership, Plan
    from accounts.services import membership_save, tenant_create

    User = get_user_model()
    plan = Plan.objects.filter(name="pro").first() or Plan.objects.create(name="console-test")
    tenant = tenant_create(name=slug.capitalize(), slug=slug, plan=plan, timezone_name=timezone_name)
    other = tenant_create(name=other_slug.capitalize(), slug=other_slug, plan=plan)
    users = {}
    for role in ROLES:
        users[role] = User.objects.create_user(f"{role}-{slug}", f"{role}@{slug}.test", PASSWORD)
        membership_save(membership=Membership(tenant=tenant, user=users[role], role=role))
    outsider = User.objects.create_user(f"owner-{other_slug}", f"owner@{other_slug}.test", PASSWORD)
    membership_save(membership=Membership(tenant=other, user=outsider, role="owner"))
    return Roles(tenant=tenant, other=other, outsider=outsider, **users)

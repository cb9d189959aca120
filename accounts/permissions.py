"""The one permission table of the console: which roles may do each action in a tenant.

Every tenant page names its action (`@tenant_page("keys.issue")`, accounts/access.py); the README's
permission table mirrors this dict (tests/accounts/test_permissions.py holds them equal). A role
missing from an action's set gets 403 for it; someone who is not a member at all gets 404.
"""

from __future__ import annotations

from accounts.models import Membership

Role = Membership.Role
OWNER, ADMIN, MEMBER, VIEWER = Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER

EVERYONE = frozenset({OWNER, ADMIN, MEMBER, VIEWER})
MEMBERS = frozenset({OWNER, ADMIN, MEMBER})
MANAGERS = frozenset({OWNER, ADMIN})
OWNERS = frozenset({OWNER})

PERMISSIONS: dict[str, frozenset[str]] = {
    # billing: overview, usage, budgets, credits
    "overview.view": EVERYONE,
    "usage.view": EVERYONE,
    "usage.export": MEMBERS,
    "budgets.view": EVERYONE,
    "budgets.edit": MANAGERS,
    "credits.view": EVERYONE,
    "credits.redeem": MANAGERS,
    # accounts: keys, members, signing keys, audit
    "keys.view": EVERYONE,
    "keys.issue": MANAGERS,
    "keys.rotate": MANAGERS,
    "keys.revoke": MANAGERS,
    "members.view": MEMBERS,
    "members.invite": MANAGERS,
    "members.remove": MANAGERS,
    "members.role": MANAGERS,  # an admin changes roles, but only an owner grants or takes the owner role
    "signing_keys.view": MANAGERS,
    "signing_keys.edit": MANAGERS,
    "audit.view": MANAGERS,
}


# The operator role: superusers, and staff users in this group (granted in the admin, by
# `operator_grant`-style scripts, or by single sign-on claims). Operators reach /ops/ and the
# operator endpoints of the management API; everyone else gets 404 there.
OPERATOR_GROUP = "operators"


def is_operator(user: object) -> bool:
    """Is `user` an operator? Superusers always; staff only in the operators group; nobody else."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if getattr(user, "is_superuser", False):
        return True
    if not getattr(user, "is_staff", False):
        return False
    cached = getattr(user, "_tollhouse_is_operator", None)
    if cached is None:
        cached = user.groups.filter(name=OPERATOR_GROUP).exists()  # type: ignore[attr-defined]
        user._tollhouse_is_operator = cached  # type: ignore[attr-defined]
    return bool(cached)


def allowed(role: str, action: str) -> bool:
    """May `role` do `action`? An action not in the table is a programming error, not a "no"."""
    return role in PERMISSIONS[action]

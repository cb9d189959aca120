"""The ways into the operator console (/ops/): a superuser, a staff user in the operators group, a
staff user not in it, a tenant owner, a tenant viewer, and nobody signed in. Only the first two are
operators; everyone else gets the same 404 as for an unknown page.

Fixtures (import them into a test module): `operators` (the three staff users),
`ops_client(way)`: a Django test client signed in by that way in (uses `roles` for the owner and
the viewer of "acme"), and `fast_passwords` (autouse it: these modules make many users, and the
production hasher's cost is not what they test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

WAYS_IN = ("superuser", "operator", "staff", "owner", "viewer", "anonymous")
OPERATORS = ("superuser", "operator")
NOT_OPERATORS = tuple(way for way in WAYS_IN if way not in OPERATORS)
PASSWORD = "ops-pw-5c2e9a"


@dataclass
class Operators:
    superuser: Any
    operator: Any  # staff, in the operators group
    staff: Any  # staff, not in the group


def make_operators() -> Operators:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from accounts.permissions import OPERATOR_GROUP

    User = get_user_model()
    superuser = User.objects.create_superuser("root", "root@ops.test", PASSWORD)
    operator = User.objects.create_user("oona", "oona@ops.test", PASSWORD, is_staff=True)
    operator.groups.add(Group.objects.get_or_create(name=OPERATOR_GROUP)[0])
    staff = User.objects.create_user("stan", "stan@ops.test", PASSWORD, is_staff=True)
    return Operators(superuser=superuser, operator=operator, staff=staff)


@pytest.fixture
def fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def operators(db: None) -> Operators:
    return make_operators()


@pytest.fixture
def ops_client(roles: Any, operators: Operators) -> Callable[[str], Any]:
    from django.test import Client

    def make(way: str) -> Client:
        client = Client()
        user = {
            "superuser": operators.superuser,
            "operator": operators.operator,
            "staff": operators.staff,
            "owner": roles.owner,
            "viewer": roles.viewer,
            "anonymous": None,
        }[way]
        if user is not None:
            client.force_login(user)
        return client

    return make


def make_operator_users() -> dict[str, Any]:
    """The three staff users by way in (for modules that index them by name)."""
    made = make_operators()
    return {"superuser": made.superuser, "operator": made.operator, "staff": made.staff}


def operator_clients(roles: Any) -> dict[str, Any]:
    """A signed-in Django test client for every way in, by name."""
    from django.test import Client

    users = {**make_operator_users(), "owner": roles.owner, "viewer": roles.viewer}
    clients = {"anonymous": Client()}
    for way, user in users.items():
        client = Client()
        client.force_login(user)
        clients[way] = client
    return clients

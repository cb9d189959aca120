"""Every way into the operator console (/ops/), for access tests: a superuser and a staff user in
the operators group get in; a staff user outside it, a tenant's owner and viewer, and an anonymous
visitor get the same 404 as an unknown page.

`operator_clients(roles)` returns a signed-in Django test client per way in (tests/conftest.py's
`roles` fixture supplies the tenant users)."""

from __future__ import annotations

from typing import Any

OPERATORS = ("superuser", "operator")
NOT_OPERATORS = ("staff", "owner", "viewer", "anonymous")
WAYS_IN = (*OPERATORS, *NOT_OPERATORS)
PASSWORD = "ops-pw-5c2a9e"


def make_operator_users() -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from accounts.permissions import OPERATOR_GROUP

    User = get_user_model()
    superuser = User.objects.create_superuser("root-op", "root@ops.test", PASSWORD)
    operator = User.objects.create_user("staff-op", "staff-op@ops.test", PASSWORD, is_staff=True)
    operator.groups.add(Group.objects.get_or_create(name=OPERATOR_GROUP)[0])
    staff = User.objects.create_user("staff-plain", "staff@ops.test", PASSWORD, is_staff=True)
    return {"superuser": superuser, "operator": operator, "staff": staff}


def operator_clients(roles: Any) -> dict[str, Any]:
    from django.test import Client

    users = {**make_operator_users(), "owner": roles.owner, "viewer": roles.viewer}
    clients = {"anonymous": Client()}
    for way, user in users.items():
        client = Client()
        client.force_login(user)
        clients[way] = client
    return clients

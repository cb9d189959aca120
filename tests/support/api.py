"""The management API in tests: personal access tokens per role, and a client that sends one.

`api_client(roles)("owner")` is a Django test client whose every request carries the owner's token
(`Authorization: Bearer thp_...`); "operator" is a superuser with no tenant, "anonymous" sends none,
"expired" and "revoked" send the owner's expired and revoked tokens.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.test import Client
from django.utils import timezone

API_VISITORS = (
    "owner",
    "admin",
    "member",
    "viewer",
    "outsider",
    "operator",
    "anonymous",
    "expired",
    "revoked",
)


def token_for(user: Any, *, days: int = 30, name: str = "test") -> str:
    """A new token of `user` (through the service, as the console makes them)."""
    from accounts.services import personal_token_create

    return personal_token_create(user=user, name=name, expires_at=timezone.now() + timedelta(days=days)).raw


def expired_token_for(user: Any) -> str:
    from accounts.models import PersonalAccessToken

    raw = token_for(user, name="expired")
    PersonalAccessToken.objects.filter(prefix=raw[4:16]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    return raw


def revoked_token_for(user: Any) -> str:
    from accounts.models import PersonalAccessToken
    from accounts.services import personal_token_revoke

    raw = token_for(user, name="revoked")
    personal_token_revoke(token=PersonalAccessToken.objects.get(prefix=raw[4:16]))
    return raw


def operator_user() -> Any:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    return User.objects.filter(username="api-operator").first() or User.objects.create_superuser(
        "api-operator", "operator@ops.test", "pw-operator-api-1"
    )


def raw_token(roles: Any, visitor: str) -> str | None:
    if visitor == "anonymous":
        return None
    if visitor == "operator":
        return token_for(operator_user())
    if visitor == "expired":
        return expired_token_for(roles.owner)
    if visitor == "revoked":
        return revoked_token_for(roles.owner)
    return token_for(roles.user(visitor))


def client_with(raw: str | None) -> Client:
    headers = {"Authorization": f"Bearer {raw}"} if raw else {}
    return Client(headers=headers, enforce_csrf_checks=True)

"""The audit log: who changed what in a tenant, with the values before and after.

Every service that changes keys, members, invitations, roles, limits, budgets, credits or signing
keys takes an `actor` keyword (an `Actor`) and calls `audit_record` inside its own transaction, so
the row exists if and only if the change does, whether it came from the console, the admin, a
management command or the API. Secrets never reach it: callers pass field snapshots
(`audit_snapshot`) of the fields worth showing, never digests or raw keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction

from accounts.models import AuditEntry, Tenant


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a signed-in user (through the console, the admin or the API), a management
    command, or the system itself. `label` is what the audit log shows, and outlives the user."""

    label: str
    user: Any = None

    @classmethod
    def console(cls, user: Any) -> Actor:
        return cls(label=f"console:{_user_label(user)}", user=user)

    @classmethod
    def admin(cls, user: Any) -> Actor:
        return cls(label=f"admin:{_user_label(user)}", user=user)

    @classmethod
    def api(cls, user: Any, token: Any = None) -> Actor:
        """A change through the management API, by the token's user (and which token: its prefix)."""
        via = f" (token thp_{token.prefix}…)" if token is not None else ""
        return cls(label=f"api:{_user_label(user)}{via}", user=user)

    @classmethod
    def sso(cls, user: Any) -> Actor:
        """Single sign-on syncing `user`'s memberships from the identity provider's claims: it acts
        with the provider's authority (as a command does), not with the user's own role, so no
        `user` is set for the rules to check; the label says whose sign-in it was."""
        return cls(label=f"sso:{_user_label(user)}")

    @classmethod
    def command(cls, name: str) -> Actor:
        return cls(label=f"command:{name}")


SYSTEM = Actor(label="system")


def _user_label(user: Any) -> str:
    return str(getattr(user, "email", "") or getattr(user, "username", "") or f"user#{user.pk}")[:150]


def _json(value: Any) -> Any:
    """JSON the database can hold: Decimals and datetimes as exact text (DjangoJSONEncoder)."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def audit_snapshot(obj: models.Model | None, fields: Iterable[str]) -> dict[str, Any] | None:
    """The named fields of `obj` as JSON-safe values (a foreign key as its id), or None for no object."""
    if obj is None:
        return None
    values: dict[str, Any] = {}
    for name in fields:
        field = obj._meta.get_field(name)
        value = getattr(obj, getattr(field, "attname", name))
        if isinstance(field, models.DecimalField) and isinstance(value, Decimal) and value.is_finite():
            # As the column holds it, whether or not the instance was read back: 12.5 -> 12.500000000.
            value = format(value.quantize(Decimal(1).scaleb(-(field.decimal_places or 0))), "f")
        values[name] = value
    return _json(values)  # type: ignore[no-any-return]


def audit_record(
    *,
    tenant: Tenant | None,
    actor: Actor | None,
    action: str,
    target: models.Model,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    object_repr: str | None = None,
) -> AuditEntry:
    """Write one audit row in the caller's transaction (it must run inside one: the row and the
    change commit or roll back together). `actor` None is recorded as the system. `tenant` None is
    a gateway-wide change made by an operator (a provider, route, deployment, price, plan, a batch of
    redemption codes); `object_repr` overrides how the object is named (an operator's visit names
    the page visited)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    actor = actor or SYSTEM
    user = actor.user if getattr(actor.user, "pk", None) is not None else None
    return AuditEntry.objects.create(
        tenant=tenant,
        actor_user=user,
        actor=actor.label[:200],
        action=action[:64],
        object_type=target._meta.label_lower[:64],
        object_id=str(target.pk or "")[:64],
        object_repr=(str(target) if object_repr is None else object_repr)[:200],
        before=_json(before),
        after=_json(after),
    )

"""What an operator's command may change, read back as plain values: a refused command must leave
`db_snapshot()` exactly as it was."""

from __future__ import annotations

from typing import Any


def db_snapshot() -> dict[str, list[tuple[Any, ...]]]:
    from accounts.models import ApiKey, Plan, Tenant
    from billing.models import Budget, CreditEntry

    def rows(model: Any) -> list[tuple[Any, ...]]:
        names = [field.attname for field in model._meta.concrete_fields]
        return list(model.objects.order_by("pk").values_list(*names))

    return {model.__name__: rows(model) for model in (Plan, Tenant, ApiKey, Budget, CreditEntry)}

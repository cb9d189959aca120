"""What an operator's command may change, read back as plain values: a refused command must leave
`db_snapshot()` exactly as it was."""

from __future__ import annotations

from typing import Any

# Every table of these apps (tenants, keys, budgets, credits, providers, routes, prices, ...): in a
# test they hold a few rows each.
APPS = ("accounts", "billing", "gateway")


def db_snapshot() -> dict[str, list[tuple[Any, ...]]]:
    from django.apps import apps

    def rows(model: Any) -> list[tuple[Any, ...]]:
        names = [field.attname for field in model._meta.concrete_fields]
        return list(model.objects.order_by("pk").values_list(*names))

    return {
        model._meta.label: rows(model)
        for app in APPS
        for model in apps.get_app_config(app).get_models()
        if not model._meta.proxy
    }

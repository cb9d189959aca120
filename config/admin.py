"""Admin plumbing shared by the apps' admins (config imports no app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.forms import BaseInlineFormSet
from django.http import HttpRequest


def save_inline_through(
    formset: BaseInlineFormSet,
    save: Callable[[Any], object],
    delete: Callable[[Any], object] | None = None,
) -> None:
    """Save an admin inline formset through a service (`save(obj)` validates and saves one row), so
    an inline cannot store what the service would refuse. Deletions go through `delete(obj)` when
    given (a service that records them), else are plain deletes: the post_delete broadcast covers them."""
    objects = formset.save(commit=False)
    for obj in formset.deleted_objects:
        if delete is not None:
            delete(obj)
        else:
            obj.delete()
    for obj in objects:
        save(obj)
    formset.save_m2m()


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by services and the pipeline only: the admin reads them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

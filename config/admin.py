"""Admin plumbing shared by the apps' admins (config imports no app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.forms import BaseInlineFormSet


def save_inline_through(formset: BaseInlineFormSet, save: Callable[[Any], object]) -> None:
    """Save an admin inline formset through a service (`save(obj)` validates and saves one row), so
    an inline cannot store what the service would refuse. Deletions are plain deletes: the
    post_delete broadcast covers them."""
    objects = formset.save(commit=False)
    for obj in formset.deleted_objects:
        obj.delete()
    for obj in objects:
        save(obj)
    formset.save_m2m()

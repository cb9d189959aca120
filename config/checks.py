"""System checks: configuration problems are reported at start, each as one clear sentence."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.compatibility, deploy=False)
def check_environment(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    messages: list[Error | Warning] = [
        Error(text, id="tollhouse.E001") for text in settings.TOLLHOUSE_CONFIG_ERRORS
    ]
    messages += [Warning(text, id="tollhouse.W001") for text in settings.TOLLHOUSE_CONFIG_WARNINGS]
    return messages


def raise_on_config_errors() -> None:
    """Refuse to serve with a broken configuration (uvicorn does not run system checks itself)."""
    from django.core.exceptions import ImproperlyConfigured

    if settings.TOLLHOUSE_CONFIG_ERRORS:
        raise ImproperlyConfigured(" ".join(settings.TOLLHOUSE_CONFIG_ERRORS))

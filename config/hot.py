"""Settings the request path reads on every call, at the cost of a plain attribute.

`django.conf.settings` is a LazyObject: every read goes through `LazyObject.__getattribute__`, which
also asks the value for `_mask_wrapped` (an AttributeError raised and caught for a str or an int).
That is about a microsecond a read; the bench profile found these reads at ~5 % of a governed call
(`redis_key` alone builds several keys per call). `hot.NAME` reads `settings.NAME` once and keeps
it; a change made the supported way (`override_settings`, pytest-django's `settings` fixture: both
send `setting_changed`) forgets every kept value.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed


class _Hot:
    def __getattr__(self, name: str) -> Any:
        value = getattr(settings, name)
        self.__dict__[name] = value
        return value


hot: Any = _Hot()


def _forget(**kwargs: Any) -> None:
    hot.__dict__.clear()


setting_changed.connect(_forget, dispatch_uid="config.hot")

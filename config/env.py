"""A small, strict reader of the environment.

Settings never raise at import time: a malformed value is recorded as one clear sentence in
`errors`, and the `tollhouse.E001` system check (config/checks.py) reports them all at start.
That keeps `manage.py` usable enough to say what is wrong instead of dying with a traceback.
"""

from __future__ import annotations

import base64
import binascii
import os
from ipaddress import IPv4Network, IPv6Network, ip_network
from urllib.parse import urlsplit

import environ

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class EnvReader:
    def __init__(self, environ_: os._Environ[str] | dict[str, str] | None = None) -> None:
        self.environ = os.environ if environ_ is None else environ_
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def string(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        self.errors.append(f"{name} must be true or false, not {value!r}.")
        return default

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            parsed = int(value)
        except ValueError:
            self.errors.append(f"{name} must be a whole number, not {value!r}.")
            return default
        if parsed < minimum:
            self.errors.append(f"{name} must be at least {minimum}, not {parsed}.")
            return default
        return parsed

    def seconds(self, name: str, default: float, *, maximum: float) -> float:
        """A duration in seconds, above 0 and at most `maximum` (fractions allowed)."""
        value = self.raw(name)
        try:
            parsed = default if value is None else float(value)
        except ValueError:
            parsed = -1.0
        if not 0 < parsed <= maximum:  # NaN fails this too
            self.errors.append(
                f"{name} must be a number of seconds above 0 and at most {maximum:g}, not {value!r}."
            )
            return default
        return parsed

    def fraction(self, name: str, default: float) -> float:
        """A share between 0 and 1 (both included), such as 0.05."""
        value = self.raw(name)
        try:
            parsed = default if value is None else float(value)
        except ValueError:
            parsed = -1.0
        if not 0 <= parsed <= 1:  # NaN fails this too
            self.errors.append(f"{name} must be a number between 0 and 1, such as 0.05, not {value!r}.")
            return default
        return parsed

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() not in choices:
            self.errors.append(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
            return default
        return value.lower()

    def rate(self, name: str, default: str) -> str:
        """A rate like '10/m': a positive count per s(econd), m(inute) or h(our)."""
        value = self.string(name, default)
        count, _, unit = value.partition("/")
        if not count.isdigit() or int(count) < 1 or unit not in {"s", "m", "h"}:
            self.errors.append(f"{name} must look like 10/m (a count per s, m or h), not {value!r}.")
            return default
        return value

    def strings(self, name: str, default: list[str]) -> list[str]:
        value = self.raw(name)
        if value is None:
            return default
        return [item.strip() for item in value.split(",") if item.strip()]

    def networks(self, name: str) -> tuple[IPv4Network | IPv6Network, ...]:
        """Comma-separated IP addresses or CIDR ranges."""
        networks = []
        for item in self.strings(name, []):
            try:
                networks.append(ip_network(item, strict=False))
            except ValueError:
                self.errors.append(f"{name} must list IP addresses or CIDR ranges; {item!r} is neither.")
                return ()
        return tuple(networks)

    def database(self, name: str) -> dict[str, object] | None:
        value = self.raw(name)
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in {"postgres", "postgresql", "pgsql", "sqlite"}:
            self.errors.append(
                f"{name} must be a postgres:// (or sqlite://) URL; got a {scheme or 'scheme-less'} URL."
            )
            return None
        try:
            config = environ.Env.db_url_config(value)
        except Exception:
            self.errors.append(f"{name} is not a valid database URL.")
            return None
        if scheme != "sqlite" and not config.get("NAME"):
            self.errors.append(f"{name} must name a database, as in postgres://user@host:5432/tollhouse.")
            return None
        return dict(config)

    def redis_url(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"redis", "rediss", "unix"} or (parts.scheme != "unix" and not parts.hostname):
            self.errors.append(f"{name} must be a redis://host:port/db URL.")
            return None
        return value

    def fernet_keys(self, name: str) -> list[str]:
        """Comma-separated Fernet keys: the first encrypts, all decrypt (rotation)."""
        keys = self.strings(name, [])
        for key in keys:
            try:
                if len(base64.urlsafe_b64decode(key.encode())) != 32:
                    raise ValueError
            except (ValueError, binascii.Error):
                self.errors.append(
                    f"{name} must be url-safe base64 of 32 bytes (make one with "
                    "`.venv/bin/python manage.py generate_secrets`)."
                )
                return []
        return keys

"""The catalog file: providers, routes (aliases, strategy, limits, fallbacks, deployments) and prices,
read from TOML or YAML (by the file's extension) into plain, validated values.

Everything that can be checked without the database is checked here, and every refusal names the
line of the key or table it is about (`FILE:LINE: reason`): tomllib gives lines for syntax errors
only, so `_toml_lines` scans the source for each table header and key itself; YAML's composer keeps
the line of every node. Money is read as Decimal (TOML floats are parsed as Decimal, YAML floats as
their own text), never through a float. A provider's credential is only ever the NAME of an
environment variable (`credential_env`): a literal credential in the file is refused.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError

from accounts.validators import MAX_NAME_LENGTH, validate_model_name
from gateway.models import ModelRoute, validate_base_url, validate_env_name

Path_ = tuple[str | int, ...]

# Keys that would hold a credential's value: refused, the file names an environment variable instead.
CREDENTIAL_KEYS = frozenset({"credential", "api_key", "apikey", "key", "secret", "token", "password"})
PROVIDER_KEYS = frozenset(
    {"kind", "base_url", "credential_env", "connect_timeout", "read_timeout", "first_byte_timeout",
     "total_timeout", "enabled"}
)  # fmt: skip
TIMEOUTS = ("connect_timeout", "read_timeout", "first_byte_timeout", "total_timeout")
ROUTE_KEYS = frozenset(
    {"aliases", "strategy", "max_output_tokens", "context_window", "fallbacks", "enabled", "deployments"}
)
DEPLOYMENT_KEYS = frozenset({"provider", "model", "priority", "weight", "rpm", "tpm", "enabled"})
PRICE_KEYS = frozenset({"input", "cached_input", "cache_write", "cache_write_1h", "output", "effective_from"})
PRICE_MAX = Decimal("99999999999")  # NUMERIC(20, 9): 11 digits before the point


class CatalogFileError(Exception):
    """A file that cannot be synced: each problem as (line or None, reason)."""

    def __init__(self, path: str, problems: list[tuple[int | None, str]]) -> None:
        self.path = path
        self.problems = sorted(problems, key=lambda p: (p[0] or 0, p[1]))
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(
            f"{self.path}:{line}: {reason}" if line else f"{self.path}: {reason}"
            for line, reason in self.problems
        )


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    kind: str
    base_url: str
    credential_env: str = ""
    connect_timeout: Decimal = Decimal(5)
    read_timeout: Decimal = Decimal(120)
    first_byte_timeout: Decimal = Decimal(120)
    total_timeout: Decimal = Decimal(600)
    enabled: bool = True


@dataclass(frozen=True)
class DeploymentSpec:
    provider: str
    model: str  # the upstream model id
    priority: int = 0
    weight: int = 1
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    enabled: bool = True


@dataclass(frozen=True)
class RouteSpec:
    name: str
    aliases: tuple[str, ...] = ()
    strategy: str = ModelRoute.Strategy.PRIORITY.value
    max_output_tokens: int = 4096
    context_window: int | None = None
    fallbacks: tuple[str, ...] = ()
    enabled: bool = True
    deployments: tuple[DeploymentSpec, ...] = ()


@dataclass(frozen=True)
class PriceSpec:
    model: str  # the upstream model id
    effective_from: datetime
    input: Decimal
    cached_input: Decimal
    output: Decimal
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None


@dataclass
class CatalogSpec:
    providers: dict[str, ProviderSpec] = field(default_factory=dict)
    routes: dict[str, RouteSpec] = field(default_factory=dict)
    prices: list[PriceSpec] = field(default_factory=list)
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, *path: str | int) -> int | None:
        """The line of `path`, or of its nearest ancestor the scan found."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


# --- reading ---------------------------------------------------------------------------------------


def catalog_load(path: str | Path, *, text: str | None = None) -> CatalogSpec:
    """Read and validate the file at `path` (or `text`, named by `path`); CatalogFileError if not."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogFileError(name, [(None, f"cannot read the file: {exc}")]) from None
    suffix = Path(name).suffix.lower()
    if suffix == ".toml":
        data, lines = _read_toml(name, text)
    elif suffix in (".yaml", ".yml"):
        data, lines = _read_yaml(name, text)
    else:
        raise CatalogFileError(name, [(None, "the file must end in .toml, .yaml or .yml")])
    return _Validator(name, lines).catalog(data)


def _read_toml(name: str, text: str) -> tuple[Any, dict[Path_, int]]:
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise CatalogFileError(
            name, [(int(match.group(1)) if match else None, f"not valid TOML: {reason}")]
        ) from None
    return data, _toml_lines(text)


_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(text: str) -> tuple[list[str], str] | None:
    """A (dotted) TOML key at the start of `text`: its parts, and the rest of the text."""
    parts: list[str] = []
    rest = text.lstrip()
    while True:
        if rest.startswith('"'):
            end = 1
            while end < len(rest) and rest[end] != '"':
                end += 2 if rest[end] == "\\" else 1
            if end >= len(rest):
                return None
            raw = rest[1:end]
            try:
                parts.append(raw.encode("latin-1", "backslashreplace").decode("unicode_escape"))
            except UnicodeDecodeError:
                parts.append(raw)
            rest = rest[end + 1 :]
        elif rest.startswith("'"):
            end = rest.find("'", 1)
            if end == -1:
                return None
            parts.append(rest[1:end])
            rest = rest[end + 1 :]
        else:
            match = _BARE.match(rest)
            if not match:
                return None
            parts.append(match.group(0))
            rest = rest[match.end() :]
        rest = rest.lstrip()
        if not rest.startswith("."):
            return parts, rest
        rest = rest[1:].lstrip()


def _toml_lines(text: str) -> dict[Path_, int]:
    """Where each table and key starts (1-based), by path; an array of tables' entries by index.
    Good enough for the lines of a valid file (tomllib has already parsed it): multi-line strings
    and arrays are skipped, inline tables are found by their key's line."""
    lines: dict[Path_, int] = {}
    counts: dict[Path_, int] = {}
    table: Path_ = ()
    in_string = ""
    depth = 0  # open brackets of a multi-line array or inline table
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string:
            if line.count(in_string) % 2 == 1:
                in_string = ""
            continue
        stripped = line.strip()
        if depth:
            depth += _brackets(stripped)
            continue
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[["):
            parsed = _toml_key(stripped[2:])
            if parsed:
                base = tuple(parsed[0])
                index = counts.get(base, 0)
                counts[base] = index + 1
                table = (*_resolve(base, counts), index)  # type: ignore[assignment]
                lines.setdefault(base, number)
                lines[table] = number
            continue
        if stripped.startswith("["):
            parsed = _toml_key(stripped[1:])
            if parsed:
                table = _resolve(tuple(parsed[0]), counts)
                for end in range(1, len(table) + 1):
                    lines.setdefault(table[:end], number)
            continue
        parsed = _toml_key(stripped)
        if parsed and parsed[1].startswith("="):
            key = (*table, *parsed[0])
            for end in range(len(table) + 1, len(key) + 1):
                lines.setdefault(key[:end], number)
            value = parsed[1][1:].strip()
            for quote in ('"""', "'''"):
                if value.count(quote) % 2 == 1:
                    in_string = quote
            if not in_string:
                depth = max(_brackets(value), 0)
    return lines


def _resolve(key: Path_, counts: dict[Path_, int]) -> Path_:
    """A table header's path with the current entry of every array of tables it passes through
    (`[routes.x.deployments.y]` after `[[routes.x.deployments]]`)."""
    resolved: list[str | int] = []
    for part in key:
        resolved.append(part)
        plain = tuple(p for p in resolved if isinstance(p, str))
        if plain in counts and len(plain) < len(key):
            resolved.append(counts[plain] - 1)
    return tuple(resolved)


def _brackets(text: str) -> int:
    """Opening minus closing brackets and braces outside strings and comments."""
    balance, quote = 0, ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            break
        elif char in "[{":
            balance += 1
        elif char in "]}":
            balance -= 1
    return balance


class _DecimalLoader(yaml.SafeLoader):
    """YAML with floats as Decimal (from their own text, never a binary float)."""


def _yaml_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = loader.construct_scalar(node).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal("NaN")


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _yaml_decimal)


def _read_yaml(name: str, text: str) -> tuple[Any, dict[Path_, int]]:
    try:
        root = yaml.compose(text, Loader=_DecimalLoader)
        data = yaml.load(text, Loader=_DecimalLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogFileError(
            name, [(mark.line + 1 if mark else None, f"not valid YAML: {problem}")]
        ) from None
    lines: dict[Path_, int] = {}
    problems: list[tuple[int | None, str]] = []

    def walk(node: Any, path: Path_) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    problems.append((key_node.start_mark.line + 1, f"{dotted((*path, key))} is set twice"))
                seen.add(key)
                lines[(*path, key)] = key_node.start_mark.line + 1
                walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*path, index)] = item.start_mark.line + 1
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    if problems:
        raise CatalogFileError(name, problems)
    return data, lines


def dotted(path: Path_) -> str:
    """A path as the file writes it: `routes."gpt-4.1".deployments[0].provider`."""
    shown = ""
    for part in path:
        if isinstance(part, int):
            shown += f"[{part}]"
        else:
            text = part if _BARE.fullmatch(part) else f'"{part}"'
            shown += f".{text}" if shown else text
    return shown


# --- validating ------------------------------------------------------------------------------------


class _Validator:
    def __init__(self, name: str, lines: dict[Path_, int]) -> None:
        self.name = name
        self.spec = CatalogSpec(lines=lines)
        self.problems: list[tuple[int | None, str]] = []

    def fail(self, path: Path_, reason: str) -> None:
        self.problems.append((self.spec.line(*path), f"{dotted(path)}: {reason}" if path else reason))

    def catalog(self, data: Any) -> CatalogSpec:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise CatalogFileError(self.name, [(1, "the file must hold a table (providers, routes, prices)")])
        self.unknown_keys((), data, frozenset({"providers", "routes", "prices"}))
        for name, body in self.tables(("providers",), data.get("providers")):
            self.provider(name, body)
        for name, body in self.tables(("routes",), data.get("routes")):
            self.route(name, body)
        for name, body in self.tables(("prices",), data.get("prices"), lists=True):
            entries = body if isinstance(body, list) else [body]
            for index, entry in enumerate(entries):
                path: Path_ = ("prices", name, index) if isinstance(body, list) else ("prices", name)
                self.price(name, path, entry)
        self.across_routes()
        if self.problems:
            raise CatalogFileError(self.name, self.problems)
        return self.spec

    def tables(self, path: Path_, value: Any, *, lists: bool = False) -> Iterator[tuple[str, Any]]:
        if value is None:
            return
        if not isinstance(value, dict):
            self.fail(path, "must be a table of named entries")
            return
        for name, body in value.items():
            ok = isinstance(body, dict) or (
                lists and isinstance(body, list) and all(isinstance(b, dict) for b in body)
            )
            if not ok:
                self.fail((*path, name), "must be a table" + (" (or an array of tables)" if lists else ""))
                continue
            yield str(name), body

    def unknown_keys(self, path: Path_, body: dict[str, Any], known: frozenset[str]) -> None:
        for key in body:
            if key not in known:
                self.fail((*path, key), f"unknown key (expected one of: {', '.join(sorted(known))})")

    def model_name(self, path: Path_, value: Any, what: str = "model name") -> str | None:
        if not isinstance(value, str):
            self.fail(path, f"the {what} must be text")
            return None
        try:
            validate_model_name(value)
        except ValidationError as exc:
            self.fail(path, exc.messages[0])
            return None
        if len(value) > MAX_NAME_LENGTH:
            self.fail(path, f"model names are at most {MAX_NAME_LENGTH} characters long")
            return None
        return value

    def integer(self, path: Path_, value: Any, *, minimum: int, maximum: int = 2_147_483_647) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, "must be a whole number")
            return None
        if not minimum <= value <= maximum:
            self.fail(path, f"must be between {minimum} and {maximum}")
            return None
        return value

    def boolean(self, path: Path_, value: Any) -> bool:
        if not isinstance(value, bool):
            self.fail(path, "must be true or false")
            return True
        return value

    def names(self, path: Path_, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(path, 'must be a list of model names, as in ["gpt4"]')
            return ()
        names = []
        for index, item in enumerate(value):
            checked = self.model_name((*path, index), item)
            if checked is not None:
                names.append(checked)
        return tuple(names)

    def provider(self, name: str, body: dict[str, Any]) -> None:
        path: Path_ = ("providers", name)
        for key in body:
            if key.lower() in CREDENTIAL_KEYS:
                self.fail(
                    (*path, key),
                    "a credential does not belong in the catalog file: put it in an environment variable "
                    'of the gateway processes and name that variable, as in credential_env = "OPENAI_API_KEY"',
                )
        self.unknown_keys(
            path, {k: v for k, v in body.items() if k.lower() not in CREDENTIAL_KEYS}, PROVIDER_KEYS
        )
        if not re.fullmatch(r"[-a-zA-Z0-9_]{1,100}", name):
            self.fail(path, "a provider's name is letters, digits, '-' and '_' (at most 100)")
        from gateway.providers import ADAPTERS

        kind = body.get("kind")
        if kind not in ADAPTERS:
            self.fail((*path, "kind") if "kind" in body else path,
                      f"unknown provider kind {kind!r}: use one of {', '.join(ADAPTERS)}")  # fmt: skip
        base_url = body.get("base_url")
        try:
            validate_base_url(base_url)
        except ValidationError as exc:
            self.fail((*path, "base_url") if "base_url" in body else path, exc.messages[0])
        env = body.get("credential_env", "")
        if env != "":
            try:
                validate_env_name(env)
            except ValidationError as exc:
                self.fail((*path, "credential_env"), exc.messages[0])
        timeouts: dict[str, Decimal] = {}
        for key in TIMEOUTS:
            if key in body:
                value = self.decimal((*path, key), body[key], places=2, maximum=Decimal("9999.99"))
                if value is not None and value < Decimal("0.01"):
                    self.fail((*path, key), "must be more than zero seconds")
                elif value is not None:
                    timeouts[key] = value
        enabled = self.boolean((*path, "enabled"), body["enabled"]) if "enabled" in body else True
        if isinstance(kind, str) and isinstance(base_url, str) and isinstance(env, str):
            self.spec.providers[name] = ProviderSpec(
                name=name,
                kind=kind,
                base_url=base_url.rstrip("/"),
                credential_env=env,
                enabled=enabled,
                **timeouts,
            )

    def route(self, name: str, body: dict[str, Any]) -> None:
        path: Path_ = ("routes", name)
        self.unknown_keys(path, body, ROUTE_KEYS)
        self.model_name(path, name, "route name")
        aliases = self.names((*path, "aliases"), body.get("aliases", []))
        fallbacks = self.names((*path, "fallbacks"), body.get("fallbacks", []))
        strategy = body.get("strategy", ModelRoute.Strategy.PRIORITY.value)
        if strategy not in ModelRoute.Strategy.values:
            self.fail(
                (*path, "strategy"),
                f"unknown strategy {strategy!r}: use one of {', '.join(ModelRoute.Strategy.values)}",
            )
        max_output = body.get("max_output_tokens", 4096)
        max_output = self.integer((*path, "max_output_tokens"), max_output, minimum=1) or 4096
        context = body.get("context_window")
        context = self.integer((*path, "context_window"), context, minimum=1) if context is not None else None
        enabled = self.boolean((*path, "enabled"), body["enabled"]) if "enabled" in body else True
        deployments = []
        raw = body.get("deployments", [])
        if not isinstance(raw, list) or not all(isinstance(d, dict) for d in raw):
            self.fail((*path, "deployments"), "must be an array of tables ([[routes.NAME.deployments]])")
            raw = []
        providers_seen: set[str] = set()
        for index, item in enumerate(raw):
            deployment = self.deployment((*path, "deployments", index), item)
            if deployment is None:
                continue
            if deployment.provider in providers_seen:
                self.fail((*path, "deployments", index, "provider"),
                          f"provider {deployment.provider!r} serves this route twice: one deployment per provider")  # fmt: skip
            providers_seen.add(deployment.provider)
            deployments.append(deployment)
        self.spec.routes[name] = RouteSpec(
            name=name,
            aliases=aliases,
            strategy=str(strategy),
            max_output_tokens=max_output,
            context_window=context,
            fallbacks=fallbacks,
            enabled=enabled,
            deployments=tuple(deployments),
        )

    def deployment(self, path: Path_, body: dict[str, Any]) -> DeploymentSpec | None:
        self.unknown_keys(path, body, DEPLOYMENT_KEYS)
        provider = body.get("provider")
        if not isinstance(provider, str) or not provider:
            self.fail((*path, "provider") if "provider" in body else path, "names no provider")
            return None
        model = self.model_name(
            (*path, "model") if "model" in body else path, body.get("model"), "upstream model"
        )
        priority = self.integer((*path, "priority"), body.get("priority", 0), minimum=0, maximum=32767)
        weight = self.integer((*path, "weight"), body.get("weight", 1), minimum=0)
        rpm = self.integer((*path, "rpm"), body["rpm"], minimum=1) if "rpm" in body else None
        tpm = self.integer((*path, "tpm"), body["tpm"], minimum=1) if "tpm" in body else None
        enabled = self.boolean((*path, "enabled"), body["enabled"]) if "enabled" in body else True
        if model is None or priority is None or weight is None:
            return None
        return DeploymentSpec(
            provider=provider,
            model=model,
            priority=priority,
            weight=weight,
            rpm_limit=rpm,
            tpm_limit=tpm,
            enabled=enabled,
        )

    def decimal(
        self, path: Path_, value: Any, *, places: int = 9, maximum: Decimal = PRICE_MAX
    ) -> Decimal | None:
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            self.fail(path, "must be a number, such as 2.50")
            return None
        try:
            number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
        except InvalidOperation:
            self.fail(path, f"{str(value)[:40]!r} is not a number")
            return None
        if not number.is_finite():
            self.fail(path, "must be a finite number")
            return None
        if number < 0:
            self.fail(path, "cannot be negative")
            return None
        if number > maximum:
            self.fail(path, f"must be at most {maximum}")
            return None
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -places:
            self.fail(path, f"has more than {places} decimal places")
            return None
        return number

    def price(self, model: str, path: Path_, body: dict[str, Any]) -> None:
        self.unknown_keys(path, body, PRICE_KEYS)
        self.model_name(path, model, "upstream model")
        if "effective_from" not in body:
            self.fail(path, "a price needs the date it takes effect: effective_from = 2025-08-07")
            when = None
        else:
            when = self.when((*path, "effective_from"), body["effective_from"])
        values: dict[str, Decimal | None] = {}
        for key in ("input", "output"):
            if key not in body:
                self.fail(path, f"a price needs {key} (USD per million tokens)")
        for key in ("input", "cached_input", "cache_write", "cache_write_1h", "output"):
            values[key] = self.decimal((*path, key), body[key]) if key in body else None
        input_price, output = values["input"], values["output"]
        if when is None or input_price is None or output is None:
            return
        cached = values["cached_input"] if values["cached_input"] is not None else input_price
        self.spec.prices.append(
            PriceSpec(
                model=model,
                effective_from=when,
                input=input_price,
                cached_input=cached,
                output=output,
                cache_write=values["cache_write"],
                cache_write_1h=values["cache_write_1h"],
            )
        )

    def when(self, path: Path_, value: Any) -> datetime | None:
        if isinstance(value, str):
            try:
                value = (
                    datetime.fromisoformat(value)
                    if "T" in value or " " in value.strip()
                    else date.fromisoformat(value)
                )
            except ValueError:
                self.fail(path, f"{value[:40]!r} is not a date: use YYYY-MM-DD")
                return None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                self.fail(
                    path, "a date and time needs its offset (such as Z or +00:00), or give a date alone"
                )
                return None
            return value.astimezone(UTC)
        if isinstance(value, date):
            return datetime.combine(value, time(0), tzinfo=UTC)
        self.fail(path, "must be a date: YYYY-MM-DD")
        return None

    def across_routes(self) -> None:
        """One model name, one route: no alias twice, nor an alias that is another route's name;
        and no price twice for the same model and date."""
        owner: dict[str, str] = {name: name for name in self.spec.routes}
        for route in self.spec.routes.values():
            for index, alias in enumerate(route.aliases):
                if alias in owner:
                    other = owner[alias]
                    where = "this route" if other == route.name else f"route {other!r}"
                    self.fail(("routes", route.name, "aliases", index),
                              f"duplicate alias {alias!r}: already a name or alias of {where}")  # fmt: skip
                else:
                    owner[alias] = route.name
        seen: set[tuple[str, datetime]] = set()
        for price in self.spec.prices:
            if (price.model, price.effective_from) in seen:
                self.fail(("prices", price.model), f"two prices from {price.effective_from.date()}")
            seen.add((price.model, price.effective_from))

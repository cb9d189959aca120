"""What `/v1/models` and `/v1/models/{model}` answer: the names a key may use (each route's name and
its aliases, an alias marked as such), with the context window and output limit where the catalog
knows them, in OpenAI's shape or, for a client that sends `anthropic-version`, in Anthropic's.

OpenAI's list (`{"object": "list", "data": [...]}`) has no pagination; each model carries
`context_window`, `max_output_tokens` and either `aliases` (a route) or `alias_of` (an alias) as
extra fields, which the SDK keeps. Anthropic's (`{"data": [...], "has_more", "first_id",
"last_id"}`) pages by id (`limit` 1-1000, default 20; `after_id` or `before_id`), each model a
`ModelInfo`: `type`, `id`, `display_name`, `created_at`, with `max_input_tokens` and `max_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway import errors
from gateway.catalog import Catalog

ANTHROPIC_PAGE_DEFAULT = 20
ANTHROPIC_PAGE_MAX = 1000


@dataclass(frozen=True)
class ModelEntry:
    id: str
    route: str  # the route it names (itself, for a route's own name)
    created: int
    context_window: int | None
    max_output_tokens: int
    aliases: tuple[str, ...] = ()  # a route's aliases the key may use

    @property
    def is_alias(self) -> bool:
        return self.id != self.route

    def openai(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": "tollhouse",
        }
        if self.context_window is not None:
            body["context_window"] = self.context_window
        body["max_output_tokens"] = self.max_output_tokens
        if self.is_alias:
            body["alias_of"] = self.route
        else:
            body["aliases"] = list(self.aliases)
        return body

    def anthropic(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "model",
            "id": self.id,
            "display_name": f"{self.id} (alias of {self.route})" if self.is_alias else self.id,
            "created_at": datetime.fromtimestamp(self.created, UTC).isoformat().replace("+00:00", "Z"),
            "max_input_tokens": self.context_window,
            "max_tokens": self.max_output_tokens,
        }
        if self.is_alias:
            body["alias_of"] = self.route
        return body


def model_entries(catalog: Catalog, key: Any) -> list[ModelEntry]:
    """Every name `key` may call, sorted: a name is usable when the key may use it or its route
    (as gateway/proxy.py decides)."""
    entries = []
    for name in sorted(catalog.routes):
        route = catalog.routes[name]
        if not (key.model_allowed(route.name) or key.model_allowed(name)):
            continue
        aliases: tuple[str, ...] = ()
        if name == route.name:
            aliases = tuple(
                alias
                for alias in route.aliases
                if catalog.routes.get(alias) is route
                and (key.model_allowed(route.name) or key.model_allowed(alias))
            )
        elif catalog.routes.get(name) is not route:
            continue
        entries.append(
            ModelEntry(
                id=name,
                route=route.name,
                created=route.created,
                context_window=route.context_window,
                max_output_tokens=route.max_output_tokens,
                aliases=aliases,
            )
        )
    return entries


def model_entry(catalog: Catalog, key: Any, model: str) -> ModelEntry:
    for entry in model_entries(catalog, key):
        if entry.id == model:
            return entry
    raise errors.NotFound(
        f"The model '{model[:200]}' does not exist or you do not have access to it.", param="model"
    )


def openai_list(entries: list[ModelEntry]) -> dict[str, Any]:
    return {"object": "list", "data": [entry.openai() for entry in entries]}


def anthropic_page(entries: list[ModelEntry], query: Any) -> dict[str, Any]:
    """One page of Anthropic's list: `query` holds `limit`, `after_id` or `before_id`."""
    raw_limit = query.get("limit")
    limit = ANTHROPIC_PAGE_DEFAULT
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= ANTHROPIC_PAGE_MAX:
            raise errors.BadRequest(
                f"limit must be a whole number from 1 to {ANTHROPIC_PAGE_MAX}.", param="limit"
            )
        limit = int(raw_limit)
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise errors.BadRequest("Give after_id or before_id, not both.", param="after_id")
    ids = [entry.id for entry in entries]
    if before is not None:
        earlier = [entry for entry, id_ in zip(entries, ids, strict=True) if id_ < before]
        page = earlier[-limit:]
        has_more = len(earlier) > limit
    else:
        later = [entry for entry, id_ in zip(entries, ids, strict=True) if after is None or id_ > after]
        page = later[:limit]
        has_more = len(later) > limit
    return {
        "data": [entry.anthropic() for entry in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }

"""The adapter registry, by provider kind (DESIGN.md §5). Adding a wire format is adding one module and
one line here; `Provider.kind` offers exactly these kinds (gateway.models.provider_kinds)."""

from __future__ import annotations

from gateway.providers.anthropic import AnthropicAdapter
from gateway.providers.base import Adapter, ProviderError, StreamParser, StreamTranslator, Usage
from gateway.providers.gemini import GeminiAdapter
from gateway.providers.mock import MockAdapter
from gateway.providers.openai import OpenAIAdapter, OpenAICompatibleAdapter
from gateway.providers.openai_responses import OpenAIResponsesAdapter

ADAPTERS: dict[str, Adapter] = {
    adapter.kind: adapter
    for adapter in (
        OpenAIAdapter(),
        OpenAICompatibleAdapter(),
        OpenAIResponsesAdapter(),
        AnthropicAdapter(),
        GeminiAdapter(),
        MockAdapter(),
    )
}


def adapter_for(kind: str) -> Adapter | None:
    return ADAPTERS.get(kind)


def kind_choices() -> list[tuple[str, str]]:
    return [(kind, adapter.label) for kind, adapter in ADAPTERS.items()]


__all__ = [
    "ADAPTERS",
    "Adapter",
    "ProviderError",
    "StreamParser",
    "StreamTranslator",
    "Usage",
    "adapter_for",
    "kind_choices",
]

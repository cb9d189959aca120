"""Adapters by provider kind. Adding a wire format is adding one module and one line here."""

from __future__ import annotations

from gateway.providers.base import Adapter, ProviderError, StreamTranslator, Usage
from gateway.providers.mock import MockAdapter
from gateway.providers.openai import OpenAIAdapter

_ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAIAdapter(),
    "openai-compatible": OpenAIAdapter(),
    "mock": MockAdapter(),
}


def adapter_for(kind: str) -> Adapter | None:
    return _ADAPTERS.get(kind)


__all__ = ["Adapter", "ProviderError", "StreamTranslator", "Usage", "adapter_for"]

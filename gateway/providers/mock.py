"""The bundled mock provider (gateway/mockserver/) in its OpenAI wire format."""

from __future__ import annotations

from typing import ClassVar

from gateway.providers.openai import OpenAIAdapter


class MockAdapter(OpenAIAdapter):
    kind: ClassVar[str] = "mock"
    label: ClassVar[str] = "Mock (bundled, OpenAI format)"
    wire: ClassVar[str] = "mock"

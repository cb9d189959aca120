"""The dialect registry: every /v1 route, and the codec that speaks it (DESIGN.md §3).

One table, read by the ASGI handler (gateway/asgi.py), the URLconf (gateway/urls.py), the OpenAPI
document's test (tests/gateway/dialects/test_registry.py) and the metrics' endpoint label
(gateway/metrics.py). Adding a dialect is adding one codec module and one line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.dialects.anthropic_messages import AnthropicMessages
from gateway.dialects.base import Codec, Inbound, Route, StreamRenderer
from gateway.dialects.openai_chat import OpenAIChat
from gateway.dialects.openai_embeddings import OpenAIEmbeddings
from gateway.dialects.openai_responses import OpenAIResponses

CODECS: dict[str, Codec] = {
    codec.name: codec for codec in (OpenAIChat(), OpenAIEmbeddings(), AnthropicMessages(), OpenAIResponses())
}

# The /v1 routes that are not model calls: the catalog (in OpenAI's list shape, or Anthropic's when
# asked with an `anthropic-version` header), and one model of it. `{model}` is the rest of the path
# (a model id may hold a `/`).
MODELS = Route("/v1/models", "GET", "models")
MODEL = Route("/v1/models/{model}", "GET", "model")


@dataclass(frozen=True)
class Endpoint:
    route: Route
    codec: Codec | None  # None: /v1/models and /v1/models/{model}


ENDPOINTS: tuple[Endpoint, ...] = (
    *(Endpoint(route, codec) for codec in CODECS.values() for route in codec.routes),
    Endpoint(MODELS, None),
    Endpoint(MODEL, None),
)

# The usage row's `endpoint` values, and the metrics label's (anything else is "other").
ENDPOINT_LABELS = frozenset(codec.endpoint for codec in CODECS.values())


def codec_named(name: str) -> Codec:
    return CODECS[name]


__all__ = [
    "CODECS",
    "ENDPOINTS",
    "ENDPOINT_LABELS",
    "MODEL",
    "MODELS",
    "Codec",
    "Endpoint",
    "Inbound",
    "Route",
    "StreamRenderer",
]

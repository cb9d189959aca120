"""OpenAI embeddings (`/v1/embeddings`): served by OpenAI-format upstreams only, passed through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway import canonical, errors
from gateway.dialects import fields
from gateway.dialects.base import Codec, Inbound, Route, session_from


def _embedding_input(value: Any) -> int:
    """`input`: a string, an array of strings, of token ids, or of token-id arrays. Returns its
    length in characters (token ids counted as the characters they stand for)."""
    if value is None:
        raise fields.missing("input", "'input' is required: a non-empty string or array.")
    if isinstance(value, str):
        if not value:
            raise fields.invalid_value("input", "must not be an empty string.")
        return len(value)
    if not isinstance(value, list):
        raise fields.invalid_type("input", "a string or an array")
    if not value:
        raise fields.invalid_value("input", "must not be an empty array.")
    if len(value) > fields.MAX_EMBEDDING_INPUTS:
        raise errors.BadRequest(
            f"Invalid 'input': at most {fields.MAX_EMBEDDING_INPUTS} items.",
            param="input",
            code="array_above_max_length",
        )
    first = value[0]
    if isinstance(first, str):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise fields.invalid_type(f"input[{index}]", "a string, like the other items")
            if not item:
                raise fields.invalid_value(f"input[{index}]", "must not be an empty string.")
        return sum(len(item) for item in value)
    if fields.is_int(first):
        for index, item in enumerate(value):
            if not fields.is_int(item):
                raise fields.invalid_type(f"input[{index}]", "an integer, like the other items")
        return len(value) * fields.CHARS_PER_TOKEN
    if isinstance(first, list):
        tokens = 0
        for index, item in enumerate(value):
            if not isinstance(item, list) or not item:
                raise fields.invalid_type(f"input[{index}]", "a non-empty array of token ids")
            for position, token in enumerate(item):
                if not fields.is_int(token):
                    raise fields.invalid_type(f"input[{index}][{position}]", "an integer")
            tokens += len(item)
        return tokens * fields.CHARS_PER_TOKEN
    raise fields.invalid_type("input[0]", "a string, an integer or an array of integers")


def validate_embeddings(data: dict[str, Any]) -> tuple[str, int]:
    """Check an embeddings request; returns (model, input length in characters)."""
    model = fields.model(data)
    prompt_chars = _embedding_input(data.get("input"))
    fields.integer(data.get("dimensions"), "dimensions", 1)
    encoding_format = data.get("encoding_format")
    if encoding_format is not None and encoding_format not in ("float", "base64"):
        raise fields.invalid_value("encoding_format", "expected 'float' or 'base64'.")
    fields.user(data)
    return model, prompt_chars


class OpenAIEmbeddings(Codec):
    name: ClassVar[str] = "openai_embeddings"
    endpoint: ClassVar[str] = "embeddings"
    routes: ClassVar[tuple[Route, ...]] = (Route("/v1/embeddings", "POST", "embeddings"),)
    translatable: ClassVar[bool] = False

    def parse(self, *, body: dict[str, Any], headers: Mapping[str, str], operation: str) -> Inbound:
        model, prompt_chars = validate_embeddings(body)
        return self._new_inbound(
            operation=operation,
            body=body,
            model=model,
            user=body.get("user") or "",
            session=session_from(headers),
            prompt_chars=prompt_chars,
        )

    def to_canonical(self, inbound: Inbound) -> canonical.Request:
        raise AssertionError("embeddings are passed through, never translated")

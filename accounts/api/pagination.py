"""Cursor pagination for every list of the API: keyset on (created_at, id), newest first.

The answer is `{"next": <url or null>, "previous": <url or null>, "results": [...]}`; follow `next`
until it is null. `limit` sets the page size (1 to 200, default 50). A cursor the API did not make
is a 400 naming `cursor`, not a 404.
"""

from __future__ import annotations

import binascii
from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.errors import BadRequest

BAD = object()


def _moment(text: str) -> bool:
    """Is `text` a position this API wrote (a created_at)?"""
    try:
        return len(text) < 40 and parse_datetime(text) is not None
    except ValueError:
        return False


class Cursor(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    max_page_size = 200
    page_size_query_param = "limit"
    cursor_query_param = "cursor"

    def decode_cursor(self, request: Request) -> Any:
        try:
            cursor = super().decode_cursor(request)
        except (NotFound, UnicodeError, binascii.Error, ValueError):  # DRF says 404 for a bad cursor
            cursor = BAD
        if cursor is BAD or (
            cursor is not None and cursor.position is not None and not _moment(cursor.position)
        ):
            raise BadRequest("This cursor was not made by this API.", field="cursor")
        return cursor

    def get_page_size(self, request: Request) -> int:
        return keyset_limit(request, self.page_size, self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters


def keyset_response(request: Request, results: list[Any], next_cursor: str) -> Response:
    """The list shape for a selector that pages by its own keyset (the usage explorer, the credit
    ledger): `next` carries the selector's position as `cursor`; there is no `previous`."""
    next_url = None
    if next_cursor:
        query = request.query_params.copy()
        query["cursor"] = next_cursor
        next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
    return Response({"next": next_url, "previous": None, "results": results})


def keyset_limit(request: Request, default: int = 50, maximum: int = 200) -> int:
    """`limit` for a selector's page: 1 to `maximum` (400 naming it otherwise)."""
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if raw.isascii() and raw.isdigit() and len(raw) < 6 and 1 <= int(raw) <= maximum:
        return int(raw)
    raise BadRequest(f"`limit` is a whole number from 1 to {maximum}.", field="limit")


KEYSET_PARAMETERS = [
    OpenApiParameter("cursor", str, description="The position `next` carries; omit for the first page."),
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 200},
        description="Page size, 1 to 200 (default 50).",
    ),
]


def keyset_page_serializer(name: str, item: type[serializers.Serializer]) -> type[serializers.Serializer]:  # type: ignore[type-arg]
    """The schema of a keyset list of `item`s (the same shape as the cursor-paginated lists)."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
            "__module__": item.__module__,
        },
    )

"""Cursor pagination for every list of the API: keyset on (created_at, id), newest first.

The answer is `{"next": <url or null>, "previous": <url or null>, "results": [...]}`; follow `next`
until it is null. `limit` sets the page size (1 to 200, default 50). A cursor the API did not make
is a 400 naming `cursor`, not a 404.
"""

from __future__ import annotations

import binascii
from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request

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
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if raw.isascii() and raw.isdigit() and len(raw) < 6 and 1 <= int(raw) <= self.max_page_size:
            return int(raw)
        raise BadRequest(f"`limit` is a whole number from 1 to {self.max_page_size}.", field="limit")

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters

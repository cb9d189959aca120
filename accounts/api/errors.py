"""The API's one error shape: `{"error": {"code", "message", "field"}}` with the right status.

Views raise `ApiError` (or let a service's ValidationError, an Http404 from a selector, or DRF's own
exceptions through); `exception_handler` turns every one of them into the shape. `field` names the
request field (a body field or a query parameter) at fault, or is null. Nothing else escapes: an
unexpected exception is logged and answered 500 `internal_error` without details.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API answers on purpose; subclasses fix the status and the default code."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.field = field
        self.headers = headers or {}


class BadRequest(ApiError):
    status = 400
    code = "invalid"


class Unauthenticated(ApiError):
    status = 401
    code = "invalid_token"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"


NOT_FOUND_MESSAGE = "No such object."


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def _first_error(detail: Any, path: str = "") -> tuple[str | None, str, str]:
    """(field, message, code) of the first error in a DRF ValidationError's detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "" if key in ("non_field_errors", "__all__") else str(key)
            return _first_error(value, f"{path}.{name}" if path and name else (name or path))
    if isinstance(detail, list) and detail:
        for index, value in enumerate(detail):
            if value:  # a list of per-item errors has empty entries for the good items
                inner = f"{path}.{index}" if isinstance(value, dict | list) and path else path
                return _first_error(value, inner)
    return (path or None), str(detail), str(getattr(detail, "code", None) or "invalid")


def _django_validation(exc: DjangoValidationError) -> tuple[str | None, str]:
    if hasattr(exc, "error_dict"):
        for key, errors in exc.message_dict.items():
            return (None if key == "__all__" else key), " ".join(errors)
    return None, " ".join(exc.messages) or "Invalid value."


_DRF_CODES = {
    drf.NotAuthenticated: "not_authenticated",
    drf.AuthenticationFailed: "invalid_token",
    drf.PermissionDenied: "forbidden",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.ParseError: "invalid_json",
    drf.Throttled: "rate_limited",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's exception hook for every API view (accounts.api.base.ApiView)."""
    status, code, message, field, headers = _classify(exc, context)
    response = Response(error_body(code, message, field), status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def _classify(exc: Exception, context: dict[str, Any]) -> tuple[int, str, str, str | None, dict[str, str]]:
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message, exc.field, exc.headers
    if isinstance(exc, drf.ValidationError):
        field, message, code = _first_error(exc.detail)
        return 400, code, message, field, {}
    if isinstance(exc, DjangoValidationError):
        # A service's error names the service's field; the view may call it otherwise.
        field, message = _django_validation(exc)
        renamed = getattr(context.get("view"), "service_fields", {})
        return 400, "invalid", message, renamed.get(field, field) if field else None, {}
    if isinstance(exc, Http404):
        return 404, "not_found", NOT_FOUND_MESSAGE, None, {}
    if isinstance(exc, DjangoPermissionDenied):
        return 403, "forbidden", str(exc) or "Your role may not do this.", None, {}
    if isinstance(exc, IntegrityError):
        # A race the service's own checks could not see (two requests creating the same thing).
        return 409, "conflict", "This conflicts with the current state; read it again and retry.", None, {}
    if isinstance(exc, drf.APIException):
        headers: dict[str, str] = {}
        if isinstance(exc, drf.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(max(1, int(exc.wait)))
        if isinstance(exc, drf.MethodNotAllowed):
            view = context.get("view")
            if view is not None:
                headers["Allow"] = ", ".join(view.allowed_methods)
        known = next((c for kind, c in _DRF_CODES.items() if isinstance(exc, kind)), None)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return exc.status_code, known or str(exc.default_code), detail, None, headers
    request = context.get("request")
    logger.exception("management API: unhandled error on %s", request.path[:200] if request else "?")
    return 500, "internal_error", "The server failed to handle this request.", None, {}

"""Errors on /v1/* in OpenAI's shape, so the official SDKs raise their usual exceptions.

Every failure on the request path is a `GatewayError`; nothing else reaches the client. Messages
are written for the caller and never contain a key, a credential or an upstream URL.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from django.http import HttpResponse

logger = logging.getLogger(__name__)


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        type: str | None = None,  # OpenAI sends e.g. "requests" or "tokens" on a 429
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if type is not None:
            self.type = type
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> HttpResponse:
        response = HttpResponse(
            orjson.dumps(self.body()), status=self.status, content_type="application/json"
        )
        for name, value in self.headers.items():
            response[name] = value
        return response


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PaymentRequired(GatewayError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class BudgetExceeded(PaymentRequired):
    """A hard budget cannot pay for the call's prompt. `budget_id` is its Budget row (None for a
    plan's monthly budget, which has none): the usage row keeps it, so the budget's 100 % alert goes
    out the first time it refuses a call in a period (billing/alerts.py)."""

    code = "budget_exceeded"

    def __init__(self, message: str, *, budget_id: int | None) -> None:
        super().__init__(message)
        self.budget_id = budget_id


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class BodyTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamFailed(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_failed"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_timeout"
    code = "upstream_timeout"


class InternalError(GatewayError):
    status = 500
    type = "server_error"
    code = "internal_error"


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """DRF's exception hook: anything that escapes a /v1 view becomes an OpenAI-shaped error."""
    if isinstance(exc, GatewayError):
        return exc.response()
    from rest_framework.views import exception_handler as drf_handler

    response = drf_handler(exc, context)
    if response is not None:
        detail = response.data.get("detail") if isinstance(response.data, dict) else None
        error = GatewayError(str(detail or "request failed"))
        error.status = response.status_code
        error.type = "invalid_request_error" if response.status_code < 500 else "server_error"
        return error.response()
    request = context.get("request")
    logger.exception("unhandled error on %s", request.path if request is not None else "?")
    return InternalError("The gateway failed to handle this request.").response()


def method_not_allowed(method: str, allowed: str) -> GatewayError:
    # The method is client text echoed back: keep it to what a method can look like.
    shown = method[:20] if method.isascii() and method.isalpha() else "this method"
    error = GatewayError(
        f"{shown} is not allowed on this route; use {allowed}.",
        code="method_not_allowed",
        headers={"Allow": allowed},
    )
    error.status, error.type = 405, "invalid_request_error"
    return error

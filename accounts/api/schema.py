"""The OpenAPI 3 schema (drf-spectacular): the token scheme, and the error responses every
operation can give, in the API's one shape (accounts/api/errors.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field"],
            "properties": {
                "code": {"type": "string", "example": "invalid"},
                "message": {"type": "string"},
                "field": {"type": "string", "nullable": True, "description": "The field at fault, or null."},
            },
        }
    },
}

# Status -> what it means, on every operation of the API.
COMMON_ERRORS = {
    "400": "Bad input: a field, a query parameter or the JSON body (`field` names it).",
    "401": "No token, or not a valid one (`invalid_token`, `token_expired`, `token_revoked`).",
    "403": "Your role in this tenant may not do this.",
    "404": "No such object, or not one of yours (another tenant's objects are 404, never 403).",
    "405": "This path does not answer that method.",
    "409": "The request conflicts with the current state.",
    "415": "The body is not JSON.",
    "429": "Too many calls with this token, or too many failed token checks from your address "
    "(see `Retry-After`).",
    "500": "The server failed (never expected; reported in its logs).",
}


class TokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "accounts.api.authentication.TokenAuthentication"
    name = "token"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "thp_<prefix><secret>",
            "description": "A personal access token, created at /account/tokens/.",
        }


def only_management_api(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Preprocessing hook: the schema describes /api/v1/ alone (the gateway's /v1 has its own contract,
    the providers' own formats)."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/v1/")]


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: the error component, referenced by every operation for each error status
    it does not describe itself."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in COMMON_ERRORS.items():
                responses.setdefault(
                    status,
                    {"description": description, "content": {"application/json": {"schema": reference}}},
                )
    return result

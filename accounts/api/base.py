"""The base views of every management API endpoint: the one way in.

- `ApiView`: a personal access token is required (401 otherwise), JSON in and out, errors in the
  API's shape (accounts/api/errors.py), lists by cursor (accounts/api/pagination.py). No session,
  so no CSRF, and no browsable HTML.
- `TenantApiView`: endpoints under /api/v1/tenants/<slug>/. The tenant comes from
  `accounts.selectors.tenant_for_user` (404 for a tenant the token's user is not a member of, as for
  one that does not exist), and each HTTP method names the console's action for it in `actions`
  (`{"get": "keys.view", "post": "keys.issue"}`), checked against accounts.permissions (403 when
  the role lacks it). The view then runs in the tenant's time zone with `self.tenant` and
  `self.membership` set.
- `OperatorApiView`: operator endpoints; anyone who is not an operator (accounts.permissions.
  is_operator) gets 404, as on /ops/.

Writes call the same services as the console, with `actor=self.actor()`, so each change is in the
audit log as `api:<user> (token thp_<prefix>…)` with the token's user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from django.utils import timezone
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.authentication import TokenAuthentication
from accounts.api.errors import Forbidden, NotFound, exception_handler
from accounts.api.pagination import Cursor
from accounts.audit import Actor
from accounts.models import Membership, Tenant
from accounts.permissions import PERMISSIONS, allowed, is_operator
from accounts.selectors import tenant_for_user


class HasToken(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return request.auth is not None


class AlwaysJson(BaseContentNegotiation):
    """The API answers JSON whatever the Accept header says (never a 406), and reads JSON bodies."""

    def select_parser(self, request: Any, parsers: Any) -> Any:
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        return next((parser for parser in parsers if parser.media_type == content_type), None)

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        return (renderers[0], renderers[0].media_type)


class ApiView(GenericAPIView):  # type: ignore[type-arg]
    authentication_classes = [TokenAuthentication]
    permission_classes = [HasToken]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AlwaysJson
    throttle_classes: ClassVar[list[Any]] = []  # per token, in TokenAuthentication
    filter_backends: ClassVar[list[Any]] = []
    pagination_class: type[Cursor] | None = Cursor
    http_method_names = ["get", "post", "put", "patch", "delete", "head"]

    # A service's ValidationError field -> the request field it is reported as (the API's name).
    service_fields: ClassVar[dict[str, str]] = {}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # An id in the path (`<int:key_id>`) that no row can have (a bigint holds below 2**63): 404.
        if any(isinstance(value, int) and not 0 < value < 2**63 for value in kwargs.values()):
            raise NotFound("No such object.")

    def get_exception_handler(self) -> Callable[..., Response]:
        return exception_handler

    def actor(self) -> Actor:
        """Who a change is made by, for the services' `actor=`: the token's user, through the API."""
        return Actor.api(self.request.user, token=self.request.auth)

    def valid(self, serializer_class: type[serializers.Serializer], data: Any = None) -> dict[str, Any]:  # type: ignore[type-arg]
        """The request body (or `data`, e.g. the query parameters) checked by `serializer_class`:
        its validated data, or a 400 naming the first field at fault."""
        serializer = serializer_class(data=self.request.data if data is None else data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class TenantApiView(ApiView):
    # HTTP method -> the console's action (accounts.permissions.PERMISSIONS) it needs.
    actions: ClassVar[dict[str, str]] = {}
    tenant: Tenant
    membership: Membership

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method, action in cls.actions.items():
            if action not in PERMISSIONS:
                raise ValueError(f"{cls.__name__}: {action!r} is not in accounts.permissions.PERMISSIONS")
            if method not in cls.http_method_names:
                raise ValueError(f"{cls.__name__}: {method!r} is not an HTTP method it answers")
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(cls, method) and method not in cls.actions:
                raise ValueError(f"{cls.__name__}.{method} names no action in `actions`")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.tenant, self.membership = tenant_for_user(request.user, kwargs.get("slug", ""))
        method = (request.method or "").lower()
        action = self.actions.get("get" if method == "head" else method)
        if action is not None and not allowed(self.membership.role, action):
            raise Forbidden(
                f"Your role in this tenant ({self.membership.role}) may not do this ({action}).",
                code="forbidden",
            )
        timezone.activate(ZoneInfo(self.tenant.timezone))

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        timezone.deactivate()
        return super().finalize_response(request, response, *args, **kwargs)


class OperatorApiView(ApiView):
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if not is_operator(request.user):
            raise NotFound("No such object.")
        timezone.activate(ZoneInfo("UTC"))

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        timezone.deactivate()
        return super().finalize_response(request, response, *args, **kwargs)

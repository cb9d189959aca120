"""The /v1 API: thin async views over gateway.proxy."""

from __future__ import annotations

from typing import Any

import orjson
from adrf.views import APIView
from django.http import HttpResponse, StreamingHttpResponse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request

from config import clientip
from gateway import errors
from gateway.auth import authorize, key_from_headers
from gateway.dialects import Codec, Endpoint
from gateway.proxy import handle
from gateway.runtime import runtime


class FirstRenderer(BaseContentNegotiation):
    """Answers are always JSON or SSE: an unusual Accept header must not turn a call into a 406."""

    def select_parser(self, request: Any, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        return (renderers[0], renderers[0].media_type)


class GatewayView(APIView):
    # Who may call is decided by gateway.auth inside the request path, not by DRF's classes.
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []
    parser_classes: list[Any] = []
    content_negotiation_class = FirstRenderer
    # Each route answers one method (gateway/asgi.py refuses the others, OPTIONS included, with 405):
    # DRF's `Allow` header on every answer is built from these, so it names that method alone.
    http_method_names = ["get", "post"]

    async def async_dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        """adrf's dispatch, minus one thread hop per call.

        adrf runs `initial()` (negotiation, authentication, permissions, throttles) through
        sync_to_async; on the default thread-sensitive executor that serialises every call behind
        whatever the database thread is doing. With the classes above empty, `initial()` does no
        I/O, so it runs inline here (the bench profile showed the hop at ~4% of gateway CPU).
        """
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            self.initial(request, *args, **kwargs)
            method = request.method.lower()
            handler = getattr(self, method, None) if method in self.http_method_names else None
            if handler is None:
                self.http_method_not_allowed(request, *args, **kwargs)  # raises MethodNotAllowed
            else:
                response = await handler(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response


class DialectView(GatewayView):
    """A model call in one dialect: its codec (gateway/dialects/) and what the route does."""

    codec: Codec | None = None
    operation = ""

    async def post(self, request: Request) -> HttpResponse | StreamingHttpResponse:
        assert self.codec is not None
        return await handle(request._request, codec=self.codec, operation=self.operation)


class ModelsView(GatewayView):
    """The models the calling key may use (aliases included), in OpenAI's list shape."""

    async def get(self, request: Request) -> HttpResponse:
        headers = request._request.headers
        try:
            ip = clientip.from_meta(request._request.META)
            key = await runtime.authenticator.authenticate(
                key_from_headers(headers.get("authorization"), headers.get("x-api-key")), ip
            )
            authorize(key, ip)
        except errors.GatewayError as exc:
            return exc.response()
        catalog = await runtime.catalog.get()
        names = sorted(
            name
            for name in catalog.routes
            if key.model_allowed(catalog.routes[name].name) or key.model_allowed(name)
        )
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "tollhouse"} for name in names]
        return HttpResponse(orjson.dumps({"object": "list", "data": data}), content_type="application/json")


def view_for(endpoint: Endpoint) -> Any:
    if endpoint.codec is None:
        return ModelsView.as_view()
    return DialectView.as_view(codec=endpoint.codec, operation=endpoint.route.operation)

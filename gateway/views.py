"""The /v1 API: thin async views over gateway.proxy."""

from __future__ import annotations

from typing import Any

import orjson
from adrf.views import APIView
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request

from config import clientip
from gateway import errors, modellist
from gateway.auth import authorize, key_from_headers
from gateway.dialects import MODEL, Endpoint, codec_named
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


class ModelsView(GatewayView):
    """The models the calling key may use, aliases included (gateway/modellist.py): OpenAI's list,
    or Anthropic's (paged) for a client that sends `anthropic-version`."""

    async def get(self, request: Request, model: str | None = None) -> HttpResponse:
        anthropic = "anthropic-version" in request._request.headers
        try:
            key = await _caller(request)
            catalog = await runtime.catalog.get()
            entries = modellist.model_entries(catalog, key)
            if anthropic:
                body = modellist.anthropic_page(entries, request._request.GET)
            else:
                body = modellist.openai_list(entries)
        except errors.GatewayError as exc:
            return _error(exc, anthropic=anthropic)
        return HttpResponse(orjson.dumps(body), content_type="application/json")


class ModelView(GatewayView):
    """One model of that list, in the same shape: GET /v1/models/{model}."""

    async def get(self, request: Request, model: str | None = None) -> HttpResponse:
        anthropic = "anthropic-version" in request._request.headers
        # The ASGI handler passes no URL arguments: the id is the rest of the path (it may hold a /).
        name = request._request.path.removeprefix(MODEL.path.removesuffix("{model}"))
        try:
            key = await _caller(request)
            entry = modellist.model_entry(await runtime.catalog.get(), key, name)
        except errors.GatewayError as exc:
            return _error(exc, anthropic=anthropic)
        body = entry.anthropic() if anthropic else entry.openai()
        return HttpResponse(orjson.dumps(body), content_type="application/json")


async def _caller(request: Request) -> Any:
    headers = request._request.headers
    ip = clientip.from_meta(request._request.META)
    key = await runtime.authenticator.authenticate(
        key_from_headers(headers.get("authorization"), headers.get("x-api-key")), ip
    )
    authorize(key, ip)
    return key


def _error(error: errors.GatewayError, *, anthropic: bool) -> HttpResponse:
    return codec_named("anthropic_messages").error_response(error) if anthropic else error.response()


def dialect_view(endpoint: Endpoint) -> Any:
    """A model call in one dialect: its codec (gateway/dialects/) and what the route does.

    A plain async view, not a DRF one: with no authentication, permission, parser or throttle
    classes, DRF's dispatch only wrapped the request and negotiated a renderer that is never used,
    which the bench profile put at about 4 % of a call. The answer keeps the `Allow` header DRF
    gave it (the route's one method)."""
    codec, operation, method = endpoint.codec, endpoint.route.operation, endpoint.route.method
    assert codec is not None

    @csrf_exempt
    async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != method:  # reached through Django's handler (the ASGI one checks first)
            return codec.error_response(errors.method_not_allowed(request.method or "", method))
        response = await handle(request, codec=codec, operation=operation)
        response["Allow"] = method
        return response

    return view


def view_for(endpoint: Endpoint) -> Any:
    if endpoint.route is MODEL:
        return ModelView.as_view()
    if endpoint.codec is None:
        return ModelsView.as_view()
    return dialect_view(endpoint)

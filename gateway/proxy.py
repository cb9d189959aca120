"""The request path (DESIGN.md §3) for calls that reach a model: chat completions and embeddings.

    1 request id  2 authenticate  3 authorize  4 admit  5 route  6 call upstream  7 respond  8 settle

Step 4 (rate limits, concurrency, budgets, credits) is `_admit`, in gateway/governor.py's one
round trip; its settlement happens in `Call.settle`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import httpx
import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from billing.pricing import TOKENS_PER_PRICE_UNIT, PriceNanos, dollars_to_nanos
from gateway import bodylog, errors, governor, metrics
from gateway.auth import authorize, key_from_headers
from gateway.calls import CLIENT_CLOSED, Call, estimate_tokens
from gateway.catalog import DeploymentInfo, RouteInfo
from gateway.dialects import Codec
from gateway.dialects.fields import read_json_body
from gateway.providers import Adapter, ProviderError, StreamTranslator, adapter_for
from gateway.providers.base import UpstreamRequest, redact_credential
from gateway.runtime import runtime

logger = logging.getLogger(__name__)

BuildRequest = Callable[[Adapter, DeploymentInfo], UpstreamRequest]


def _timeout(deployment: DeploymentInfo) -> httpx.Timeout:
    provider = deployment.provider
    return httpx.Timeout(
        provider.read_timeout, connect=provider.connect_timeout, pool=provider.connect_timeout
    )


def transport_error(exc: BaseException) -> ProviderError:
    """Classify a failure to talk to the upstream. The message never names the upstream's address."""
    cause = exc.__cause__ or exc
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout) or isinstance(cause, asyncio.TimeoutError):
        return ProviderError(
            "The upstream provider timed out.", status=504, retryable=True, kind="upstream_timeout"
        )
    return ProviderError(
        "The upstream provider could not be reached or broke the connection.",
        status=502,
        retryable=True,
        kind="upstream_unreachable",
    )


def _as_gateway_error(error: ProviderError) -> errors.GatewayError:
    cls: type[errors.GatewayError] = {
        400: errors.BadRequest,
        429: errors.RateLimited,
        504: errors.UpstreamTimeout,
    }.get(error.status, errors.UpstreamFailed)
    headers = {"Retry-After": error.retry_after} if error.retry_after else None
    return cls(error.message, code=error.kind, headers=headers)


def _respond(call: Call, response: HttpResponse | StreamingHttpResponse) -> Any:
    response["X-Request-ID"] = call.public_request_id
    if call.ticket is not None:
        for name, value in call.ticket.headers.items():
            response[name] = value
        if call.ticket.capped is not None:
            response["x-tollhouse-budget-capped"] = str(call.ticket.capped)
    return response


async def _identify(call: Call, request: HttpRequest) -> None:
    """Steps 2 and the caller part of 3."""
    raw = key_from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"))
    # Identified first, so a refused call of a known key is still recorded against it.
    call.key = await runtime.authenticator.authenticate(raw, call.client_ip)
    call.end_user = call.key.end_user  # an end-user token's `sub`, recorded even if refused below
    authorize(call.key, call.client_ip)


async def _route(call: Call, model: str) -> RouteInfo:
    """Step 3 (model allowed) and 5 (which deployments, in which order)."""
    assert call.key is not None
    call.catalog = await runtime.catalog.get()
    route = call.catalog.route(model)
    if route is None:
        raise errors.NotFound(
            f"The model '{model}' does not exist or you do not have access to it.", param="model"
        )
    if not (call.key.model_allowed(route.name) or call.key.model_allowed(model)):
        caller = "API key" if call.key.id is not None else "end-user token"
        raise errors.PermissionDenied(
            f"This {caller} is not allowed to use the model '{model}'.",
            param="model",
            code="model_not_allowed",
        )
    if not route.deployments:
        raise errors.UpstreamFailed(
            f"No provider is currently available for the model '{model}'.", code="no_deployment"
        )
    return route


MAX_COST_HEADER = "x-tollhouse-max-cost"
MAX_COST_USD = Decimal(1_000_000)


def _max_cost(request: HttpRequest) -> int | None:
    """The client's own ceiling for this call, in nano-dollars (header in USD, e.g. `0.05`)."""
    raw = request.headers.get(MAX_COST_HEADER)
    if raw is None:
        return None
    invalid = errors.BadRequest(
        f"{MAX_COST_HEADER} must be an amount in USD between 0 and {MAX_COST_USD} with at most 9 "
        "decimal places, such as 0.05.",
        param=MAX_COST_HEADER,
        code="invalid_max_cost",
    )
    try:
        amount = Decimal(raw.strip())
    except InvalidOperation:
        raise invalid from None
    if not amount.is_finite() or amount < 0 or amount > MAX_COST_USD:
        raise invalid
    try:
        return dollars_to_nanos(amount)
    except ValueError:
        raise invalid from None


def _prices(call: Call, candidates: list[DeploymentInfo]) -> tuple[int, int]:
    """(input, output) nano-dollars per million tokens: the dearest of the deployments the call may
    reach, so the reservation is an upper bound wherever it lands."""
    assert call.catalog is not None
    input_price = output_price = 0
    for deployment in candidates:
        price: PriceNanos | None = call.catalog.price(deployment.upstream_model, call.started_at)
        if price is not None:
            input_price = max(input_price, price.input, price.cached_input)
            output_price = max(output_price, price.output)
    return input_price, output_price


def _output_tokens(body: dict[str, Any], route: RouteInfo) -> tuple[str, int]:
    """Which field limits the answer, and the most tokens one choice may write."""
    field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    asked = body.get(field)
    limit = route.max_output_tokens
    return field, min(asked, limit) if isinstance(asked, int) and asked > 0 else limit


async def _admit(
    call: Call, request: HttpRequest, route: RouteInfo, body: dict[str, Any]
) -> list[DeploymentInfo]:
    """Step 4: rate limits, concurrency, deployment quotas and the worst-case cost reserved against
    every hard budget and the credit balance, in one round trip. Returns the deployments to try.

    When what is left pays for the prompt but not for the longest answer, the call goes ahead with
    its output lowered to what it pays for (`x-tollhouse-budget-capped`), instead of a refusal."""
    key = call.key
    assert key is not None
    candidates = route.candidates()
    max_cost = _max_cost(request)
    subjects = governor.rate_subjects(key, call.end_user)
    deployments = [
        (d.id, *governor.deployment_counters(d.id), d.rpm_limit, d.tpm_limit)
        for d in candidates
        if d.rpm_limit or d.tpm_limit
    ]
    if deployments and len(deployments) != len(candidates):
        # A deployment without a quota always has room: only those ahead of it can be skipped.
        deployments = [
            (d.id, *governor.deployment_counters(d.id), d.rpm_limit, d.tpm_limit) for d in candidates
        ]
    pots = governor.budget_pots(key, call.end_user, call.started_at)
    if not (subjects or deployments or pots or max_cost is not None):
        return candidates  # nothing governs this call: no round trip
    prompt_cost = per_token = want = 0
    field = ""
    if pots or max_cost is not None:
        input_price, output_price = _prices(call, candidates)
        # Every token of a prompt is at least one byte of the request: an upper bound that needs no
        # tokenizer (it over-reserves for English text by about 4x; settlement corrects it).
        prompt_tokens = len(request.body)
        prompt_cost = math.ceil(prompt_tokens * input_price / TOKENS_PER_PRICE_UNIT)
        n = body.get("n")
        choices = n if isinstance(n, int) and n > 0 else 1
        if call.endpoint != "embeddings":
            # Output is capped per choice, so one more token of each costs `choices` tokens.
            field, want = _output_tokens(body, route)
            per_token = math.ceil(output_price * choices / TOKENS_PER_PRICE_UNIT)
    ticket = await runtime.governor.admit(
        governor.Request(
            request_id=call.request_id,
            subjects=subjects,
            deployments=deployments,
            pots=pots,
            prompt_cost=prompt_cost,
            per_token=per_token,
            want_tokens=want,
            max_cost=max_cost,
        )
    )
    call.ticket = ticket
    if ticket.capped is not None and field:
        body[field] = ticket.capped
    if ticket.deployment > 0:
        return candidates[ticket.deployment :]
    return candidates


def _builder(dialect: str, body: dict[str, Any], call: Call) -> BuildRequest:
    def build(adapter: Adapter, deployment: DeploymentInfo) -> UpstreamRequest:
        return adapter.passthrough_request(
            deployment=deployment, dialect=dialect, body=body, request=None, request_id=call.public_request_id
        )

    return build


async def handle(
    request: HttpRequest, *, codec: Codec, operation: str
) -> HttpResponse | StreamingHttpResponse:
    endpoint = codec.endpoint
    call = Call(request, endpoint=endpoint)
    response = await _handle(call, request, codec=codec, operation=operation)
    if call.key is None or not call.key.body_logging:  # the default: nothing kept
        return response
    try:
        body = request.body
    except RequestDataTooBig:  # answered 413 already; its body was never read
        body = b""
    return bodylog.capture_response(
        key=call.key, request_id=call.request_id, endpoint=endpoint, request_body=body, response=response
    )


async def _handle(
    call: Call, request: HttpRequest, *, codec: Codec, operation: str
) -> HttpResponse | StreamingHttpResponse:
    endpoint = codec.endpoint
    try:
        await _identify(call, request)
        body = read_json_body(request)
        inbound = codec.parse(body=body, headers=request.headers, operation=operation)
        model, call.prompt_chars = inbound.model, inbound.prompt_chars
        call.requested_model = model
        # An end-user token's `sub` wins over the body's `user` (validated above: storable, or absent).
        call.end_user = (call.key.end_user if call.key else "") or body.get("user") or ""
        route = await _route(call, model)
        call.candidates = await _admit(call, request, route, body)
        if endpoint == "embeddings":
            return await _forward(call, route, _builder(codec.name, body, call))
        build = _builder(codec.name, body, call)
        if body.get("stream"):
            wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await _forward_stream(call, route, build, client_wants_usage=wants_usage)
        return await _forward(call, route, build)
    except errors.GatewayError as exc:
        call.fail(exc)
        await call.settle()
        return _respond(call, codec.error_response(exc))
    except asyncio.CancelledError:
        # The client went away before the answer (Django cancels the view). The upstream call is
        # cancelled with it; the call is still recorded, with the prompt as far as it went.
        call.status, call.error_type = CLIENT_CLOSED, "client_disconnected"
        if call.deployment is not None and not call.usage.reported:
            call.usage.prompt_tokens = estimate_tokens(call.prompt_chars)
            call.usage.estimated = True
        runtime.spawn(call.settle())
        raise
    except Exception:
        logger.exception("request %s failed unexpectedly", call.request_id)
        error = errors.InternalError("The gateway failed to handle this request.")
        call.fail(error)
        await call.settle()
        return _respond(call, codec.error_response(error))


async def _attempts(call: Call, route: RouteInfo) -> AsyncIterator[tuple[Adapter, DeploymentInfo]]:
    for deployment in call.candidates if call.candidates is not None else route.candidates():
        adapter = adapter_for(deployment.provider.kind)
        if adapter is None:
            logger.error(
                "provider %s: no adapter for kind %r yet", deployment.provider.name, deployment.provider.kind
            )
            continue
        call.deployment = deployment
        call.attempts += 1
        if call.attempts > 1:
            metrics.upstream_retried(deployment.provider.name)
        yield adapter, deployment


def _no_attempt() -> errors.GatewayError:
    return errors.UpstreamFailed("No provider could serve this model.", code="no_adapter")


async def _forward(call: Call, route: RouteInfo, build: BuildRequest) -> HttpResponse:
    """Steps 6-8 for a JSON answer. A retryable failure moves on to the next deployment."""
    client = runtime.http()
    last: ProviderError | None = None
    async for adapter, deployment in _attempts(call, route):
        upstream = build(adapter, deployment)
        started = time.perf_counter_ns()
        last = None
        try:
            response = await client.post(
                upstream.url, content=upstream.content, headers=upstream.headers, timeout=_timeout(deployment)
            )
            if response.status_code >= 400:
                raise adapter.error(
                    status=response.status_code,
                    headers=dict(response.headers),
                    content=response.content,
                    credential=deployment.provider.credential,
                )
            answer = redact_credential(response.content, deployment.provider.credential)
            content, call.usage, call.served_model = adapter.passthrough_response(
                dialect="openai_chat", content=answer
            )
        except ProviderError as exc:
            last = exc
        except (TimeoutError, httpx.HTTPError, aiohttp.ClientError) as exc:
            last = transport_error(exc)
        finally:
            call.upstream_ns = (call.upstream_ns or 0) + time.perf_counter_ns() - started
        if last is not None:
            metrics.upstream_failed(deployment.provider.name, last.kind)
        if last is None:
            call.first_byte()
            await call.settle()
            return _respond(call, HttpResponse(content, content_type="application/json"))
        if not last.retryable:
            break
    raise _as_gateway_error(last) if last else _no_attempt()


async def _open_stream(
    call: Call, route: RouteInfo, build: BuildRequest
) -> tuple[Adapter, httpx.Response, int]:
    client = runtime.http()
    last: ProviderError | None = None
    async for adapter, deployment in _attempts(call, route):
        upstream = build(adapter, deployment)
        started = time.perf_counter_ns()
        request = client.build_request(
            "POST",
            upstream.url,
            content=upstream.content,
            headers=upstream.headers,
            timeout=_timeout(deployment),
        )
        try:
            response = await client.send(request, stream=True)
        except (TimeoutError, httpx.HTTPError, aiohttp.ClientError) as exc:
            last = transport_error(exc)
        else:
            if response.status_code < 400:
                return adapter, response, started
            try:
                content = await response.aread()
            except (TimeoutError, httpx.HTTPError, aiohttp.ClientError):
                content = b""
            finally:
                await response.aclose()
            last = adapter.error(
                status=response.status_code,
                headers=dict(response.headers),
                content=content,
                credential=deployment.provider.credential,
            )
        call.upstream_ns = (call.upstream_ns or 0) + time.perf_counter_ns() - started
        metrics.upstream_failed(deployment.provider.name, last.kind)
        if not last.retryable:
            break
    raise _as_gateway_error(last) if last else _no_attempt()


def sse_error(error: errors.GatewayError) -> bytes:
    """How a stream that already started says it broke: the SDKs raise on an `error` event. The
    client has its HTTP 200 by then, so that is the status the call is recorded with."""
    return b"data: " + orjson.dumps(error.body()) + b"\n\n"


async def _forward_stream(
    call: Call, route: RouteInfo, build: BuildRequest, *, client_wants_usage: bool
) -> StreamingHttpResponse:
    """Steps 6-8 for a stream. Errors before the first byte are ordinary HTTP errors."""
    call.streamed = True
    adapter, upstream, started = await _open_stream(call, route, build)
    assert call.deployment is not None  # _open_stream set it
    translator = adapter.passthrough_stream(
        dialect="openai_chat",
        client_wants_usage=client_wants_usage,
        credential=call.deployment.provider.credential,
    )
    response = StreamingHttpResponse(
        _relay(call, upstream, translator, started), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return _respond(call, response)


async def _relay(
    call: Call, upstream: httpx.Response, translator: StreamTranslator, started: int
) -> AsyncIterator[bytes]:
    try:
        async for data in upstream.aiter_raw():
            out = translator.feed(data)
            if out:
                call.first_byte()
                yield out
        tail = translator.finish()
        if tail:
            yield tail
        if not translator.done:
            raise ProviderError(
                "The upstream provider ended the stream early.",
                status=502,
                retryable=False,
                kind="upstream_stream_broken",
            )
    except ProviderError as exc:
        metrics.upstream_failed(call.deployment.provider.name if call.deployment else "", exc.kind)
        call.stream_broke()
        yield sse_error(_as_gateway_error(exc))
    except (TimeoutError, httpx.HTTPError, aiohttp.ClientError) as exc:
        error = transport_error(exc)
        metrics.upstream_failed(call.deployment.provider.name if call.deployment else "", error.kind)
        call.stream_broke()
        yield sse_error(_as_gateway_error(error))
    except (asyncio.CancelledError, GeneratorExit):
        call.status, call.error_type = CLIENT_CLOSED, "client_disconnected"
        raise
    finally:
        call.upstream_ns = (call.upstream_ns or 0) + time.perf_counter_ns() - started
        call.served_model = getattr(translator, "served_model", "") or call.served_model
        if translator.usage.reported:
            call.usage = translator.usage
        else:
            # The upstream never said (the stream broke or the client left): bill what was streamed.
            call.usage.prompt_tokens = estimate_tokens(call.prompt_chars)
            call.usage.completion_tokens = translator.chunks
            call.usage.estimated = True
        # Closing the upstream response cancels the upstream call; both must happen even while
        # this generator is being cancelled, so they run as their own task.
        runtime.spawn(_close_and_settle(call, upstream))


async def _close_and_settle(call: Call, upstream: httpx.Response) -> None:
    try:
        await upstream.aclose()
    except (TimeoutError, httpx.HTTPError, aiohttp.ClientError, OSError):
        logger.debug("upstream stream for %s closed with an error", call.request_id)
    await call.settle()

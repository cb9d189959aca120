"""The request path (DESIGN.md §3) for calls that reach a model, in every dialect.

    1 request id  2 authenticate  3 authorize  4 admit  5 route  6 call upstream  7 respond  8 settle

The client's codec (gateway/dialects/) reads the request and renders every answer and error; step 4
(rate limits, concurrency, budgets, credits) is `_admit`, in gateway/governor.py's one round trip;
steps 6 and 7 are gateway/executor.py's; settlement happens in `Call.settle`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from billing.pricing import TOKENS_PER_PRICE_UNIT, PriceNanos, dollars_to_nanos
from gateway import bodylog, cache, errors, governor
from gateway.auth import authorize, key_from_headers
from gateway.calls import CLIENT_CLOSED, Call, estimate_tokens
from gateway.catalog import DeploymentInfo, RouteInfo
from gateway.dialects import Codec, Inbound
from gateway.dialects.base import session_from_scope
from gateway.dialects.fields import read_json_body
from gateway.executor import Executor, candidates, count_tokens
from gateway.providers import Adapter
from gateway.providers.base import UpstreamRequest
from gateway.runtime import runtime

logger = logging.getLogger(__name__)

BuildRequest = Callable[[Adapter, DeploymentInfo], UpstreamRequest]


def _respond(call: Call, response: HttpResponse | StreamingHttpResponse) -> Any:
    response["X-Request-ID"] = call.public_request_id
    if call.ticket is not None:
        for name, value in call.ticket.headers.items():
            response[name] = value
        if call.ticket.capped is not None:
            response["x-tollhouse-budget-capped"] = str(call.ticket.capped)
    if call.cache_status:
        response[cache.HEADER] = call.cache_status
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


def _output_tokens(inbound: Inbound, route: RouteInfo) -> int:
    """The most tokens one choice may write."""
    asked = inbound.max_output_tokens
    limit = route.max_output_tokens
    return min(asked, limit) if isinstance(asked, int) and asked > 0 else limit


async def _admit(
    call: Call, request: HttpRequest, route: RouteInfo, inbound: Inbound
) -> list[DeploymentInfo]:
    """Step 4 and 5: the route's deployments in its strategy's order (those in cooldown last), then
    rate limits, concurrency, deployment quotas (a deployment at its cap is skipped; all at their
    caps: 429 with the soonest Retry-After; a least_busy route's pick) and the worst-case cost
    reserved against every hard budget and the credit balance, in one round trip. Returns the
    deployments to try.

    When what is left pays for the prompt but not for the longest answer, the call goes ahead with
    its output lowered to what it pays for (`x-tollhouse-budget-capped`), instead of a refusal."""
    key = call.key
    assert key is not None
    ordered, cooled = candidates(call, inbound, route, cooling=await runtime.breaker.cooling())
    max_cost = _max_cost(request)
    subjects = governor.rate_subjects(key, call.end_user)
    busy = route.strategy == "least_busy" and len(ordered) > 1
    deployments = [
        (d.id, *governor.deployment_counters(d.id), d.rpm_limit, d.tpm_limit)
        for d in ordered
        if d.rpm_limit or d.tpm_limit or busy
    ]
    if deployments and len(deployments) != len(ordered):
        # A deployment without a quota always has room: only those ahead of it can be skipped.
        deployments = [(d.id, *governor.deployment_counters(d.id), d.rpm_limit, d.tpm_limit) for d in ordered]
    pots = governor.budget_pots(key, call.end_user, call.started_at)
    if not (subjects or deployments or pots or max_cost is not None):
        return ordered + cooled  # nothing governs this call: no round trip
    prompt_cost = per_token = want = 0
    if pots or max_cost is not None:
        input_price, output_price = _prices(call, ordered + cooled)
        # Every token of a prompt is at least one byte of the request: an upper bound that needs no
        # tokenizer (it over-reserves for English text by about 4x; settlement corrects it).
        prompt_tokens = len(request.body)
        prompt_cost = math.ceil(prompt_tokens * input_price / TOKENS_PER_PRICE_UNIT)
        if inbound.output_field:  # embeddings write no output
            # Output is capped per choice, so one more token of each costs `choices` tokens.
            want = _output_tokens(inbound, route)
            per_token = math.ceil(output_price * inbound.n / TOKENS_PER_PRICE_UNIT)
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
            busy=busy,
        )
    )
    call.ticket = ticket
    if ticket.capped is not None and inbound.output_field:
        inbound.cap_output(ticket.capped)
    if busy:  # the least busy first, then the others (each checked against its caps if tried)
        chosen = ordered[ticket.deployment]
        return [chosen, *(d for d in ordered if d is not chosen), *cooled]
    if ticket.deployment > 0:  # those ahead of it are at their caps
        return ordered[ticket.deployment :] + cooled
    return ordered + cooled


async def handle(
    request: HttpRequest, *, codec: Codec, operation: str
) -> HttpResponse | StreamingHttpResponse:
    endpoint = codec.endpoint
    call = Call(request, endpoint=endpoint, ingress=codec.name)
    call.ledger = operation != "count_tokens"
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
    try:
        await _identify(call, request)
        body = read_json_body(request)
        inbound = codec.parse(body=body, headers=request.headers, operation=operation)
        call.requested_model, call.prompt_chars = inbound.model, inbound.prompt_chars
        call.session = inbound.session or session_from_scope(getattr(request, "scope", {}))
        # An end-user token's `sub` wins over the body's `user` (validated above: storable, or absent).
        call.end_user = (call.key.end_user if call.key else "") or inbound.user
        wish = cache.read_headers(request.headers)
        route = await _route(call, inbound.model)
        if operation == "count_tokens":
            return _respond(call, await count_tokens(call, inbound, route))
        policy = cache.policy(call, wish, inbound, route)
        if policy is not None:
            entry = await runtime.cache.lookup(policy)
            if entry is not None:
                return _respond(call, await cache.serve_hit(call, codec, inbound, entry))
            call.cache_status = cache.MISS
        call.candidates = await _admit(call, request, route, inbound)
        if policy is not None and (call.ticket is None or call.ticket.capped is None):
            # An answer lowered to what a budget pays for is not the answer the request asked for.
            call.cache_recorder = cache.Recorder(runtime.cache, policy)
        return _respond(call, await Executor(call, codec, inbound, route).run())
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

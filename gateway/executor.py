"""Step 6 and 7 of the request path: ONE executor for every upstream attempt, JSON or stream.

The candidates come from ONE ordering step, `candidates`: the route's deployments in its strategy's
order (gateway/routing.py: priority-then-weighted, least-latency, least-busy, cheapest), those in
cooldown apart, after the others. For each deployment the route offers (in admission's order), then
each of the route's fallback routes' deployments (ordered by the same step):
- the circuit breaker is asked first (gateway/breaker.py, shared through Redis): a deployment in
  cooldown is skipped, and every outcome is reported back to it;
- a fallback deployment with its own rpm / tpm caps is checked against them again
  (governor.deployment_wait) before it is tried: one at its cap is skipped;
- nothing left to try: 429 with the soonest Retry-After when deployments were skipped at their
  caps, 503 when they were all in cooldown (the last upstream failure, when one was tried);
- the adapter builds the request: the client's bytes untouched when the upstream speaks the client's
  dialect (pass-through), else translated through the canonical request;
- timeouts: connect, first byte (response headers and, for a stream, its first chunk), stream idle
  (the provider's read timeout), total per attempt, and the call's deadline across all attempts;
- a connect error, a timeout, 408, 429 or 5xx is retried on the same deployment with exponential
  backoff and full jitter, waiting at least an upstream's Retry-After (capped; one longer than
  TOLLHOUSE_UPSTREAM_RETRY_WAIT_MAX_SECONDS is left to the client), never past the deadline; then the next deployment; a prompt too long for the model (context_length_exceeded)
  goes to the next deployment or fallback route at once; any other refusal ends the call;
- nothing is retried once a byte has reached the client: a stream that breaks afterwards ends with
  its dialect's error event (and is billed for what was generated); every stream ends with its
  dialect's terminal event or error event.
Every attempt is recorded on the call (deployment, status, duration, error) for the usage row. A
client that goes away cancels the upstream call on every path (gateway/asgi.py cancels the view;
the stream's generator closes the upstream response).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
from django.http import HttpResponse, StreamingHttpResponse

from config.hot import hot
from gateway import canonical, errors, metrics, upstream
from gateway.calls import CLIENT_CLOSED, Call, estimate_tokens
from gateway.catalog import DeploymentInfo, RouteInfo
from gateway.dialects.base import Codec, Inbound, StreamRenderer
from gateway.providers import Adapter, ProviderError, StreamParser, StreamTranslator, adapter_for
from gateway.providers.base import UpstreamRequest, redact_credential
from gateway.routing import EXPECTED_OUTPUT_TOKENS
from gateway.runtime import runtime

logger = logging.getLogger(__name__)


# Failures worth another try of the same deployment: it may answer the next time.
RETRY_SAME = frozenset(
    {"upstream_unreachable", "upstream_timeout", "upstream_rate_limited", "upstream_error"}
)
# Failures that say nothing about the deployment's health (the request was refused on its merits).
NOT_THE_UPSTREAMS_FAULT = frozenset({"upstream_rejected", "context_length_exceeded"})


def transport_error(exc: BaseException) -> ProviderError:
    """Classify a failure to talk to the upstream. The message never names the upstream's address."""
    cause = exc.__cause__ or exc
    if isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError):
        return ProviderError(
            "The upstream provider timed out.", status=504, retryable=True, kind="upstream_timeout"
        )
    return ProviderError(
        "The upstream provider could not be reached or broke the connection.",
        status=502,
        retryable=True,
        kind="upstream_unreachable",
    )


TRANSPORT_ERRORS = (TimeoutError, aiohttp.ClientError, OSError)


def as_gateway_error(error: ProviderError) -> errors.GatewayError:
    cls: type[errors.GatewayError] = {
        400: errors.BadRequest,
        429: errors.RateLimited,
        504: errors.UpstreamTimeout,
    }.get(error.status, errors.UpstreamFailed)
    headers = {"Retry-After": error.retry_after} if error.retry_after else None
    return cls(error.message, code=error.kind, headers=headers)


def backoff_seconds(attempt: int, retry_after: str | None) -> float:
    """How long to wait before try number `attempt` + 1 of a deployment: full jitter over an
    exponentially growing window, and at least the upstream's (already capped) Retry-After."""
    window = min(
        hot.TOLLHOUSE_UPSTREAM_BACKOFF_MAX_SECONDS,
        hot.TOLLHOUSE_UPSTREAM_BACKOFF_SECONDS * 2 ** (attempt - 1),
    )
    wait = random.uniform(0, window)
    if retry_after is not None:
        wait = max(wait, float(retry_after))
    return wait


def candidates(
    call: Call, inbound: Inbound, route: RouteInfo, *, cooling: set[int]
) -> tuple[list[DeploymentInfo], list[DeploymentInfo]]:
    """The one candidate-ordering step: `route`'s deployments in its strategy's order, and apart
    those in cooldown. The call's route names the strategy on the usage row."""
    if not call.route_strategy:
        call.route_strategy = route.strategy
    catalog, at = call.catalog, call.started_at
    if inbound.output_field:
        asked = inbound.max_output_tokens
        output = asked if isinstance(asked, int) and asked > 0 else EXPECTED_OUTPUT_TOKENS
        output = min(output, route.max_output_tokens) * inbound.n
    else:
        output = 0  # embeddings write nothing
    return runtime.router.order(
        route,
        cooling=cooling,
        price_of=(lambda model: catalog.price(model, at)) if catalog is not None else None,
        prompt_tokens=estimate_tokens(call.prompt_chars),
        output_tokens=output,
    )


class Answer:
    """An upstream's successful answer, opened but (for a stream) not read beyond its first chunk."""

    def __init__(
        self, adapter: Adapter, deployment: DeploymentInfo, response: upstream.Response, started_ns: int
    ) -> None:
        self.adapter = adapter
        self.deployment = deployment
        self.response = response
        self.started_ns = started_ns
        self.first: bytes = b""  # a stream's first chunk, read within the first-byte timeout
        self.chunks: AsyncIterator[bytes] | None = None


class Executor:
    def __init__(self, call: Call, codec: Codec, inbound: Inbound, route: RouteInfo) -> None:
        self.call = call
        self.codec = codec
        self.inbound = inbound
        self.route = route
        self.deadline = time.monotonic() + hot.TOLLHOUSE_CALL_DEADLINE_SECONDS
        self._cooling: set[int] = set()

    # -- which deployments, in which order -----------------------------------------------------

    def _ordered(self, route: RouteInfo) -> list[DeploymentInfo]:
        available, cooled = candidates(self.call, self.inbound, route, cooling=self._cooling)
        return available + cooled

    def _deployments(self) -> Iterator[tuple[DeploymentInfo, bool]]:
        """(deployment, is a fallback beyond admission's pick) in the order to try."""
        call = self.call
        ordered = call.candidates if call.candidates is not None else self._ordered(self.route)
        yield from ((d, index > 0) for index, d in enumerate(ordered))
        catalog = call.catalog
        if catalog is None or call.key is None:
            return
        for name in self.route.fallbacks:
            route = catalog.route(name)
            if route is None or not call.key.model_allowed(route.name):
                continue
            yield from ((d, True) for d in self._ordered(route))

    def _adapter(self, deployment: DeploymentInfo) -> Adapter | None:
        adapter = adapter_for(deployment.provider.kind)
        if adapter is None:
            logger.error(
                "provider %s: no adapter for kind %r", deployment.provider.name, deployment.provider.kind
            )
            return None
        if not self.codec.translatable and self.codec.name not in adapter.native_dialects:
            return None
        return adapter

    def _build(self, adapter: Adapter, deployment: DeploymentInfo) -> UpstreamRequest:
        inbound = self.inbound
        request_id = self.call.public_request_id
        if self.codec.name in adapter.native_dialects:
            return adapter.passthrough_request(
                deployment=deployment,
                dialect=self.codec.name,
                body=inbound.body,
                request=inbound._canonical or inbound.header_request(),
                request_id=request_id,
            )
        return adapter.build_request(
            deployment=deployment, request=inbound.canonical(), request_id=request_id
        )

    # -- the attempt loop ----------------------------------------------------------------------

    async def run(self) -> HttpResponse | StreamingHttpResponse:
        last: ProviderError | None = None
        tried: set[int] = set()
        cooled: list[int] = []  # skipped: in cooldown
        waits: list[int] = []  # skipped at their caps: µs until each has room
        if self.route.fallbacks:
            self._cooling = await runtime.breaker.cooling()
        for deployment, fallback in self._deployments():
            if deployment.id in tried:
                continue
            tried.add(deployment.id)
            adapter = self._adapter(deployment)
            if adapter is None:
                continue
            if not await runtime.breaker.allow(deployment.id):
                self.call.attempted(
                    deployment_id=deployment.id,
                    status=0,
                    started_ns=time.perf_counter_ns(),
                    error_type="circuit_open",
                )
                cooled.append(deployment.id)
                continue
            wait = await self._wait(deployment) if fallback else 0
            if wait:
                self.call.attempted(
                    deployment_id=deployment.id,
                    status=0,
                    started_ns=time.perf_counter_ns(),
                    error_type="deployment_limit",
                )
                waits.append(wait)
                continue
            ticket = self.call.ticket
            if ticket is not None and ticket.busy is not None:
                await runtime.governor.busy_move(ticket, deployment.id)
            try:
                answer = await self._try(adapter, deployment)
            except ProviderError as exc:
                last = exc
                if exc.kind == "context_length_exceeded" or (
                    exc.retryable and time.monotonic() < self.deadline
                ):
                    continue
                break
            self.call.deployment = deployment
            self.call.upstream_format = adapter.wire
            if self.inbound.stream:
                return self._stream(answer)
            return await self._json(answer)
        if last is not None:
            raise as_gateway_error(last)
        if waits:
            retry = max(1, math.ceil(min(waits) / 1_000_000))
            raise errors.RateLimited(
                "Rate limit reached for every upstream deployment of this model. "
                f"Please try again in {retry}s.",
                type="requests",
                headers={"Retry-After": str(retry)},
            )
        if cooled:
            retry = max(1, math.ceil(runtime.breaker.cooldown_left(cooled)))
            raise errors.ServiceUnavailable(
                "Every provider of this model is cooling down after repeated failures. "
                f"Please try again in {retry}s.",
                code="deployments_unavailable",
                headers={"Retry-After": str(retry)},
            )
        raise errors.UpstreamFailed("No provider could serve this model.", code="no_deployment")

    async def _wait(self, deployment: DeploymentInfo) -> int:
        """0 if the deployment is within its own caps (its request then counted), else the µs
        until it has room."""
        ticket = self.call.ticket
        if ticket is None or not (deployment.rpm_limit or deployment.tpm_limit):
            return 0
        return await runtime.governor.deployment_wait(ticket, deployment)

    async def _try(self, adapter: Adapter, deployment: DeploymentInfo) -> Answer:
        """One deployment: its tries, with backoff between them. Raises the last failure."""
        call = self.call
        tries = 0
        while True:
            tries += 1
            call.attempts += 1
            call.deployment = deployment
            call.upstream_format = adapter.wire
            if call.attempts > 1:
                metrics.upstream_retried(deployment.provider.name)
            started = time.perf_counter_ns()
            try:
                answer = await self._open(adapter, deployment, started)
            except ProviderError as exc:
                call.attempted(
                    deployment_id=deployment.id,
                    status=exc.upstream_status,
                    started_ns=started,
                    error_type=exc.kind,
                )
                metrics.upstream_failed(deployment.provider.name, exc.kind)
                if exc.kind not in NOT_THE_UPSTREAMS_FAULT:
                    await runtime.breaker.record(deployment.id, ok=False)
                if not exc.retryable or exc.kind not in RETRY_SAME or tries > hot.TOLLHOUSE_UPSTREAM_RETRIES:
                    raise
                if exc.retry_after and float(exc.retry_after) > hot.TOLLHOUSE_UPSTREAM_RETRY_WAIT_MAX_SECONDS:
                    raise  # the client waits it out itself, with the Retry-After passed on
                wait = backoff_seconds(tries, exc.retry_after)
                if time.monotonic() + wait >= self.deadline:
                    raise
                await asyncio.sleep(wait)
                continue
            await runtime.breaker.record(deployment.id, ok=True)
            # Time to first byte (the answer's head; a stream's first chunk): least_latency's measure.
            runtime.router.latency.observe(deployment.id, (time.perf_counter_ns() - started) // 1000)
            return answer

    async def _open(self, adapter: Adapter, deployment: DeploymentInfo, started: int) -> Answer:
        """Send the request; wait for the answer's head (and a stream's first chunk) within the
        first-byte timeout. An HTTP error answer is read and turned into a ProviderError."""
        provider = deployment.provider
        request = self._build(adapter, deployment)
        first_byte = min(provider.first_byte_timeout, max(self.deadline - time.monotonic(), 0.001))
        response: upstream.Response | None = None
        try:
            async with asyncio.timeout(first_byte):
                response = await runtime.http().send(
                    request, connect_timeout=provider.connect_timeout, read_timeout=provider.read_timeout
                )
                if response.status >= 400:
                    content = await response.read()
                    error = adapter.error(
                        status=response.status,
                        headers=upstream.lower_headers(response),
                        content=content,
                        credential=provider.credential,
                    )
                    error.upstream_status = response.status
                    raise error
                answer = Answer(adapter, deployment, response, started)
                if self.inbound.stream:
                    answer.chunks = response.content.iter_any()
                    answer.first = await self._first_chunk(answer.chunks)
        except ProviderError:
            if response is not None:
                upstream.close(response)
            raise
        except TRANSPORT_ERRORS as exc:
            if response is not None:
                upstream.close(response)
            error = transport_error(exc)
            error.upstream_status = response.status if response is not None else 0
            raise error from None
        except BaseException:
            if response is not None:
                upstream.close(response)
            raise
        return answer

    @staticmethod
    async def _first_chunk(chunks: AsyncIterator[bytes]) -> bytes:
        async for chunk in chunks:
            if chunk:
                return chunk
        return b""

    # -- JSON ----------------------------------------------------------------------------------

    async def _json(self, answer: Answer) -> HttpResponse:
        call, adapter, deployment = self.call, answer.adapter, answer.deployment
        credential = deployment.provider.credential
        try:
            remaining = max(self.deadline - time.monotonic(), 0.001)
            async with asyncio.timeout(min(deployment.provider.total_timeout, remaining)):
                raw = await answer.response.read()
            content = redact_credential(raw, credential)
            if self.codec.name in adapter.native_dialects:
                body, call.usage, call.served_model = adapter.passthrough_response(
                    dialect=self.codec.name, content=content
                )
                if call.cache_recorder is not None:
                    # The cache keeps the canonical answer: the client's bytes read once more.
                    try:
                        call.cache_recorder.answer(adapter.parse_response(content=content))
                    except ProviderError:
                        call.cache_recorder.broken = True
            else:
                response = adapter.parse_response(content=content)
                call.usage, call.served_model = response.usage, response.model
                body = self.codec.render_response(response, inbound=self.inbound)
                if call.cache_recorder is not None:
                    call.cache_recorder.answer(response)
        except TRANSPORT_ERRORS as exc:
            error = transport_error(exc)
            self._failed_after_open(answer, error)
            raise as_gateway_error(error) from None
        except ProviderError as exc:
            self._failed_after_open(answer, exc)
            raise as_gateway_error(exc) from None
        finally:
            upstream.close(answer.response)
        call.attempted(
            deployment_id=deployment.id, status=answer.response.status, started_ns=answer.started_ns
        )
        call.first_byte()
        await call.settle_soon()
        if call.cache_recorder is not None:
            await call.cache_recorder.keep(
                served_model=call.served_model, priced_as=deployment.upstream_model
            )
        return HttpResponse(body, content_type="application/json")

    def _failed_after_open(self, answer: Answer, error: ProviderError) -> None:
        self.call.attempted(
            deployment_id=answer.deployment.id,
            status=answer.response.status,
            started_ns=answer.started_ns,
            error_type=error.kind,
        )
        metrics.upstream_failed(answer.deployment.provider.name, error.kind)

    # -- streams -------------------------------------------------------------------------------

    def _stream(self, answer: Answer) -> StreamingHttpResponse:
        self.call.streamed = True
        if self.codec.name in answer.adapter.native_dialects:
            translator = answer.adapter.passthrough_stream(
                dialect=self.codec.name,
                client_wants_usage=self.inbound.client_wants_usage,
                credential=answer.deployment.provider.credential,
            )
            body = Relay(self, answer, translator=translator).run()
            content_type = "text/event-stream; charset=utf-8"
        else:
            renderer = self.codec.stream_renderer(
                inbound=self.inbound, request_id=self.call.public_request_id
            )
            parser = answer.adapter.stream_parser(credential=answer.deployment.provider.credential)
            body = Relay(self, answer, parser=parser, renderer=renderer).run()
            content_type = renderer.content_type
        response = StreamingHttpResponse(body, content_type=content_type)
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


class Relay:
    """One stream, from the upstream's first chunk to the dialect's terminal (or error) event."""

    def __init__(
        self,
        executor: Executor,
        answer: Answer,
        *,
        translator: StreamTranslator | None = None,
        parser: StreamParser | None = None,
        renderer: StreamRenderer | None = None,
    ) -> None:
        self.executor = executor
        self.call = executor.call
        self.answer = answer
        self.translator = translator
        self.parser = parser
        self.renderer = renderer
        self.usage: canonical.Usage | None = None
        self.served_model = ""
        self.status = answer.response.status
        self.error_kind = ""
        # A miss the response cache waits for (gateway/cache.py): the canonical events of the answer.
        # A pass-through stream is read a second time, by the adapter's parser, for them.
        self.recorder = self.call.cache_recorder
        self.tee: StreamParser | None = None
        if self.recorder is not None and translator is not None:
            self.tee = answer.adapter.stream_parser(credential=answer.deployment.provider.credential)

    def _events(self, events: list[canonical.StreamEvent]) -> bytes:
        assert self.renderer is not None
        out = []
        for event in events:
            if isinstance(event, canonical.Start):
                self.served_model = event.model or self.served_model
                if event.usage is not None:
                    self.usage = event.usage
            elif isinstance(event, canonical.UsageUpdate):
                self.usage = event.usage
            out.append(self.renderer.render(event))
        if self.recorder is not None:
            self.recorder.add(events)
        return b"".join(out)

    def _feed(self, data: bytes) -> bytes:
        if self.translator is not None:
            out = self.translator.feed(data)
            self._tee(data)
            return out
        assert self.parser is not None
        return self._events(self.parser.feed(data))

    def _tee(self, data: bytes | None) -> None:
        """The pass-through stream's canonical events, for the cache (None: the end of the body)."""
        if self.tee is None or self.recorder is None:
            return
        try:
            self.recorder.add(self.tee.feed(data) if data is not None else self.tee.finish())
        except ProviderError:
            self.recorder.broken, self.tee = True, None

    def _finish(self) -> bytes:
        """The end of the upstream's body: what is left, then the terminal event, or raise if the
        upstream never ended its answer properly."""
        if self.translator is not None:
            tail = self.translator.finish()
            if not self.translator.done:
                raise _broken()
            self._tee(None)
            return tail
        assert self.parser is not None and self.renderer is not None
        tail = self._events(self.parser.finish())
        if not self.parser.done:
            raise _broken()
        return tail + self.renderer.terminal()

    def _error(self, error: ProviderError) -> bytes:
        self.error_kind = error.kind
        metrics.upstream_failed(self.answer.deployment.provider.name, error.kind)
        self.call.stream_broke()
        gateway_error = as_gateway_error(error)
        if self.renderer is not None:
            return self.renderer.error(gateway_error)
        return self.executor.codec.stream_error(gateway_error) + self.executor.codec.passthrough_terminal()

    async def run(self) -> AsyncIterator[bytes]:
        answer, call = self.answer, self.call
        provider = answer.deployment.provider
        chunks = answer.chunks
        assert chunks is not None
        end = min(time.monotonic() + provider.total_timeout, self.executor.deadline)
        keepalive = hot.TOLLHOUSE_STREAM_KEEPALIVE_SECONDS
        try:
            try:
                out = self._feed(answer.first) if answer.first else b""
                if out:
                    call.first_byte()
                    yield out
                while True:
                    left = end - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    # Read in this task under a timeout, not in a task of its own per chunk (the bench
                    # profile put that task and its wait at ~12 % of a stream): aiohttp's read keeps
                    # what arrives in its buffer, so a read cut short by the keep-alive loses nothing.
                    waited = asyncio.timeout(min(keepalive, left))
                    try:
                        async with waited:
                            data = await anext(chunks, b"")
                    except TimeoutError:
                        if not waited.expired():
                            raise  # the upstream read's own timeout
                        ping = self.renderer.keepalive() if self.renderer is not None else b""
                        if ping:
                            yield ping
                        continue
                    if not data:
                        break
                    out = self._feed(data)
                    if out:
                        call.first_byte()
                        yield out
                tail = self._finish()
                if self.recorder is not None:
                    # Complete as the upstream sent it: kept before the last chunk goes out, so the
                    # client's next call finds it.
                    await self.recorder.keep(
                        served_model=self.served_model or getattr(self.translator, "served_model", ""),
                        priced_as=answer.deployment.upstream_model,
                    )
                yield tail
            except ProviderError as exc:
                yield self._error(exc)
            except TRANSPORT_ERRORS as exc:
                yield self._error(transport_error(exc))
        except (asyncio.CancelledError, GeneratorExit):
            call.status, call.error_type = CLIENT_CLOSED, "client_disconnected"
            self.error_kind = "client_disconnected"
            raise
        finally:
            self._account()
            # Closing the upstream response cancels the upstream call; both must happen even while
            # this generator is being cancelled, so they run as their own task.
            runtime.spawn(_close_and_settle(call, answer.response))

    def _account(self) -> None:
        call = self.call
        call.attempted(
            deployment_id=self.answer.deployment.id,
            status=self.status,
            started_ns=self.answer.started_ns,
            error_type=self.error_kind,
        )
        source: Any = self.translator if self.translator is not None else self.parser
        call.served_model = (
            getattr(self.translator, "served_model", "") or self.served_model or call.served_model
        )
        usage = self.translator.usage if self.translator is not None else self.usage
        if (usage is not None and usage.reported and usage.completion_tokens) or (
            usage is not None and usage.reported and not self.error_kind
        ):
            call.usage = usage
        else:
            # The upstream never said all of it (the stream broke or the client left): bill what was
            # streamed, with the prompt as reported or estimated.
            call.usage = canonical.Usage(
                prompt_tokens=usage.prompt_tokens
                if usage and usage.prompt_tokens
                else estimate_tokens(call.prompt_chars),
                cached_tokens=usage.cached_tokens if usage else 0,
                cache_write_tokens=usage.cache_write_tokens if usage else 0,
                completion_tokens=max(getattr(source, "chunks", 0), usage.completion_tokens if usage else 0),
                estimated=True,
            )


def _broken() -> ProviderError:
    return ProviderError(
        "The upstream provider ended the stream early.",
        status=502,
        retryable=False,
        kind="upstream_stream_broken",
    )


async def _close_and_settle(call: Call, response: upstream.Response) -> None:
    upstream.close(response)
    await call.settle()


def sse_error(error: errors.GatewayError) -> bytes:
    return b"data: " + orjson.dumps(error.body()) + b"\n\n"


async def count_tokens(call: Call, inbound: Inbound, route: RouteInfo) -> HttpResponse:
    """`/v1/messages/count_tokens`: the prompt's input tokens, from the first deployment whose
    upstream counts them (Anthropic's own endpoint), else an estimate: one token per 4 characters of
    the prompt's text, tool names, descriptions and schemas (gateway.calls.estimate_tokens). Free:
    no admission, no usage row (`call.ledger` is off)."""
    request = inbound.canonical()
    for deployment in candidates(call, inbound, route, cooling=set())[0]:
        adapter = adapter_for(deployment.provider.kind)
        if adapter is None:
            continue
        request_up = adapter.count_tokens_request(
            deployment=deployment, request=request, request_id=call.public_request_id
        )
        if request_up is None:
            continue
        provider = deployment.provider
        try:
            async with asyncio.timeout(provider.first_byte_timeout):
                response = await runtime.http().send(
                    request_up,
                    connect_timeout=provider.connect_timeout,
                    read_timeout=provider.first_byte_timeout,
                )
                try:
                    content = await response.read()
                finally:
                    upstream.close(response)
            if response.status < 400:
                tokens = adapter.parse_count_tokens(content=content)
                return HttpResponse(orjson.dumps({"input_tokens": tokens}), content_type="application/json")
            logger.info(
                "provider %s could not count tokens (HTTP %s); estimating", provider.name, response.status
            )
        except ProviderError as exc:
            logger.info("provider %s could not count tokens (%s); estimating", provider.name, exc.kind)
        except TRANSPORT_ERRORS as exc:
            logger.info(
                "provider %s could not count tokens (%s); estimating", provider.name, type(exc).__name__
            )
        break
    schemas = sum(len(orjson.dumps(tool.parameters)) for tool in request.tools)
    tokens = estimate_tokens(request.prompt_chars + schemas)
    return HttpResponse(orjson.dumps({"input_tokens": tokens}), content_type="application/json")

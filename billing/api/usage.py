"""/api/v1/tenants/<slug>/usage/...: a tenant's usage, read as the console reads it.

- `usage/series/`: the overview's series (billing/overview.py) for the overview's range filter
  (`range` 24h, 7d, 30d, or `first`/`last` local days): per bucket (hours up to 48 h, else days,
  in the tenant's time zone) requests, errors by class, tokens, cost, latency percentiles.
- `usage/calls/`: raw calls with the usage explorer's filters and keyset pages
  (billing.selectors.usage_page); `usage/calls/<id>/`: one call.
- `usage.csv`: the explorer's CSV export, streamed (billing.selectors.usage_csv_chunks, one keyset
  query per chunk, memory flat whatever the range), as the console's usage.csv.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import TenantApiView
from accounts.api.errors import BadRequest, NotFound
from accounts.api.fields import text_field, usd_field
from accounts.api.pagination import KEYSET_PARAMETERS, keyset_limit, keyset_page_serializer, keyset_response
from billing import overview, selectors
from billing.models import ERROR_CLASSES, UsageRecord

TAGS = ["usage"]
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 1, 1)


class RangeFilterSerializer(serializers.Serializer):  # type: ignore[type-arg]
    range = serializers.ChoiceField(
        choices=[*overview.PRESETS, "custom"],
        required=False,
        help_text="24h, 7d or 30d up to now, or custom (`first` to `last`); default 7d, or custom when "
        "both days are given.",
    )
    first = serializers.DateField(required=False, help_text="First local day of a custom range.")
    last = serializers.DateField(required=False, help_text="Last local day of a custom range (included).")

    def validate_first(self, value: date) -> date:
        return _in_years(value)

    def validate_last(self, value: date) -> date:
        return _in_years(value)


def _in_years(value: date) -> date:
    if not EARLIEST <= value <= LATEST:
        raise serializers.ValidationError("Choose a day between 2000 and 2100.")
    return value


class CallFilterSerializer(RangeFilterSerializer):
    key = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1, help_text="A key's id.")
    model = text_field(200, required=False, help_text="The requested model, exactly.")
    end_user = text_field(200, required=False)
    status = serializers.ChoiceField(choices=list(selectors.STATUS_CLASSES), required=False)


def _span(view: TenantApiView, data: dict[str, Any]) -> overview.Range:
    preset = data.get("range") or ("custom" if data.get("first") and data.get("last") else "7d")
    try:
        return overview.overview_range(
            tenant=view.tenant, preset=preset, first_day=data.get("first"), last_day=data.get("last")
        )
    except overview.RangeError as exc:
        raise BadRequest(str(exc), field="first" if preset == "custom" else "range") from None


def _call_filter(view: TenantApiView, request: Request) -> selectors.UsageFilter:
    data = view.valid(CallFilterSerializer, data=request.query_params)
    span = _span(view, data)
    key = data.get("key")
    if key is not None and not any(k.pk == key for k in selectors.tenant_keys(tenant=view.tenant)):
        raise BadRequest("No such key in this tenant.", field="key")
    return selectors.UsageFilter(
        start=span.start,
        end=span.end,
        api_key_id=key,
        model=data.get("model") or "",
        end_user=data.get("end_user") or "",
        status_class=data.get("status") or "",
    )


def _query_parameters(serializer: type[serializers.Serializer]) -> list[OpenApiParameter]:  # type: ignore[type-arg]
    return [OpenApiParameter(name, field_type(field)) for name, field in serializer().fields.items()]


def field_type(field: serializers.Field) -> Any:  # type: ignore[type-arg]
    if isinstance(field, serializers.ChoiceField):
        return {"type": "string", "enum": list(field.choices)}
    if isinstance(field, serializers.DateField):
        return {"type": "string", "format": "date"}
    if isinstance(field, serializers.IntegerField):
        return {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    return {"type": "string", "maxLength": 200}


# --- series -------------------------------------------------------------------------------------------


def _measure(help_text: str = "") -> serializers.DecimalField:
    """A time or a speed (not money, which is `usd_field`): a JSON number with one decimal, rounded
    once here from the histogram's interpolation, never carried as a binary float."""
    return serializers.DecimalField(
        max_digits=16, decimal_places=1, coerce_to_string=False, allow_null=True, help_text=help_text
    )


class Percentiles(serializers.Serializer):  # type: ignore[type-arg]
    p50 = _measure("Milliseconds.")
    p95 = _measure("Milliseconds.")
    p99 = _measure("Milliseconds.")


class ErrorCountsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        return {name.removeprefix("errors_"): serializers.IntegerField() for name in ERROR_CLASSES}


class SeriesBucketSerializer(serializers.Serializer):  # type: ignore[type-arg]
    start = serializers.DateTimeField(help_text="The bucket's start, in the tenant's time zone.")
    requests = serializers.IntegerField()
    errors = ErrorCountsSerializer()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = usd_field("USD.")
    latency_ms = Percentiles()
    ttft_ms = Percentiles(help_text="Time to first token (streams).")
    tokens_per_second = _measure("Output speed of completed streams (completion tokens per second).")


class SeriesSerializer(serializers.Serializer):  # type: ignore[type-arg]
    range = serializers.CharField()
    resolution = serializers.ChoiceField(choices=["hour", "day"])
    time_zone = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    total_cost = usd_field("USD over the range.")
    total_requests = serializers.IntegerField()
    buckets = SeriesBucketSerializer(many=True)


def _percentiles(values: tuple[float | None, float | None, float | None]) -> dict[str, float | None]:
    return dict(zip(("p50", "p95", "p99"), values, strict=True))


class UsageSeriesView(TenantApiView):
    actions = {"get": "overview.view"}
    pagination_class = None

    @extend_schema(
        operation_id="usage_series",
        tags=TAGS,
        parameters=_query_parameters(RangeFilterSerializer),
        responses=SeriesSerializer,
        description="The overview's series over a range, from the hourly rollups.",
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        span = _span(self, self.valid(RangeFilterSerializer, data=request.query_params))
        traffic = overview.traffic_series(tenant=self.tenant, span=span)
        speeds = overview.latency_series(tenant=self.tenant, span=span)
        buckets = [
            {
                "start": bucket.start,
                "requests": bucket.requests,
                "errors": {name.removeprefix("errors_"): count for name, count in bucket.errors.items()},
                "prompt_tokens": bucket.prompt_tokens,
                "completion_tokens": bucket.completion_tokens,
                "cost": bucket.cost,
                "latency_ms": _percentiles(speed.latency),
                "ttft_ms": _percentiles(speed.ttft),
                "tokens_per_second": speed.tokens_per_second,
            }
            for bucket, speed in zip(traffic, speeds, strict=True)
        ]
        zone = ZoneInfo(self.tenant.timezone)
        data = {
            "range": span.preset,
            "resolution": span.resolution,
            "time_zone": self.tenant.timezone,
            "start": span.start.astimezone(zone),
            "end": span.end.astimezone(zone),
            "total_cost": sum((bucket.cost for bucket in traffic), start=0),
            "total_requests": sum(bucket.requests for bucket in traffic),
            "buckets": buckets,
        }
        return Response(SeriesSerializer(data).data)


# --- raw calls ----------------------------------------------------------------------------------------


class UsageCallSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    cost = usd_field("USD.")
    latency_ms = serializers.DecimalField(max_digits=12, decimal_places=3, coerce_to_string=True)
    ttft_ms = serializers.DecimalField(
        max_digits=12, decimal_places=3, coerce_to_string=True, allow_null=True
    )
    upstream_latency_ms = serializers.DecimalField(
        max_digits=12, decimal_places=3, coerce_to_string=True, allow_null=True
    )
    overhead_ms = serializers.DecimalField(max_digits=12, decimal_places=3, coerce_to_string=True)
    api_key = serializers.IntegerField(source="api_key_id", allow_null=True)
    client_ip = serializers.CharField(allow_null=True)

    class Meta:
        model = UsageRecord
        fields = [
            "id",
            "request_id",
            "client_request_id",
            "created_at",
            "api_key",
            "end_user",
            "endpoint",
            "requested_model",
            "served_model",
            "provider",
            "prompt_tokens",
            "cached_tokens",
            "completion_tokens",
            "cost",
            "status",
            "error_type",
            "streamed",
            "cache_hit",
            "attempts",
            "latency_ms",
            "ttft_ms",
            "upstream_latency_ms",
            "overhead_ms",
            "client_ip",
        ]
        read_only_fields = fields


UsageCallPageSerializer = keyset_page_serializer("UsageCallPageSerializer", UsageCallSerializer)


class UsageCallListView(TenantApiView):
    actions = {"get": "usage.view"}
    pagination_class = None

    @extend_schema(
        operation_id="usage_calls",
        tags=TAGS,
        parameters=[*_query_parameters(CallFilterSerializer), *KEYSET_PARAMETERS],
        responses=UsageCallPageSerializer,
        description="Raw calls, newest first, with the usage explorer's filters; keyset pages.",
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        query = _call_filter(self, request)
        size = keyset_limit(request)
        try:
            page = selectors.usage_page(
                tenant=self.tenant, query=query, after=request.query_params.get("cursor", ""), size=size
            )
        except selectors.BadCursor as exc:
            raise BadRequest(str(exc), field="cursor") from None
        return keyset_response(request, UsageCallSerializer(page.rows, many=True).data, page.next_cursor)


class UsageCallDetailView(TenantApiView):
    actions = {"get": "usage.view"}
    pagination_class = None

    @extend_schema(operation_id="usage_call", tags=TAGS, responses=UsageCallSerializer)
    def get(self, request: Request, record_id: int, **kwargs: Any) -> Response:
        record = selectors.usage_record_for(tenant=self.tenant, record_id=record_id)
        if record is None:
            raise NotFound("No such object.")
        return Response(UsageCallSerializer(record).data)


# --- CSV ----------------------------------------------------------------------------------------------


class UsageCsvView(TenantApiView):
    actions = {"get": "usage.export"}
    pagination_class = None

    @extend_schema(
        operation_id="usage_csv",
        tags=TAGS,
        parameters=_query_parameters(CallFilterSerializer),
        responses={
            (200, "text/csv"): OpenApiResponse(response=str, description="The calls as CSV, streamed.")
        },
        description="The filtered calls as CSV, oldest first, streamed (as the console's usage.csv).",
    )
    def get(self, request: Request, **kwargs: Any) -> StreamingHttpResponse:
        query = _call_filter(self, request)
        chunks = selectors.usage_csv_chunks(tenant=self.tenant, query=query)

        def next_chunk() -> str | None:
            return next(chunks, None)

        async def stream() -> AsyncIterator[str]:
            # Each chunk's keyset query on a worker thread, as the console's export does: the ASGI
            # server sends each chunk as it comes, never the whole file from memory.
            while True:
                chunk = await sync_to_async(next_chunk)()
                if chunk is None:
                    return
                yield chunk

        stamp = timezone.now().astimezone(ZoneInfo(self.tenant.timezone))
        response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="usage-{self.tenant.slug}-{stamp:%Y%m%d-%H%M}.csv"'
        )
        response["Cache-Control"] = "no-store"
        return response

"""/api/v1/prices/: upstream model prices with effective dates, for operators (`OperatorApiView`).

The same services as /ops/prices/ (billing.services.model_price_schedule, model_price_delete): a
price is in force from its `effective_from`, which must be now or later (omitted: now); a price in
force never changes; a scheduled one may be changed or withdrawn until it takes effect. Each answer
says whether a price is `in_force`, `scheduled` or `past`. Mounted with the rest of the catalog's
operator endpoints (gateway/api/urls.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import OperatorApiView
from accounts.api.fields import text_field, usd_field
from billing import services
from billing.models import ModelPrice
from billing.selectors import prices_for_models


def _price_field(help_text: str, *, required: bool = True) -> serializers.DecimalField:
    extra: dict[str, Any] = {} if required else {"required": False, "allow_null": True, "default": None}
    return usd_field(help_text, min_value=Decimal(0), max_value=services.MAX_PRICE, **extra)


def _printable(value: str) -> None:
    if not value.isprintable():
        raise serializers.ValidationError("Use printable characters only.")


def model_id(help_text: str) -> serializers.CharField:
    """A model id: one line of printable text (a lone surrogate, which JSON's "\\ud800" makes,
    could not even be stored)."""
    field = text_field(200, help_text=help_text)
    field.validators.append(_printable)
    return field


class PriceSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    state = serializers.SerializerMethodField()
    input_per_mtok = usd_field("USD per million input tokens.", read_only=True)
    cached_input_per_mtok = usd_field("USD per million input tokens read from the cache.", read_only=True)
    output_per_mtok = usd_field("USD per million output tokens.", read_only=True)
    cache_write_per_mtok = usd_field("Cache writes; null: as input.", read_only=True, allow_null=True)
    cache_write_1h_per_mtok = usd_field("One-hour cache writes; null: as cache writes.", read_only=True,
                                        allow_null=True)  # fmt: skip

    class Meta:
        model = ModelPrice
        fields = ["id", "model", "effective_from", "state", *services.PRICE_FIELDS, "created_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["in_force", "scheduled", "past"]))
    def get_state(self, price: ModelPrice) -> str:
        now = self.context.get("now") or timezone.now()
        if price.effective_from > now:
            return "scheduled"
        in_force = self.context.get("in_force")
        if in_force is None:
            view = prices_for_models([price.model], at=now)[price.model]
            in_force = {price.model: view.in_force.pk if view.in_force else None}
        return "in_force" if in_force.get(price.model) == price.pk else "past"


class PriceWriteSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = model_id("The upstream model id, as a deployment names it.")
    effective_from = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="Now or later; omitted or null: now."
    )
    input_per_mtok = _price_field("USD per million input tokens.")
    cached_input_per_mtok = _price_field("USD per million input tokens read from the cache.")
    output_per_mtok = _price_field("USD per million output (and reasoning) tokens.")
    cache_write_per_mtok = _price_field("Cache writes; null: as input.", required=False)
    cache_write_1h_per_mtok = _price_field("One-hour cache writes; null: as cache writes.", required=False)


class PriceFilters(serializers.Serializer):  # type: ignore[type-arg]
    model = text_field(200, required=False, help_text="Only this upstream model's prices.")


def _context(prices: list[ModelPrice]) -> dict[str, Any]:
    now = timezone.now()
    views = prices_for_models({price.model for price in prices}, at=now)
    return {"now": now, "in_force": {m: v.in_force.pk if v.in_force else None for m, v in views.items()}}


def _price(price_id: int) -> ModelPrice:
    price: ModelPrice | None = ModelPrice.objects.filter(pk=price_id).first()
    if price is None:
        raise Http404("No such price.")
    return price


class PriceListView(OperatorApiView):
    @extend_schema(operation_id="prices_list", tags=["prices"], parameters=[PriceFilters],
                   responses=PriceSerializer(many=True))  # fmt: skip
    def get(self, request: Request, **kwargs: Any) -> Response:
        filters = self.valid(PriceFilters, data=request.query_params)
        query = ModelPrice.objects.all()
        if filters.get("model"):
            query = query.filter(model=filters["model"])
        page = self.paginate_queryset(query)
        assert page is not None
        return self.get_paginated_response(PriceSerializer(page, many=True, context=_context(page)).data)

    @extend_schema(
        operation_id="prices_create",
        tags=["prices"],
        request=PriceWriteSerializer,
        responses={201: PriceSerializer},
        description="Schedule a price from `effective_from` (now or later: never retroactive). A price "
        "already scheduled for that moment is replaced.",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        data = self.valid(PriceWriteSerializer)
        price = services.model_price_schedule(**data, actor=self.actor())
        return Response(
            PriceSerializer(price, context=_context([price])).data, status=status.HTTP_201_CREATED
        )


class PriceDetailView(OperatorApiView):
    pagination_class = None

    @extend_schema(operation_id="prices_retrieve", tags=["prices"], responses=PriceSerializer)
    def get(self, request: Request, price_id: int, **kwargs: Any) -> Response:
        price = _price(price_id)
        return Response(PriceSerializer(price, context=_context([price])).data)

    @extend_schema(
        operation_id="prices_update",
        tags=["prices"],
        request=PriceWriteSerializer,
        responses=PriceSerializer,
        description="Change a scheduled price before it takes effect (every field, as on create); a "
        "price in force is refused.",
    )
    def put(self, request: Request, price_id: int, **kwargs: Any) -> Response:
        price = _price(price_id)
        data = self.valid(PriceWriteSerializer)
        price = services.model_price_schedule(**data, price=price, actor=self.actor())
        return Response(PriceSerializer(price, context=_context([price])).data)

    @extend_schema(operation_id="prices_destroy", tags=["prices"], request=None, responses={204: None},
                   description="Withdraw a scheduled price; a price in force is refused.")  # fmt: skip
    def delete(self, request: Request, price_id: int, **kwargs: Any) -> Response:
        services.model_price_delete(price=_price(price_id), actor=self.actor())
        return Response(status=status.HTTP_204_NO_CONTENT)

"""/api/v1/tenants/<slug>/credits/: a tenant's prepaid credits: the balance, the ledger (keyset pages,
newest first) and redeeming a code. The same services and selectors as the credits page
(billing/credits.py, billing/selectors.py), with the same limit on wrong codes (per tenant and per
client address) and the same answer for every code that cannot be redeemed."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import TenantApiView
from accounts.api.errors import BadRequest, RateLimited
from accounts.api.fields import text_field, usd_field
from accounts.api.pagination import KEYSET_PARAMETERS, keyset_limit, keyset_page_serializer, keyset_response
from billing import selectors
from billing.credits import WRONG_CODE, code_redeem, credit_balance, redeem_counters, redeem_throttle
from billing.models import CreditEntry
from config import clientip

TAGS = ["credits"]


class BalanceSerializer(serializers.Serializer):  # type: ignore[type-arg]
    balance = usd_field("The sum of the ledger, USD.")
    prepaid = serializers.BooleanField(help_text="Calls are refused when the balance cannot cover them.")


class CreditEntrySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    amount = usd_field("USD; negative for charges.")

    class Meta:
        model = CreditEntry
        fields = ["id", "kind", "amount", "request_id", "note", "created_at"]
        read_only_fields = fields


CreditLedgerPageSerializer = keyset_page_serializer("CreditLedgerPageSerializer", CreditEntrySerializer)


class RedeemSerializer(serializers.Serializer):  # type: ignore[type-arg]
    code = text_field(100, help_text="A redemption code, as in TH-XXXX-XXXX-XXXX-XXXX.")


class CreditBalanceView(TenantApiView):
    actions = {"get": "credits.view"}
    pagination_class = None

    @extend_schema(operation_id="credits_balance", tags=TAGS, responses=BalanceSerializer)
    def get(self, request: Request, **kwargs: Any) -> Response:
        data = {"balance": credit_balance(self.tenant), "prepaid": self.tenant.prepaid}
        return Response(BalanceSerializer(data).data)


class CreditLedgerView(TenantApiView):
    actions = {"get": "credits.view"}
    pagination_class = None

    @extend_schema(
        operation_id="credits_ledger",
        tags=TAGS,
        parameters=KEYSET_PARAMETERS,
        responses=CreditLedgerPageSerializer,
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        size = keyset_limit(request)
        try:
            page = selectors.credit_ledger_page(
                tenant=self.tenant, after=request.query_params.get("cursor", ""), size=size
            )
        except selectors.BadCursor as exc:
            raise BadRequest(str(exc), field="cursor") from None
        return keyset_response(request, CreditEntrySerializer(page.entries, many=True).data, page.next_cursor)


class CreditRedeemView(TenantApiView):
    actions = {"post": "credits.redeem"}
    pagination_class = None

    @extend_schema(
        operation_id="credits_redeem",
        tags=TAGS,
        request=RedeemSerializer,
        responses={201: CreditEntrySerializer},
        description="Redeem a code into the tenant's credits. A code that cannot be redeemed (unknown, "
        "expired, used) is one 400; 10 wrong codes an hour per tenant and per address, then 429.",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        counters = redeem_counters(tenant=self.tenant, client_ip=clientip.from_meta(request.META))
        if any(redeem_throttle.failures(counter) >= redeem_throttle.limit for counter in counters):
            raise RateLimited(
                "Too many wrong codes. Try again later.",
                headers={"Retry-After": str(redeem_throttle.retry_after())},
            )
        code = self.valid(RedeemSerializer)["code"]
        try:
            entry = code_redeem(tenant=self.tenant, code=code, actor=self.actor())
        except ValidationError:
            # Unknown, expired and already redeemed read alike: a guesser learns nothing.
            for counter in counters:
                redeem_throttle.failed(counter)
            raise BadRequest(WRONG_CODE, field="code") from None
        return Response(CreditEntrySerializer(entry).data, status=status.HTTP_201_CREATED)

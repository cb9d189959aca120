"""/api/v1/providers/, /api/v1/routes/, /api/v1/deployments/: the operator's catalog over the API.

Operator endpoints (`OperatorApiView`: 404 for anyone else), on the same selectors and services as
the /ops/ pages (gateway/selectors.py, gateway/services.py), audited with the token's user. A
provider's credential is write-only: `credential` sets it, `clear_credential` removes it, and answers
carry `credential_state` (where it comes from and a mask), never the value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import OperatorApiView
from accounts.api.errors import BadRequest
from accounts.api.fields import MAX_INT, limit_field, name_list, text_field
from billing.api.prices import model_id
from gateway import selectors, services
from gateway.connection import DEFAULT_PROMPT, provider_test
from gateway.forms_ops import MAX_CREDENTIAL_CHARS
from gateway.models import Deployment, ModelRoute, Provider
from gateway.providers import ADAPTERS

TIMEOUTS = ("connect_timeout", "first_byte_timeout", "read_timeout", "total_timeout")


def _seconds(help_text: str) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=6, decimal_places=2, min_value=Decimal("0.01"), required=False, help_text=help_text
    )


# -- providers ------------------------------------------------------------------------------------


class CredentialStateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    kind = serializers.CharField(help_text='"stored", "env" or "none".')
    label = serializers.CharField(
        help_text='e.g. "stored ••••a1b2", "from env OPENAI_API_KEY (set in this process)".'
    )


class ProviderSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    credential_state = serializers.SerializerMethodField()
    deployment_count = serializers.SerializerMethodField()

    class Meta:
        model = Provider
        fields = ["id", "name", "kind", "base_url", "credential_env", "credential_state", *TIMEOUTS, "enabled",
                  "deployment_count", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(CredentialStateSerializer)
    def get_credential_state(self, provider: Provider) -> dict[str, str]:
        state = selectors.credential_state(provider)
        return {"kind": state.kind, "label": state.label}

    @extend_schema_field(serializers.IntegerField())
    def get_deployment_count(self, provider: Provider) -> int:
        return int(getattr(provider, "deployment_count", None) or provider.deployments.count())


class ProviderWriteSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = text_field(100, help_text="Short unique name: letters, digits, - and _.")
    kind = serializers.ChoiceField(choices=sorted(ADAPTERS), help_text="The upstream's wire format.")
    base_url = text_field(500, help_text="Up to and including /v1, e.g. https://api.openai.com/v1")
    credential = text_field(
        MAX_CREDENTIAL_CHARS,
        required=False,
        write_only=True,
        help_text="Stored encrypted; never returned. Omit to keep the current one.",
    )
    clear_credential = serializers.BooleanField(
        required=False, default=False, help_text="Remove the stored credential."
    )
    credential_env = text_field(
        100,
        required=False,
        allow_blank=True,
        help_text="Read the credential from this environment variable instead.",
    )
    connect_timeout = _seconds("Seconds to connect.")
    first_byte_timeout = _seconds("Seconds from the request to the first bytes of the answer.")
    read_timeout = _seconds("Seconds a stream may stay idle.")
    total_timeout = _seconds("Seconds one attempt may take in all.")
    enabled = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("credential") and attrs.get("clear_credential"):
            raise serializers.ValidationError(
                {"credential": "Give a credential or clear_credential, not both."}
            )
        if attrs.get("credential") and attrs.get("credential_env"):
            raise serializers.ValidationError(
                {"credential": "Give a credential or credential_env, not both."}
            )
        credential = attrs.get("credential", "")
        if any(not ch.isprintable() or ch.isspace() for ch in credential):
            raise serializers.ValidationError(
                {"credential": "One word of printable characters, without spaces."}
            )
        return attrs


def _provider_write(view: OperatorApiView, provider: Provider, *, partial: bool) -> Provider:
    serializer = ProviderWriteSerializer(data=view.request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    data = dict(serializer.validated_data)
    credential: str | None = data.pop("credential", None) or None
    if data.pop("clear_credential", False):
        credential = ""
    for name, value in data.items():
        setattr(provider, name, value)
    return services.provider_save(provider=provider, credential=credential, actor=view.actor())


class ProviderListView(OperatorApiView):
    @extend_schema(operation_id="providers_list", tags=["providers"], responses=ProviderSerializer(many=True))
    def get(self, request: Request, **kwargs: Any) -> Response:
        page = self.paginate_queryset(selectors.providers_for_ops())
        assert page is not None
        return self.get_paginated_response(ProviderSerializer(page, many=True).data)

    @extend_schema(
        operation_id="providers_create",
        tags=["providers"],
        request=ProviderWriteSerializer,
        responses={201: ProviderSerializer},
        description="Add a provider. The credential is write-only: no answer ever carries it.",
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        provider = _provider_write(self, Provider(), partial=False)
        return Response(ProviderSerializer(provider).data, status=status.HTTP_201_CREATED)


class ProviderDetailView(OperatorApiView):
    pagination_class = None

    @extend_schema(operation_id="providers_retrieve", tags=["providers"], responses=ProviderSerializer)
    def get(self, request: Request, provider_id: int, **kwargs: Any) -> Response:
        return Response(ProviderSerializer(selectors.provider_for_ops(provider_id)).data)

    @extend_schema(
        operation_id="providers_update",
        tags=["providers"],
        request=ProviderWriteSerializer,
        responses=ProviderSerializer,
        description="Change a provider: omitted fields keep their value (the credential too).",
    )
    def patch(self, request: Request, provider_id: int, **kwargs: Any) -> Response:
        provider = _provider_write(self, selectors.provider_for_ops(provider_id), partial=True)
        return Response(ProviderSerializer(provider).data)


class ConnectionTestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = model_id("The upstream model id to ask for one token.")
    prompt = text_field(500, required=False, default=DEFAULT_PROMPT)


class ConnectionResultSerializer(serializers.Serializer):  # type: ignore[type-arg]
    ok = serializers.BooleanField()
    model = serializers.CharField()
    status = serializers.IntegerField(help_text="The upstream's HTTP status; 0 when it never answered.")
    elapsed_ms = serializers.IntegerField()
    summary = serializers.CharField()
    answer = serializers.CharField(help_text="The upstream's answer, cut short, the credential redacted.")


class ProviderTestView(OperatorApiView):
    pagination_class = None

    @extend_schema(
        operation_id="providers_test",
        tags=["providers"],
        request=ConnectionTestSerializer,
        responses=ConnectionResultSerializer,
        description="One request of at most one output token through the provider's adapter and "
        "timeouts; the answer says what the upstream said, with the credential redacted.",
    )
    def post(self, request: Request, provider_id: int, **kwargs: Any) -> Response:
        provider = selectors.provider_for_ops(provider_id)
        data = self.valid(ConnectionTestSerializer)
        result = provider_test(
            provider=provider, model=data["model"], prompt=data["prompt"] or DEFAULT_PROMPT
        )
        return Response(ConnectionResultSerializer(result).data)


# -- routes ---------------------------------------------------------------------------------------


class RouteDeploymentSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    provider_name = serializers.CharField(source="provider.name")

    class Meta:
        model = Deployment
        fields = ["id", "provider", "provider_name", "upstream_model", "priority", "weight", "rpm_limit",
                  "tpm_limit", "enabled"]  # fmt: skip
        read_only_fields = fields


class RouteSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    aliases = serializers.ListField(child=serializers.CharField(), read_only=True)
    fallbacks = serializers.ListField(child=serializers.CharField(), read_only=True)
    deployments = RouteDeploymentSerializer(many=True, read_only=True)

    class Meta:
        model = ModelRoute
        fields = ["id", "name", "aliases", "strategy", "max_output_tokens", "context_window", "fallbacks",
                  "enabled", "deployments", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = fields


class RouteWriteSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = text_field(200, help_text="The public model name clients ask for.")
    aliases = name_list("Other names clients may ask for; none may be another route's name or alias.")
    strategy = serializers.ChoiceField(choices=ModelRoute.Strategy.choices, required=False)
    max_output_tokens = serializers.IntegerField(min_value=1, max_value=MAX_INT, required=False)
    context_window = serializers.IntegerField(min_value=1, max_value=MAX_INT, required=False, allow_null=True)
    fallbacks = name_list(
        "Routes to try, in order, when every deployment failed; they must exist and not loop."
    )
    enabled = serializers.BooleanField(required=False)


def _route_write(view: OperatorApiView, route: ModelRoute, *, partial: bool) -> ModelRoute:
    serializer = RouteWriteSerializer(data=view.request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    for name, value in serializer.validated_data.items():
        setattr(route, name, value)
    return services.route_save(route=route, actor=view.actor())


class RouteListView(OperatorApiView):
    @extend_schema(operation_id="routes_list", tags=["routes"], responses=RouteSerializer(many=True))
    def get(self, request: Request, **kwargs: Any) -> Response:
        page = self.paginate_queryset(selectors.routes_for_ops())
        assert page is not None
        return self.get_paginated_response(RouteSerializer(page, many=True).data)

    @extend_schema(operation_id="routes_create", tags=["routes"], request=RouteWriteSerializer,
                   responses={201: RouteSerializer})  # fmt: skip
    def post(self, request: Request, **kwargs: Any) -> Response:
        route = _route_write(self, ModelRoute(), partial=False)
        return Response(
            RouteSerializer(selectors.route_for_ops(route.pk)).data, status=status.HTTP_201_CREATED
        )


class RouteDetailView(OperatorApiView):
    pagination_class = None

    @extend_schema(operation_id="routes_retrieve", tags=["routes"], responses=RouteSerializer)
    def get(self, request: Request, route_id: int, **kwargs: Any) -> Response:
        return Response(RouteSerializer(selectors.route_for_ops(route_id)).data)

    @extend_schema(operation_id="routes_update", tags=["routes"], request=RouteWriteSerializer,
                   responses=RouteSerializer)  # fmt: skip
    def patch(self, request: Request, route_id: int, **kwargs: Any) -> Response:
        route = _route_write(self, selectors.route_for_ops(route_id), partial=True)
        return Response(RouteSerializer(selectors.route_for_ops(route.pk)).data)


# -- deployments ----------------------------------------------------------------------------------


class DeploymentSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    route_name = serializers.CharField(source="route.name")
    provider_name = serializers.CharField(source="provider.name")

    class Meta:
        model = Deployment
        fields = ["id", "route", "route_name", "provider", "provider_name", "upstream_model", "priority", "weight",
                  "rpm_limit", "tpm_limit", "enabled", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = fields


class DeploymentWriteSerializer(serializers.Serializer):  # type: ignore[type-arg]
    route = serializers.IntegerField(
        min_value=1, max_value=MAX_INT, help_text="The route's id (on create only)."
    )
    provider = serializers.IntegerField(min_value=1, max_value=MAX_INT, help_text="The provider's id.")
    upstream_model = model_id("The model id the provider knows.")
    priority = serializers.IntegerField(
        min_value=0, max_value=32767, required=False, help_text="Lower first."
    )
    weight = serializers.IntegerField(min_value=0, max_value=MAX_INT, required=False)
    rpm_limit = limit_field("The upstream's requests per minute for this deployment; null: none.")
    tpm_limit = limit_field("The upstream's tokens per minute for this deployment; null: none.")
    enabled = serializers.BooleanField(required=False)


class DeploymentFilters(serializers.Serializer):  # type: ignore[type-arg]
    route = serializers.IntegerField(min_value=1, max_value=MAX_INT, required=False)


def _deployment_write(view: OperatorApiView, deployment: Deployment, *, partial: bool) -> Deployment:
    serializer = DeploymentWriteSerializer(data=view.request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    data = dict(serializer.validated_data)
    if partial:  # a PATCH keeps what it does not name (the caps' default of null included)
        data = {name: value for name, value in data.items() if name in view.request.data}
    route_id = data.pop("route", None)
    if route_id is not None:
        if deployment.pk is not None and route_id != deployment.route_id:
            raise BadRequest(
                "A deployment stays on its route: add one to the other route instead.", field="route"
            )
        route = ModelRoute.objects.filter(pk=route_id).first()
        if route is None:
            raise BadRequest("No such route.", field="route")
        deployment.route = route
    provider_id = data.pop("provider", None)
    if provider_id is not None:
        provider = Provider.objects.filter(pk=provider_id).first()
        if provider is None:
            raise BadRequest("No such provider.", field="provider")
        deployment.provider = provider
    for name, value in data.items():
        setattr(deployment, name, value)
    return services.deployment_save(deployment=deployment, actor=view.actor())


def _deployment(deployment_id: int) -> Deployment:
    deployment = Deployment.objects.select_related("route", "provider").filter(pk=deployment_id).first()
    if deployment is None:
        raise Http404("No such deployment.")
    return deployment


class DeploymentListView(OperatorApiView):
    @extend_schema(operation_id="deployments_list", tags=["deployments"], parameters=[DeploymentFilters],
                   responses=DeploymentSerializer(many=True))  # fmt: skip
    def get(self, request: Request, **kwargs: Any) -> Response:
        filters = self.valid(DeploymentFilters, data=request.query_params)
        query = Deployment.objects.select_related("route", "provider")
        if filters.get("route"):
            query = query.filter(route_id=filters["route"])
        page = self.paginate_queryset(query)
        assert page is not None
        return self.get_paginated_response(DeploymentSerializer(page, many=True).data)

    @extend_schema(operation_id="deployments_create", tags=["deployments"], request=DeploymentWriteSerializer,
                   responses={201: DeploymentSerializer})  # fmt: skip
    def post(self, request: Request, **kwargs: Any) -> Response:
        deployment = _deployment_write(self, Deployment(), partial=False)
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentDetailView(OperatorApiView):
    pagination_class = None

    @extend_schema(operation_id="deployments_retrieve", tags=["deployments"], responses=DeploymentSerializer)
    def get(self, request: Request, deployment_id: int, **kwargs: Any) -> Response:
        return Response(DeploymentSerializer(_deployment(deployment_id)).data)

    @extend_schema(operation_id="deployments_update", tags=["deployments"], request=DeploymentWriteSerializer,
                   responses=DeploymentSerializer)  # fmt: skip
    def patch(self, request: Request, deployment_id: int, **kwargs: Any) -> Response:
        deployment = _deployment_write(self, _deployment(deployment_id), partial=True)
        return Response(DeploymentSerializer(deployment).data)

    @extend_schema(
        operation_id="deployments_destroy", tags=["deployments"], request=None, responses={204: None}
    )
    def delete(self, request: Request, deployment_id: int, **kwargs: Any) -> Response:
        services.deployment_delete(deployment=_deployment(deployment_id), actor=self.actor())
        return Response(status=status.HTTP_204_NO_CONTENT)

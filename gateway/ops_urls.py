"""The operator console's providers and routes pages, under /ops/ (namespace `gateway_ops`)."""

from django.urls import path

from gateway import views_ops

app_name = "gateway_ops"

urlpatterns = [
    path("providers/", views_ops.providers, name="providers"),
    path("providers/new/", views_ops.provider_new, name="provider_new"),
    path("providers/<int:provider_id>/", views_ops.provider_edit, name="provider_edit"),
    path(
        "providers/<int:provider_id>/clear-credential/",
        views_ops.provider_credential_clear,
        name="provider_credential_clear",
    ),
    path("providers/<int:provider_id>/test/", views_ops.provider_connection_test, name="provider_test"),
    path("routes/", views_ops.routes, name="routes"),
    path("routes/new/", views_ops.route_new, name="route_new"),
    path("routes/<int:route_id>/", views_ops.route_edit, name="route_edit"),
    path("routes/<int:route_id>/deployments/", views_ops.deployment_new, name="deployment_new"),
    path(
        "routes/<int:route_id>/deployments/<int:deployment_id>/",
        views_ops.deployment_edit,
        name="deployment_edit",
    ),
    path(
        "routes/<int:route_id>/deployments/<int:deployment_id>/toggle/",
        views_ops.deployment_toggle,
        name="deployment_toggle",
    ),
    path(
        "routes/<int:route_id>/deployments/<int:deployment_id>/delete/",
        views_ops.deployment_delete,
        name="deployment_delete",
    ),
]

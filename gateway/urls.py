"""The /v1 routes for Django's handler (tests, and any server that does not use gateway/asgi.py): the
same table as the ASGI handler's, from the dialect registry."""

from django.urls import path

from gateway import views
from gateway.dialects import ENDPOINTS

urlpatterns = [
    path(
        endpoint.route.path.removeprefix("/v1/").replace("{model}", "<path:model>"),
        views.view_for(endpoint),
        name=endpoint.route.operation,
    )
    for endpoint in ENDPOINTS
]

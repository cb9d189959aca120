"""The management REST API (/api/v1/): its foundation, and the conventions every endpoint follows.

Foundation (here): `authentication.TokenAuthentication` (Bearer thp_... personal access tokens,
per-token and per-IP-failure limits), `errors` (the one error shape and its exception handler),
`pagination.Cursor` (keyset on (created_at, id)), `base` (the base views), `schema` (the OpenAPI
extensions and hooks), `docs` (/api/schema/, /api/docs/), `root_urls` (mounts every app's API).

Conventions for an app's endpoints:
- They live in `<app>/api/<area>.py` (views with their small, named serializers; a serializer's
  class name is its schema component name, so name it for what it is: `BudgetSerializer`,
  `BudgetSetSerializer`), and their URLs in `<app>/api/urls.py` with `app_name = "<app>_api"`.
  root_urls mounts each `<app>/api/urls.py` under /api/v1/ by itself; nothing else to register.
- A tenant endpoint is a `base.TenantApiView` under `tenants/<slug:slug>/...`, with `actions`
  mapping each HTTP method to the console's action (accounts.permissions.PERMISSIONS); an operator
  endpoint is a `base.OperatorApiView` (404 for non-operators) under e.g. `ops/tenants/...`.
- Objects come from the same selectors as the console pages (one per owned object, 404 otherwise);
  writes call the same services with `actor=self.actor()`; input is checked by a serializer through
  `self.valid(SerializerClass)` (or `self.valid(Filters, data=request.query_params)` for filters);
  a service's ValidationError becomes a 400 by itself (`service_fields` renames its fields).
- Lists return `self.get_paginated_response(...)` over `self.paginate_queryset(queryset)` (the
  queryset needs `created_at` and `id`; set `pagination_class = None` on views that return one object).
- Every method carries `@extend_schema(operation_id=..., tags=[...], request=..., responses=...)`;
  error responses are added to every operation by the schema hook.
- Tests: tests/<app>/test_api_<area>.py, one access test per way in with the `api_client(visitor)`
  fixture (tests/support/api.py: API_VISITORS).
"""

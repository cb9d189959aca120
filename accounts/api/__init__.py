"""The management REST API (/api/v1/), its foundation: token authentication, the one error shape,
cursor pagination, the base views every endpoint is built on, the OpenAPI schema and its docs page.

Each app's endpoints live in `<app>/api/` (views and their small serializers) with their URLs in
`<app>/api/urls.py` (namespace `<app>_api`), mounted under /api/v1/ by accounts/api/urls.py.
"""

"""The billing endpoints of the management API (/api/v1/tenants/<slug>/...): budgets, credits and
usage. Conventions: accounts/api/__init__.py."""

"""The gateway's endpoints of the management API (/api/v1/): the operator's catalog (providers,
routes, deployments, and billing's prices). Conventions: accounts/api/__init__.py."""

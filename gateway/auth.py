"""Step 2 and 3 of the request path: who is calling, and may they make this call.

The key's row is read once per TTL per process (async ORM on a miss only); the secret is
checked against the stored digest on every call, in constant time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Network, IPv6Network, ip_network

from django.conf import settings
from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey, Tenant
from config import clientip
from gateway import errors
from gateway.db import run_db
from gateway.strangers import FailedAuthCounter
from gateway.ttlcache import TTLCache

logger = logging.getLogger(__name__)

Network = IPv4Network | IPv6Network


@dataclass(frozen=True)
class KeyInfo:
    id: int
    tenant_id: int
    digest: str
    active: bool
    tenant_active: bool
    expires_at: datetime | None
    allowed_models: frozenset[str] | None  # None: every model
    allowed_networks: tuple[Network, ...]
    ip_restricted: bool  # False: anywhere; True: only from allowed_networks (which may be empty)

    def model_allowed(self, name: str) -> bool:
        return self.allowed_models is None or name in self.allowed_models

    def ip_allowed(self, address: str | None) -> bool:
        if not self.ip_restricted:
            return True
        ip = clientip.parse_ip(address)
        return ip is not None and any(ip in network for network in self.allowed_networks)


def _effective_models(key_models: list[str], plan_models: list[str]) -> frozenset[str] | None:
    # A key may be tighter than its plan, never looser.
    if key_models and plan_models:
        return frozenset(key_models) & frozenset(plan_models)
    if key_models or plan_models:
        return frozenset(key_models or plan_models)
    return None


def _read_key(prefix: str) -> KeyInfo | None:
    api_key = ApiKey.objects.select_related("tenant__plan").filter(prefix=prefix).first()
    if api_key is None:
        return None
    plan = api_key.tenant.plan
    networks = []
    for value in api_key.allowed_ips or []:
        try:
            networks.append(ip_network(str(value), strict=False))
        except ValueError:
            # Services validate this list; a row written around them fails closed for that entry.
            logger.error("API key th-%s…: ignoring an unreadable allowed-IP entry", prefix)
    return KeyInfo(
        id=api_key.id,
        tenant_id=api_key.tenant_id,
        digest=api_key.digest,
        active=api_key.status == ApiKey.Status.ACTIVE,
        tenant_active=api_key.tenant.status == Tenant.Status.ACTIVE,
        expires_at=api_key.expires_at,
        allowed_models=_effective_models(api_key.allowed_models, plan.allowed_models if plan else []),
        allowed_networks=tuple(networks),
        ip_restricted=bool(api_key.allowed_ips),
    )


async def _load_key(prefix: str) -> KeyInfo | None:
    return await run_db(lambda: _read_key(prefix))


class Authenticator:
    def __init__(self) -> None:
        self.failures = FailedAuthCounter()
        # Unknown prefixes are cached too (as None), so a repeated fake key costs one lookup per TTL.
        self.cache: TTLCache[str, KeyInfo | None] = TTLCache(
            ttl=settings.TOLLHOUSE_CACHE_TTL, loader=_load_key
        )

    async def authenticate(self, raw: str | None, client_ip: str | None) -> KeyInfo:
        """Who is calling: the key's facts, or a GatewayError. A failure to identify the key is counted
        against the client IP; an address with too many is refused before any database lookup."""
        if not raw:
            self.failures.failed(client_ip, "no API key")
            raise errors.AuthenticationFailed(
                "Missing API key: send it as 'Authorization: Bearer th-...' or 'x-api-key'.",
                code="missing_api_key",
            )
        parsed = keys.parse(raw)
        if parsed is None:
            self.failures.failed(client_ip, "malformed API key")
            raise errors.AuthenticationFailed("Invalid API key.")
        if not self.cache.holds(parsed.prefix):
            retry_after = self.failures.retry_after(client_ip)
            if retry_after is not None:
                raise errors.RateLimited(
                    "Too many failed authentication attempts from your IP address; "
                    f"retry in {retry_after} seconds.",
                    code="too_many_failed_authentications",
                    headers={"Retry-After": str(retry_after)},
                )
        info = await self.cache.get(parsed.prefix)
        if info is None or not keys.matches(parsed.secret, info.digest):
            self.failures.failed(client_ip, "unknown API key" if info is None else "wrong API key secret")
            raise errors.AuthenticationFailed("Invalid API key.")
        return info


def authorize(key: KeyInfo, client_ip: str | None) -> None:
    """Step 3 for the caller: the identified key may be used now, from this address."""
    if not key.active:
        raise errors.PermissionDenied("This API key has been revoked.", code="api_key_revoked")
    if key.expires_at is not None and key.expires_at <= timezone.now():
        raise errors.PermissionDenied("This API key has expired.", code="api_key_expired")
    if not key.tenant_active:
        raise errors.PermissionDenied("This organization is suspended.", code="tenant_suspended")
    if not key.ip_allowed(client_ip):
        raise errors.PermissionDenied(
            "Requests from your IP address are not allowed for this API key.", code="ip_not_allowed"
        )


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return x_api_key.strip() if x_api_key else None

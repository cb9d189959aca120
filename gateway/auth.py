"""Step 2 and 3 of the request path: who is calling, and may they make this call.

The key's row is read once per TTL per process (async ORM on a miss only); the secret is
checked against the stored digest on every call, in constant time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Network, IPv6Network, ip_network

from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey, Tenant
from accounts.selectors import api_key_by_prefix
from billing.models import Budget
from billing.pricing import dollars_to_nanos
from config import clientip
from config.hot import hot
from gateway import errors
from gateway.db import run_db
from gateway.strangers import FailedAuthCounter
from gateway.ttlcache import TTLCache

logger = logging.getLogger(__name__)

Network = IPv4Network | IPv6Network


@dataclass(frozen=True)
class Limits:
    """Rate limits of one subject (None: no limit)."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None

    def narrowed(self, other: Limits) -> Limits:
        """The tighter of the two, limit by limit."""

        def tighter(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        return Limits(
            rpm=tighter(self.rpm, other.rpm),
            tpm=tighter(self.tpm, other.tpm),
            concurrency=tighter(self.concurrency, other.concurrency),
        )

    def within(self, outer: Limits) -> Limits:
        """These limits, each held to `outer`'s where both are set; a limit not set here stays unset
        (the outer subject counts it already)."""
        return Limits(
            rpm=None if self.rpm is None else min(self.rpm, outer.rpm or self.rpm),
            tpm=None if self.tpm is None else min(self.tpm, outer.tpm or self.tpm),
            concurrency=None
            if self.concurrency is None
            else min(self.concurrency, outer.concurrency or self.concurrency),
        )

    def any(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.concurrency is not None


@dataclass(frozen=True)
class BudgetInfo:
    """A budget as admission applies it; `id` is the Budget row's, or "plan" for the plan's monthly one
    (the same id for every tenant on the plan: its counter is told apart by the tenant's id, see
    billing.pots.budget_pot)."""

    id: int | str
    scope: str  # tenant | key | end_user
    end_user: str  # scope end_user: that end user only, or "" for each end user
    amount_nanos: int
    period: str  # day | week | month
    hard: bool


@dataclass(frozen=True)
class KeyInfo:
    """Who is calling and what governs them: an API key, or an end-user token (then `id` is None)."""

    id: int | None
    tenant_id: int
    digest: str
    active: bool
    tenant_active: bool
    expires_at: datetime | None
    allowed_models: frozenset[str] | None  # None: every model
    allowed_networks: tuple[Network, ...]
    ip_restricted: bool  # False: anywhere; True: only from allowed_networks (which may be empty)
    # A rotated key's previous secret works until then (its grace period); None: no such end.
    valid_until: datetime | None = None
    tenant_tz: str = "UTC"
    prepaid: bool = False
    key_limits: Limits = Limits()  # already narrowed to the tenant's
    tenant_limits: Limits = Limits()
    end_user_limits: Limits = Limits()  # for each end user
    budgets: tuple[BudgetInfo, ...] = ()
    end_user: str = ""  # an end-user token's `sub`: the end user of every call made with it
    label: str = ""  # how messages name the caller: "th-abc123…" or "end-user token"
    refusal: str = ""  # an end-user token whose claims would widen the tenant's: why it is refused
    prefix: str = ""  # the API key's public prefix ("" for an end-user token): safe to log
    tenant_slug: str = ""
    body_logging: bool = False  # the tenant keeps its calls' bodies (gateway/bodylog.py)
    plan: str = ""  # the tenant's plan name (a metrics label)
    cache: bool = False  # the key opted in to the response cache (gateway/cache.py)
    cache_ttl: int | None = None  # its answers' time to live; None: TOLLHOUSE_CACHE_TTL_SECONDS

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


def tenant_policy(tenant: Tenant, *, api_key_id: int | None) -> dict[str, object]:
    """The tenant's part of a caller's KeyInfo: limits, prepaid, time zone and the budgets that apply
    to calls made with `api_key_id` (None: an end-user token). Runs in a thread (sync ORM)."""
    plan = tenant.plan
    limits = tenant.effective_limits()
    budgets = []
    has_tenant_month = False
    for budget in Budget.objects.filter(tenant=tenant).order_by("id"):
        if budget.scope == Budget.Scope.KEY and (api_key_id is None or budget.api_key_id != api_key_id):
            continue
        has_tenant_month |= budget.scope == Budget.Scope.TENANT and budget.period == Budget.Period.MONTH
        budgets.append(
            BudgetInfo(
                id=budget.id,
                scope=budget.scope,
                end_user=budget.end_user,
                amount_nanos=dollars_to_nanos(budget.amount),
                period=budget.period,
                hard=budget.hard,
            )
        )
    if plan is not None and plan.monthly_budget is not None and not has_tenant_month:
        budgets.append(
            BudgetInfo(
                id="plan",
                scope=Budget.Scope.TENANT,
                end_user="",
                amount_nanos=dollars_to_nanos(plan.monthly_budget),
                period=Budget.Period.MONTH,
                hard=True,
            )
        )
    return {
        "tenant_slug": tenant.slug,
        "plan": plan.name if plan is not None else "",
        "body_logging": tenant.body_logging,
        "tenant_tz": tenant.timezone,
        "prepaid": tenant.prepaid,
        "tenant_limits": Limits(
            rpm=limits["rpm_limit"], tpm=limits["tpm_limit"], concurrency=limits["concurrency_limit"]
        ),
        "end_user_limits": Limits(
            rpm=tenant.end_user_rpm_limit,
            tpm=tenant.end_user_tpm_limit,
            concurrency=tenant.end_user_concurrency_limit,
        ),
        "budgets": tuple(budgets),
    }


def _read_key(prefix: str) -> KeyInfo | None:
    found = api_key_by_prefix(prefix)
    if found is None:
        return None
    api_key = found.api_key
    plan = api_key.tenant.plan
    networks = []
    for value in api_key.allowed_ips or []:
        try:
            networks.append(ip_network(str(value), strict=False))
        except ValueError:
            # Services validate this list; a row written around them fails closed for that entry.
            logger.error("API key th-%s…: ignoring an unreadable allowed-IP entry", prefix)
    policy = tenant_policy(api_key.tenant, api_key_id=api_key.id)
    own = Limits(rpm=api_key.rpm_limit, tpm=api_key.tpm_limit, concurrency=api_key.concurrency_limit)
    return KeyInfo(
        id=api_key.id,
        tenant_id=api_key.tenant_id,
        digest=found.digest,
        valid_until=found.valid_until,
        active=api_key.status == ApiKey.Status.ACTIVE,
        tenant_active=api_key.tenant.status == Tenant.Status.ACTIVE,
        expires_at=api_key.expires_at,
        allowed_models=_effective_models(api_key.allowed_models, plan.allowed_models if plan else []),
        allowed_networks=tuple(networks),
        ip_restricted=bool(api_key.allowed_ips),
        # Services refuse a key looser than its tenant; a row written around them is narrowed here.
        key_limits=own.within(policy["tenant_limits"]),  # type: ignore[arg-type]
        label=f"th-{prefix}…",
        prefix=prefix,
        cache=api_key.cache,
        cache_ttl=api_key.cache_ttl,
        **policy,  # type: ignore[arg-type]
    )


async def _load_key(prefix: str) -> KeyInfo | None:
    return await run_db(lambda: _read_key(prefix))


class Authenticator:
    def __init__(self) -> None:
        # Imported here: gateway.endusers builds on this module's KeyInfo and tenant_policy.
        from gateway.endusers import EndUserTokens

        self.failures = FailedAuthCounter()
        self.end_users = EndUserTokens()  # a JWT signed by the tenant instead of an API key
        # Unknown prefixes are cached too (as None), so a repeated fake key costs one lookup per TTL.
        self.cache: TTLCache[str, KeyInfo | None] = TTLCache(ttl=hot.TOLLHOUSE_CACHE_TTL, loader=_load_key)

    async def authenticate(self, raw: str | None, client_ip: str | None) -> KeyInfo:
        """Who is calling: the key's facts, or a GatewayError. A failure to identify the key is counted
        against the client IP. Past its limit, an address gets 429 for every call this process cannot
        identify from what it already holds (no database lookup), while a key it holds keeps working:
        one misconfigured script behind a shared address does not lock out everyone else there."""
        if not raw:
            self.failures.refuse(client_ip, "no API key")
            raise errors.AuthenticationFailed(
                "Missing API key: send it as 'Authorization: Bearer th-...' or 'x-api-key'.",
                code="missing_api_key",
            )
        if self.end_users.recognises(raw):
            return await self.end_users.authenticate(raw, client_ip, self.failures)
        parsed = keys.parse(raw)
        if parsed is None:
            self.failures.refuse(client_ip, "malformed API key")
            raise errors.AuthenticationFailed("Invalid API key.")
        if self.cache.peek(parsed.prefix) is None:  # not a key this process knows: a lookup
            self.failures.refuse_if_blocked(client_ip)
        info = await self.cache.get(parsed.prefix)
        if info is None or not keys.matches(parsed.secret, info.digest):
            self.failures.refuse(client_ip, "unknown API key" if info is None else "wrong API key secret")
            raise errors.AuthenticationFailed("Invalid API key.")
        if info.valid_until is not None and info.valid_until <= timezone.now():
            # The previous secret of a rotated key, after its grace period: only its holder gets here.
            self.failures.refuse(client_ip, "rotated API key past its grace period")
            raise errors.AuthenticationFailed(
                "This API key was rotated and its grace period has ended: use the new key.",
                code="api_key_rotated",
            )
        return info


def authorize(key: KeyInfo, client_ip: str | None) -> None:
    """Step 3 for the caller: the identified key may be used now, from this address."""
    if key.refusal:
        raise errors.PermissionDenied(key.refusal, code="token_claims_exceed_tenant")
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

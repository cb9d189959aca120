"""Tenants, their members, plans and API keys.

Plan lives here rather than in billing: it is the tenant's access policy (limits, allowed models),
and Tenant points at it, while apps depend one way only (gateway -> billing -> accounts).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from accounts.validators import (
    ip_networks,
    non_negative,
    validate_names,
    validate_time_zone,
)
from config import crypto
from config.changes import BroadcastManager, BroadcastQuerySet, Message


def _limit(help_text: str) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(null=True, blank=True, help_text=help_text)


class Plan(models.Model):
    """Default limits of the tenants on it. `free`, `pro` and `enterprise` are seeded by a migration."""

    name = models.CharField(max_length=100, unique=True)
    rpm_limit = _limit("Requests per minute for each tenant; empty = none.")
    tpm_limit = _limit("Tokens per minute for each tenant; empty = none.")
    concurrency_limit = _limit("Calls in flight at once for each tenant; empty = none.")
    monthly_budget = models.DecimalField(
        max_digits=20,
        decimal_places=9,
        null=True,
        blank=True,
        validators=[non_negative],
        help_text="USD a tenant may spend per calendar month (a hard limit) unless the tenant has its "
        "own monthly tenant budget; empty = none.",
    )
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_names],
        help_text='Model names, as in ["gpt-4.1"]; empty = every model.',
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = BroadcastManager()

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # An emptied box in a form arrives as None: it means "every model", stored as [].
        self.allowed_models = [] if self.allowed_models is None else self.allowed_models


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="tenants")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="An IANA name, e.g. Europe/Paris. Budget periods start at midnight here.",
    )
    # Overrides of the plan's limits (empty = the plan's).
    rpm_limit = _limit("Requests per minute; empty = the plan's.")
    tpm_limit = _limit("Tokens per minute; empty = the plan's.")
    concurrency_limit = _limit("Calls in flight at once; empty = the plan's.")
    # Limits for each end user (the `user` field of a call, or the `sub` of an end-user token).
    end_user_rpm_limit = _limit("Requests per minute for each end user; empty = none.")
    end_user_tpm_limit = _limit("Tokens per minute for each end user; empty = none.")
    end_user_concurrency_limit = _limit("Calls in flight at once for each end user; empty = none.")
    prepaid = models.BooleanField(
        default=False,
        help_text="Runs on prepaid credits: a call is refused when the credit balance cannot cover it.",
    )
    body_logging = models.BooleanField(
        default=False,
        help_text="Keep each call's request and response bodies (obvious secrets redacted, each "
        "capped) for TOLLHOUSE_BODY_LOG_RETENTION_DAYS, to debug this tenant's integration.",
    )
    webhook_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = BroadcastManager()

    def __str__(self) -> str:
        return self.name

    def effective_limits(self) -> dict[str, int | None]:
        """rpm, tpm and concurrency for the whole tenant: its own override, else its plan's."""
        plan = self.plan
        return {
            name: getattr(self, name) if getattr(self, name) is not None else getattr(plan, name, None)
            for name in LIMIT_FIELDS
        }

    def webhook_secret(self) -> str:
        """The key budget webhooks are signed with (HMAC-SHA256); created on first use."""
        if not self.webhook_secret_encrypted:
            import secrets

            self.webhook_secret_encrypted = crypto.encrypt(secrets.token_urlsafe(32))
            Tenant.objects.filter(pk=self.pk, webhook_secret_encrypted="").update(
                webhook_secret_encrypted=self.webhook_secret_encrypted
            )
            self.refresh_from_db(fields=["webhook_secret_encrypted"])
        return crypto.decrypt(self.webhook_secret_encrypted)


LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "concurrency_limit")


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"
        VIEWER = "viewer"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")

    class Source(models.TextChoices):
        MANUAL = "manual"  # the console, the admin, an invitation, a command
        SSO = "sso"  # single sign-on claims (accounts/sso_sync.py): re-synced at each sign-in

    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    # Only memberships that came from single sign-on are changed or removed by it; manual ones stay.
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.MANUAL, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


class ApiKeyQuerySet(BroadcastQuerySet):
    # Beyond this many keys in one bulk change, workers reload everything instead.
    MAX_KEY_MESSAGES = 500

    def change_messages(self, objs: Any = None) -> list[Message]:
        """A worker drops just the changed keys from its cache."""
        if objs is None:
            prefixes = []
            for prefix, previous in self.values_list("prefix", "previous_prefix")[
                : self.MAX_KEY_MESSAGES + 1
            ]:
                prefixes += [prefix, previous]
        else:
            prefixes = [p for obj in objs for p in (obj.prefix, obj.previous_prefix)]
        if len(prefixes) > self.MAX_KEY_MESSAGES:
            return super().change_messages(objs)
        return [{"kind": "key", "prefix": prefix} for prefix in prefixes if prefix]


class ApiKeyManager(BroadcastManager.from_queryset(ApiKeyQuerySet)):  # type: ignore[misc]
    pass


class ApiKey(models.Model):
    """An API key: `th-` + public prefix + secret. Only the prefix and an HMAC digest are stored."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        REVOKED = "revoked"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    expires_at = models.DateTimeField(null=True, blank=True)
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_names],
        help_text='Model names, as in ["gpt-4.1"]; empty = the plan\'s.',
    )
    allowed_ips = models.JSONField(
        default=list,
        blank=True,
        help_text='IPs or CIDR ranges, as in ["10.0.0.0/8"]; empty = anywhere.',
    )
    rpm_limit = _limit("Requests per minute; empty = the tenant's. Never looser than the tenant's.")
    tpm_limit = _limit("Tokens per minute; empty = the tenant's. Never looser than the tenant's.")
    concurrency_limit = _limit(
        "Calls in flight at once; empty = the tenant's. Never looser than the tenant's."
    )
    # The response cache (gateway/cache.py): opted in per key, or per call by header.
    cache = models.BooleanField(
        default=False,
        help_text="Answer repeated identical requests from the response cache (a hit costs nothing).",
    )
    cache_ttl = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Seconds a cached answer is kept; empty = TOLLHOUSE_CACHE_TTL_SECONDS.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Rotation (accounts.services.api_key_rotate): the secret the key had before, accepted until
    # `previous_valid_until`. The key keeps its row and id, so its budgets, spend and rate windows
    # carry on unchanged.
    previous_prefix = models.CharField(max_length=16, unique=True, null=True, blank=True, editable=False)
    previous_digest = models.CharField(max_length=64, blank=True, default="", editable=False)
    previous_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyManager()

    def __str__(self) -> str:
        return f"{self.name} (th-{self.prefix}…)"

    def clean(self) -> None:
        # An emptied box in a form arrives as None: it means "none", stored as [].
        self.allowed_models = [] if self.allowed_models is None else self.allowed_models
        # Validated here rather than by a field validator because the list is also normalised
        # into the form the gateway compares against (`10.1.2.3/8` is stored as `10.0.0.0/8`).
        try:
            self.allowed_ips = ip_networks([] if self.allowed_ips is None else self.allowed_ips)
        except ValidationError as exc:
            raise ValidationError({"allowed_ips": exc.messages}) from exc
        if self.tenant_id is not None:
            self._refuse_looser_than_tenant()
        if self.cache_ttl is not None and self.cache_ttl > settings.TOLLHOUSE_CACHE_MAX_TTL_SECONDS:
            raise ValidationError(
                {
                    "cache_ttl": f"At most {settings.TOLLHOUSE_CACHE_MAX_TTL_SECONDS} seconds "
                    "(TOLLHOUSE_CACHE_MAX_TTL_SECONDS)."
                }
            )

    def _refuse_looser_than_tenant(self) -> None:
        """A key may be tighter than its tenant, never looser: refused, not silently clamped."""
        tenant_limits = self.tenant.effective_limits()
        errors = {}
        for name in LIMIT_FIELDS:
            mine, theirs = getattr(self, name), tenant_limits[name]
            if mine is not None and theirs is not None and mine > theirs:
                label = name.removesuffix("_limit")
                errors[name] = (
                    f"A key's {label} limit cannot be looser than its tenant's ({mine} > {theirs})."
                )
        if errors:
            raise ValidationError(errors)

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def in_grace(self) -> bool:
        """Rotated, and the previous secret still works (see accounts.services.api_key_rotate)."""
        return (
            self.status == self.Status.ACTIVE
            and self.previous_valid_until is not None
            and self.previous_valid_until > timezone.now()
        )


class SigningKey(models.Model):
    """A key a tenant's own backend signs end-user tokens (JWTs) with. Several may be active at once,
    so a tenant rotates by adding the new key, moving its signer over, then deactivating the old."""

    class Algorithm(models.TextChoices):
        HS256 = "HS256", "HS256 (shared secret)"
        RS256 = "RS256", "RS256 (RSA public key)"
        ES256 = "ES256", "ES256 (EC P-256 public key)"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="signing_keys")
    name = models.CharField(max_length=200)
    issuer = models.CharField(
        max_length=200,
        help_text="The `iss` claim the tenant's tokens carry; one issuer belongs to one tenant.",
    )
    key_id = models.CharField(
        max_length=200, blank=True, default="", help_text="The `kid` header, if the signer sends one."
    )
    algorithm = models.CharField(max_length=8, choices=Algorithm.choices)
    secret_encrypted = models.TextField(blank=True, default="", editable=False)
    public_key = models.TextField(blank=True, default="", help_text="PEM, for RS256 and ES256.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = BroadcastManager()

    def __str__(self) -> str:
        return f"{self.name} ({self.algorithm}, {self.issuer})"

    def set_secret(self, plaintext: str) -> None:
        self.secret_encrypted = crypto.encrypt(plaintext) if plaintext else ""

    def get_secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""


class AuditEntry(models.Model):
    """Who changed what in a tenant, with the values before and after; written by
    `accounts.audit.audit_record` in the same transaction as the change itself. A gateway-wide
    change made by an operator (a provider, route, deployment, price, plan, a batch of redemption
    codes) belongs to no tenant."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_entries"
    )
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who, as text that outlives the user: "console:alice@acme.test", "admin:operator",
    # "command:key_issue", "system".
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=64)  # e.g. "key.issue", "budget.set", "member.role"
    object_type = models.CharField(max_length=64)  # e.g. "accounts.apikey"
    object_id = models.CharField(max_length=64, blank=True, default="")
    object_repr = models.CharField(max_length=200, blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at", "-id"], name="auditentry_tenant_time"),
            # The operator's audit log (/ops/audit/): every tenant's, newest first, and one object's.
            models.Index(fields=["-created_at", "-id"], name="auditentry_time"),
            models.Index(fields=["object_type", "object_id", "-created_at"], name="auditentry_object_time"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.object_type}:{self.object_id}"


def _invitation_expiry() -> Any:
    from datetime import timedelta

    return timezone.now() + timedelta(days=settings.TOLLHOUSE_INVITATION_DAYS)


class Invitation(models.Model):
    """An invitation by email to join a tenant with a role (accounts/members.py). The link's token is
    only ever in the email: the row keeps its SHA-256 digest. One use: accepting it claims the row with a
    conditional UPDATE, so two clicks at once make one membership."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)  # stored lower-cased (accounts.members.normalize_email)
    role = models.CharField(max_length=20, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    token_digest = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(default=_invitation_expiry)
    accepted_at = models.DateTimeField(null=True, blank=True, editable=False)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            # One open invitation per address and tenant (an expired one is closed before a new one).
            models.UniqueConstraint(
                fields=["tenant", "email"],
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_pending",
            )
        ]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="invitation_tenant_time")]

    def __str__(self) -> str:
        return f"{self.email} to {self.tenant} ({self.role})"

    @property
    def state(self) -> str:
        """pending, accepted, revoked or expired."""
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


class PersonalAccessToken(models.Model):
    """A user's token for the management API (/api/v1/): `thp_` + public prefix + secret, stored as
    the prefix and an HMAC digest like an API key (accounts/tokens.py). It acts as its user: their
    role in each of their tenants, and operator rights if they are an operator. It always expires."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_tokens"
    )
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="pat_user_time")]

    def __str__(self) -> str:
        return f"{self.name} (thp_{self.prefix}…)"

    @property
    def state(self) -> str:
        """active, revoked or expired."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "active"


class SsoIdentity(models.Model):
    """A person at an OpenID provider (its `iss` and `sub`), and the account they sign in to."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    # The operator role was granted by the operator claim (accounts/sso_sync.py): it is taken back
    # when the claim no longer grants it. A role granted by hand is never touched.
    operator_from_sso = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="ssoidentity_unique")]
        verbose_name = "SSO identity"
        verbose_name_plural = "SSO identities"

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"

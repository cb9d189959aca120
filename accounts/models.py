"""Tenants, their members, plans and API keys.

Plan lives here rather than in billing: it is the tenant's access policy (limits, allowed models),
and Tenant points at it, while apps depend one way only (gateway -> billing -> accounts).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from accounts.validators import (
    ip_networks,
    non_negative,
    validate_names,
    validate_time_zone,
)
from config.changes import BroadcastManager, BroadcastQuerySet, Message


class Plan(models.Model):
    name = models.CharField(max_length=100, unique=True)
    rpm_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute; empty = none."
    )
    tpm_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tokens per minute; empty = none."
    )
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    monthly_budget = models.DecimalField(
        max_digits=20, decimal_places=9, null=True, blank=True, validators=[non_negative]
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
        help_text="An IANA name, e.g. Europe/Paris.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = BroadcastManager()

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"
        VIEWER = "viewer"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
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
            prefixes = list(self.values_list("prefix", flat=True)[: self.MAX_KEY_MESSAGES + 1])
        else:
            prefixes = [obj.prefix for obj in objs]
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
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    budget = models.DecimalField(
        max_digits=20, decimal_places=9, null=True, blank=True, validators=[non_negative]
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

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

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

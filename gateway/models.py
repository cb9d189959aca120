"""Upstream configuration: providers, their deployments, and the public model routes."""

from __future__ import annotations

import os
import re
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from accounts.validators import validate_model_name, validate_names
from config import crypto
from config.changes import BroadcastManager

# Seconds; zero would make every call time out at once.
positive_seconds = MinValueValidator(Decimal("0.01"), message="Must be more than zero seconds.")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


def validate_env_name(value: Any) -> None:
    """An environment variable's name (letters, digits, underscore; not starting with a digit)."""
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ValidationError(
            "Enter an environment variable's name: letters, digits and _, not starting with a digit, "
            "e.g. OPENAI_API_KEY.",
            code="invalid_env_name",
        )


def validate_base_url(value: Any) -> None:
    """http(s) with a host. Any host name is fine (`http://vllm:8000/v1` in a compose network), which
    Django's URLValidator would refuse; credentials belong in the encrypted credential, not here."""
    invalid = ValidationError(
        "Enter an http:// or https:// URL, e.g. https://api.openai.com/v1.", code="invalid_base_url"
    )
    if not isinstance(value, str) or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise invalid
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number in range)
    except ValueError as exc:
        raise invalid from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
        raise invalid
    if parts.username or parts.password:
        raise ValidationError(
            "Put the provider's credential in the credential field, not in the URL "
            "(the URL is not encrypted and appears in logs).",
            code="credential_in_url",
        )


def provider_kinds() -> list[tuple[str, str]]:
    """The kinds with an adapter (gateway/providers/): a kind without one cannot be saved."""
    from gateway.providers import kind_choices

    return kind_choices()


class Provider(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=provider_kinds, help_text="The upstream's wire format.")
    base_url = models.CharField(
        max_length=500,
        validators=[validate_base_url],
        help_text="Up to and including /v1, e.g. https://api.openai.com/v1",
    )
    credential_encrypted = models.TextField(blank=True, default="", editable=False)
    credential_env = models.CharField(
        max_length=100,
        blank=True,
        default="",
        validators=[validate_env_name],
        help_text="Read the credential from this environment variable of the gateway processes instead "
        "of storing it, e.g. OPENAI_API_KEY. Takes precedence over a stored credential.",
    )
    connect_timeout = models.DecimalField(
        max_digits=6, decimal_places=2, default=5, validators=[positive_seconds]
    )
    read_timeout = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=120,
        validators=[positive_seconds],
        help_text="Seconds to wait for the next bytes upstream (a stream idle longer than this is cut).",
    )
    first_byte_timeout = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=120,
        validators=[positive_seconds],
        help_text="Seconds from sending a request to the first bytes of the answer (a stream's first "
        "event); past it the call is retried or falls back to the next deployment.",
    )
    total_timeout = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=600,
        validators=[positive_seconds],
        help_text="Seconds one attempt may take in all, a whole stream included.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BroadcastManager()

    def __str__(self) -> str:
        return self.name

    def set_credential(self, plaintext: str) -> None:
        self.credential_encrypted = crypto.encrypt(plaintext) if plaintext else ""

    def get_credential(self) -> str:
        """The credential sent upstream: the named environment variable's value when one is named
        (empty when the variable is unset), else the stored one, decrypted."""
        if self.credential_env:
            return os.environ.get(self.credential_env, "")
        return crypto.decrypt(self.credential_encrypted) if self.credential_encrypted else ""


class ModelRoute(models.Model):
    class Strategy(models.TextChoices):
        PRIORITY = "priority", "Priority, then weighted"
        LEAST_LATENCY = "least_latency", "Least latency (time to first byte, EWMA)"
        LEAST_BUSY = "least_busy", "Least busy (fewest calls in flight)"
        CHEAPEST = "cheapest", "Cheapest (price in force)"

    name = models.CharField(
        max_length=200,
        unique=True,
        validators=[validate_model_name],
        help_text="The public model name clients ask for: letters, digits and . - _ : / @.",
    )
    aliases = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_names],
        help_text='Other names clients may ask for, as in ["gpt4"].',
    )
    strategy = models.CharField(max_length=32, choices=Strategy.choices, default=Strategy.PRIORITY)
    max_output_tokens = models.PositiveIntegerField(
        default=4096,
        validators=[MinValueValidator(1)],
        help_text="The most tokens the model can write in one answer: what a call that does not set "
        "max_tokens may cost, for budget reservations.",
    )
    context_window = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Tokens the model reads and writes in one call, where known; shown by /v1/models.",
    )
    fallbacks = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_names],
        help_text="Routes to try, in order, when every deployment of this one failed (or the prompt is "
        'too long for it), as in ["gpt-4.1-mini"].',
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BroadcastManager()

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.fallbacks = [] if self.fallbacks is None else self.fallbacks
        # An emptied box in a form arrives as None: it means "no aliases", stored as [].
        self.aliases = [] if self.aliases is None else self.aliases


class Deployment(models.Model):
    route = models.ForeignKey(ModelRoute, on_delete=models.CASCADE, related_name="deployments")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="deployments")
    upstream_model = models.CharField(max_length=200, help_text="The model id the provider knows.")
    priority = models.PositiveSmallIntegerField(default=0, help_text="Lower is tried first.")
    weight = models.PositiveIntegerField(default=1)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BroadcastManager()

    class Meta:
        ordering = ["route", "priority", "id"]

    def __str__(self) -> str:
        return f"{self.route} → {self.provider}/{self.upstream_model}"


class BodyLog(models.Model):
    """The bodies of one call of a tenant that turned body logging on (Tenant.body_logging): the
    request as the client sent it and the response as the gateway answered (a stream: the events as
    relayed), obvious secrets redacted and each cut at TOLLHOUSE_BODY_LOG_MAX_BYTES. Written in
    batches off the request path and deleted after TOLLHOUSE_BODY_LOG_RETENTION_DAYS
    (gateway/bodylog.py)."""

    request_id = models.CharField(max_length=64, db_index=True)
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    api_key_id = models.BigIntegerField(null=True, blank=True, help_text="Empty for an end-user token.")
    endpoint = models.CharField(max_length=40)
    status = models.PositiveSmallIntegerField()
    request_body = models.TextField(blank=True, default="")
    request_truncated = models.BooleanField(default=False)
    response_body = models.TextField(blank=True, default="")
    response_truncated = models.BooleanField(default=False)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.status} ({self.request_id})"

"""Upstream configuration: providers, their deployments, and the public model routes."""

from __future__ import annotations

from django.db import models

from gateway import crypto


class Provider(models.Model):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        OPENAI_COMPATIBLE = "openai-compatible", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic"
        GEMINI = "gemini", "Google Gemini"
        MOCK = "mock", "Mock (bundled)"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    base_url = models.URLField(
        max_length=500, help_text="Up to and including /v1, e.g. https://api.openai.com/v1"
    )
    credential_encrypted = models.TextField(blank=True, default="", editable=False)
    connect_timeout = models.DecimalField(max_digits=6, decimal_places=2, default=5)
    read_timeout = models.DecimalField(
        max_digits=6, decimal_places=2, default=120, help_text="Seconds to wait for the next bytes upstream."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    def set_credential(self, plaintext: str) -> None:
        self.credential_encrypted = crypto.encrypt(plaintext) if plaintext else ""

    def get_credential(self) -> str:
        return crypto.decrypt(self.credential_encrypted) if self.credential_encrypted else ""


class ModelRoute(models.Model):
    class Strategy(models.TextChoices):
        PRIORITY = "priority", "Priority, then weighted"

    name = models.CharField(max_length=200, unique=True, help_text="The public model name clients ask for.")
    aliases = models.JSONField(default=list, blank=True)
    strategy = models.CharField(max_length=32, choices=Strategy.choices, default=Strategy.PRIORITY)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


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

    class Meta:
        ordering = ["route", "priority", "id"]

    def __str__(self) -> str:
        return f"{self.route} → {self.provider}/{self.upstream_model}"

"""Operator admin for accounts until the console exists.

Every save goes through accounts.services, which validates the whole row, so the admin cannot store
what the gateway cannot read. A new key is issued by the service and shown once, in the response to
the add form itself: never in a message (Django keeps those in a cookie), never stored.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from accounts import members, services, signing
from accounts.audit import Actor
from accounts.models import (
    LIMIT_FIELDS,
    ApiKey,
    AuditEntry,
    Invitation,
    Membership,
    Plan,
    SigningKey,
    SsoIdentity,
    Tenant,
)
from accounts.validators import validate_names
from config.admin import save_inline_through

# Where save_model leaves a new key's raw value for response_add, on the unsaved form instance.
_RAW_KEY = "_issued_raw_key"


class LimitsForm(ModelForm):
    """Runs the services' limit checks next to their fields (a limit is empty or at least 1, a
    spending limit more than 0), so a refused value is shown on the form rather than failing the save."""

    limit_fields: tuple[str, ...] = LIMIT_FIELDS
    amount_fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.limit_fields:
            if name in self.fields:
                self.fields[name].validators.append(services.limit_at_least_one)
        for name in self.amount_fields:
            if name in self.fields:
                self.fields[name].validators.append(services.amount_above_zero)


class ApiKeyForm(LimitsForm):
    """Refuses, next to the field, allowed models that no route or alias serves (api_key_save's
    check) and, when issuing, an expiry in the past (api_key_issue's)."""

    def clean_allowed_models(self) -> Any:
        names = self.cleaned_data.get("allowed_models")
        try:
            validate_names(names or [])
        except ValidationError:
            return names  # the model's own validation says what is wrong with them
        unknown = services.unknown_model_names(names or [])
        if unknown:
            raise ValidationError(services.unknown_models_sentence(unknown))
        return names

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if self.instance.pk is None:  # issuing: api_key_issue refuses a past expiry
            services.validate_new_expiry(expires_at)
        return expires_at


class PlanForm(LimitsForm):
    amount_fields = ("monthly_budget",)


class TenantForm(LimitsForm):
    limit_fields = (*LIMIT_FIELDS, *services.END_USER_LIMIT_FIELDS)


def _warn_of_looser_keys(request: HttpRequest, sentence: str | None) -> None:
    # Lowering a limit below some keys' is allowed (the gateway narrows them); the operator is told.
    if sentence:
        messages.warning(request, sentence)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    form = PlanForm
    list_display = ["name", "rpm_limit", "tpm_limit", "concurrency_limit", "monthly_budget", "allowed_models"]
    fieldsets = [
        (None, {"fields": ["name", "allowed_models"]}),
        (
            "Limits of each tenant on the plan (empty = none)",
            {"fields": ["rpm_limit", "tpm_limit", "concurrency_limit", "monthly_budget"]},
        ),
    ]

    def save_model(self, request: HttpRequest, obj: Plan, form: ModelForm, change: bool) -> None:
        services.plan_save(plan=obj)
        if change:
            _warn_of_looser_keys(request, services.looser_keys_sentence(plan=obj))


class MembershipFormSet(BaseInlineFormSet):
    """A tenant that has an owner keeps one (accounts/members.py): refused on the form, not on save."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors) or self.instance.pk is None:
            return
        if not Membership.objects.filter(tenant=self.instance, role=Membership.Role.OWNER).exists():
            return
        kept_owners = [
            form
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("role") == Membership.Role.OWNER
        ]
        if not kept_owners:
            raise ValidationError(
                f"{self.instance.name} needs at least one owner: make someone else an owner first."
            )


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipFormSet
    extra = 0
    autocomplete_fields = ["user"]
    # "sso": made by single sign-on, which changes or removes it at the person's next sign-in.
    readonly_fields = ["source"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = ["name", "slug", "plan", "status", "prepaid", "timezone", "created_at"]
    list_filter = ["status", "plan", "prepaid"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "plan", "status", "timezone", "prepaid"]}),
        ("Debugging", {"fields": ["body_logging"]}),
        (
            "Limits of the whole tenant (empty = the plan's)",
            {"fields": ["rpm_limit", "tpm_limit", "concurrency_limit"]},
        ),
        (
            "Limits of each end user (empty = none)",
            {"fields": ["end_user_rpm_limit", "end_user_tpm_limit", "end_user_concurrency_limit"]},
        ),
    ]

    def save_model(self, request: HttpRequest, obj: Tenant, form: ModelForm, change: bool) -> None:
        services.tenant_save(tenant=obj, actor=Actor.admin(request.user))
        if change:
            _warn_of_looser_keys(request, services.looser_keys_sentence(tenant=obj))

    def save_formset(
        self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        actor = Actor.admin(request.user)
        save_inline_through(
            formset,
            lambda membership: services.membership_save(membership=membership, actor=actor),
            lambda membership: members.member_remove(membership=membership, actor=actor),
        )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "tenant", "masked", "status", "expires_at", "created_at"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "prefix", "tenant__name"]
    readonly_fields = ["masked", "created_by", "created_at", "revoked_at"]
    fields = [
        "tenant",
        "name",
        "masked",
        "status",
        "expires_at",
        "allowed_models",
        "allowed_ips",
        "rpm_limit",
        "tpm_limit",
        "concurrency_limit",
        "created_by",
        "created_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    @admin.display(description="key")
    def masked(self, obj: ApiKey) -> str:
        return f"th-{obj.prefix}…" if obj.prefix else "(issued on save)"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ModelForm, change: bool) -> None:
        if change:
            services.api_key_save(api_key=obj, actor=Actor.admin(request.user))
            return
        issued = services.api_key_issue(
            tenant=obj.tenant,
            name=obj.name,
            created_by=request.user,
            actor=Actor.admin(request.user),
            expires_at=obj.expires_at,
            allowed_models=obj.allowed_models,
            allowed_ips=obj.allowed_ips,
            rpm_limit=obj.rpm_limit,
            tpm_limit=obj.tpm_limit,
            concurrency_limit=obj.concurrency_limit,
        )
        # The admin goes on with the form's instance (history entry, response): make it the saved key.
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(issued.api_key, field.attname))
        obj._state.adding = False
        setattr(obj, _RAW_KEY, issued.raw)

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        raw = getattr(obj, _RAW_KEY, None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key issued: copy it now",
            "api_key": obj,
            "raw_key": raw,
            "change_url": reverse("admin:accounts_apikey_change", args=[obj.pk]),
        }
        response = TemplateResponse(request, "admin/accounts/apikey/issued.html", context)
        # Nothing on the way may keep the page: no browser cache, no proxy, no back-button copy.
        add_never_cache_headers(response)
        return response

    def delete_model(self, request: HttpRequest, obj: ApiKey) -> None:
        services.api_key_delete(api_key=obj, actor=Actor.admin(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        actor = Actor.admin(request.user)
        for api_key in queryset.select_related("tenant"):
            services.api_key_delete(api_key=api_key, actor=actor)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        revoked = 0
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key, actor=Actor.admin(request.user))
            revoked += 1
        messages.success(request, f"Revoked {revoked} key(s).")


class SigningKeyForm(ModelForm):
    # Write-only: typed once when the key is added, stored encrypted, never rendered back (not even
    # when the form comes back with an error).
    secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="HS256 only: the shared secret, at least 32 bytes. It is never shown again.",
    )

    class Meta:
        model = SigningKey
        fields = ["tenant", "name", "issuer", "algorithm", "key_id", "public_key", "active"]

    def clean(self) -> dict[str, Any] | None:
        data = super().clean()
        if self.errors or data is None:
            return data
        try:
            if self.instance.pk is None:
                signing.signing_key_prepare(
                    tenant=data["tenant"],
                    name=data["name"],
                    issuer=data["issuer"],
                    algorithm=data["algorithm"],
                    secret=data.get("secret") or "",
                    public_key=data.get("public_key") or "",
                    key_id=data.get("key_id") or "",
                )
            else:
                candidate = SigningKey.objects.get(pk=self.instance.pk)
                for name in ("name", "key_id", "active"):
                    if name in data:
                        setattr(candidate, name, data[name])
                signing.signing_key_check(signing_key=candidate)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return data


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    """Keys tenants sign end-user tokens with. Material is set once, on add: rotate by adding a key."""

    form = SigningKeyForm
    list_display = ["name", "tenant", "issuer", "algorithm", "key_id", "active", "created_at"]
    list_filter = ["active", "algorithm", "tenant"]
    search_fields = ["name", "issuer", "key_id", "tenant__name"]
    actions = ["deactivate"]

    def get_fields(self, request: HttpRequest, obj: SigningKey | None = None) -> list[Any]:
        if obj is None:
            return ["tenant", "name", "issuer", "algorithm", "key_id", "secret", "public_key"]
        return ["tenant", "issuer", "algorithm", "name", "key_id", "active", "public_key", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: SigningKey | None = None) -> list[str]:
        return [] if obj is None else ["tenant", "issuer", "algorithm", "public_key", "created_at"]

    def save_model(self, request: HttpRequest, obj: SigningKey, form: ModelForm, change: bool) -> None:
        actor = Actor.admin(request.user)
        if change:
            signing.signing_key_save(signing_key=obj, actor=actor)
            return
        added = signing.signing_key_add(
            actor=actor,
            tenant=obj.tenant,
            name=obj.name,
            issuer=obj.issuer,
            algorithm=obj.algorithm,
            secret=form.cleaned_data.get("secret") or "",
            public_key=obj.public_key,
            key_id=obj.key_id,
        )
        # The admin goes on with the form's instance (history entry, redirect): make it the saved key.
        for field in SigningKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(added, field.attname))
        obj._state.adding = False

    @admin.action(description="Deactivate selected signing keys")
    def deactivate(self, request: HttpRequest, queryset: Any) -> None:
        count = 0
        actor = Actor.admin(request.user)
        for signing_key in queryset.filter(active=True).select_related("tenant"):
            signing.signing_key_deactivate(signing_key=signing_key, actor=actor)
            count += 1
        messages.success(request, f"Deactivated {count} signing key(s).")

    def delete_model(self, request: HttpRequest, obj: SigningKey) -> None:
        signing.signing_key_delete(signing_key=obj, actor=Actor.admin(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        actor = Actor.admin(request.user)
        for signing_key in queryset.select_related("tenant"):
            signing.signing_key_delete(signing_key=signing_key, actor=actor)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations are sent from the console's members page (or accounts.members): here they are read,
    and revoked through the service, which records it."""

    list_display = ["email", "tenant", "role", "state", "invited_by", "created_at", "expires_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["email", "tenant__name", "tenant__slug"]
    list_select_related = ["tenant", "invited_by"]
    actions = ["revoke"]

    @admin.display(description="state")
    def state(self, obj: Invitation) -> str:
        return obj.state

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke selected invitations", permissions=["view"])
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        actor = Actor.admin(request.user)
        count = 0
        for invitation in queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True).select_related(
            "tenant"
        ):
            members.invitation_revoke(invitation=invitation, actor=actor)
            count += 1
        messages.success(request, f"Revoked {count} invitation(s).")


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log, read only: rows are written by the services, in the change's transaction."""

    list_display = ["created_at", "tenant", "actor", "action", "object_type", "object_repr"]
    list_filter = ["action"]
    search_fields = ["tenant__slug", "actor", "object_repr"]
    list_select_related = ["tenant"]
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SsoIdentity)
class SsoIdentityAdmin(admin.ModelAdmin):
    """Who signs in through single sign-on (accounts/sso_sync.py) as which account. Read only;
    deleting one unlinks it: the person's next sign-in links (or creates) an account again."""

    list_display = ["user", "issuer", "subject", "operator_from_sso", "last_sign_in_at", "created_at"]
    search_fields = ["user__email", "user__username", "subject"]
    list_select_related = ["user"]
    readonly_fields = [f.name for f in SsoIdentity._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

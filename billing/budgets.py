"""Writes to budgets: set (create or change) and delete.

A budget is named by its subject and period: one per key and period, one per tenant and period,
one per end user (or for each end user) and period. Setting a budget for a subject and period that
already has one changes that one, so its spend so far (counted under its id in Redis, see
billing/pots.py) carries over. The gateway reads budgets through gateway/auth.py's `tenant_policy`;
every committed change reaches it at once (Budget's BroadcastManager).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction

from accounts.audit import Actor, audit_record, audit_snapshot
from accounts.models import ApiKey, Tenant
from accounts.services import IssuedKey, api_key_issue
from billing.models import Budget
from config import egress

# What the audit log records of a budget.
BUDGET_AUDIT_FIELDS = (
    "scope",
    "api_key",
    "end_user",
    "amount",
    "period",
    "hard",
    "thresholds",
    "emails",
    "webhook_url",
)

# The two checks Budget's own fields do not make; the admin form runs them next to its fields too.


def validate_amount(usd: object) -> None:
    # Money is Decimal: a float has already lost the cents it was meant to hold.
    if isinstance(usd, bool) or not isinstance(usd, Decimal | int):
        raise ValidationError("Enter the amount as a decimal number of USD, such as 100.50.")
    if isinstance(usd, Decimal) and not usd.is_finite():
        raise ValidationError("The amount must be a finite number of USD.")
    if usd <= 0:
        raise ValidationError(
            "A budget must be more than 0 USD: a budget of 0 would refuse every call "
            "(to stop calls, suspend the tenant or revoke the key)."
        )


def validate_webhook_url(url: str) -> None:
    # URLField also takes ftp://; alerts are POSTed, so only http(s) can work.
    if url and urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ValidationError("The webhook must be an http:// or https:// address.")
    # Nor to the gateway's own network (its Redis, the cloud's metadata service): config/egress.py,
    # which checks again when an alert is sent.
    refusal = egress.url_refusal(url) if url else None
    if refusal is not None:
        raise ValidationError(refusal)


DUPLICATE = "That subject already has a budget for this period: change that one instead."


def duplicate_of(budget: Budget) -> Budget | None:
    """Another budget of the same subject and period, which the table's constraints would refuse
    (saying only "Constraint … is violated": this lets callers say what it means)."""
    if budget.api_key_id is not None:
        same = Budget.objects.filter(api_key_id=budget.api_key_id)
    else:
        same = Budget.objects.filter(
            tenant_id=budget.tenant_id, scope=budget.scope, end_user=budget.end_user, api_key__isnull=True
        )
    found: Budget | None = same.filter(period=budget.period).exclude(pk=budget.pk).first()
    return found


def _check(budget: Budget) -> None:
    """Everything a budget must be before it is stored, all errors at once, each by its field."""
    errors: dict[str, list[str]] = {}
    for name, check in (("amount", validate_amount), ("webhook_url", validate_webhook_url)):
        try:
            check(getattr(budget, name))
        except ValidationError as exc:
            errors[name] = exc.messages
    duplicate = duplicate_of(budget) is not None
    if duplicate:
        errors[NON_FIELD_ERRORS] = [DUPLICATE]
    try:
        budget.full_clean(
            exclude=[name for name in errors if name != NON_FIELD_ERRORS], validate_constraints=not duplicate
        )
    except ValidationError as exc:
        errors = {**exc.message_dict, **errors}
    if errors:
        raise ValidationError(errors)


def _subject(
    *, tenant: Tenant, api_key: ApiKey | None, end_user: str | None
) -> tuple[Budget.Scope, dict[str, object]]:
    """The budget's scope and the lookup that finds the one budget of that subject (for a period)."""
    if api_key is not None and end_user is not None:
        raise ValidationError("A budget is for one key or for end users, not both.")
    if api_key is not None:
        if api_key.tenant_id != tenant.pk:
            raise ValidationError({"api_key": "That key belongs to another tenant."})
        return Budget.Scope.KEY, {"api_key": api_key}
    if end_user is not None:
        if not isinstance(end_user, str) or not end_user.isprintable():
            raise ValidationError({"end_user": "An end user is named by printable text."})
        return Budget.Scope.END_USER, {
            "tenant": tenant,
            "scope": Budget.Scope.END_USER,
            "end_user": end_user,
            "api_key__isnull": True,
        }
    return Budget.Scope.TENANT, {
        "tenant": tenant,
        "scope": Budget.Scope.TENANT,
        "end_user": "",
        "api_key__isnull": True,
    }


@transaction.atomic
def budget_set(
    *,
    tenant: Tenant,
    api_key: ApiKey | None = None,
    end_user: str | None = None,
    usd: Decimal,
    period: str,
    hard: bool = True,
    thresholds: Sequence[int] | None = None,
    emails: Sequence[str] | None = None,
    webhook_url: str | None = None,
    actor: Actor | None = None,
) -> Budget:
    """Set the budget of a subject for a period, creating it or changing the one there is.

    The subject is `api_key` if given; else the end user `end_user` if it is not None ("" means each
    end user separately); else the whole tenant. `thresholds`, `emails` and `webhook_url` left at
    None keep what the budget has (the defaults for a new one: 50/80/100 %, nobody, no webhook);
    pass [] or "" to clear them. Raises ValidationError (one sentence per field) and stores nothing
    when any value is refused.
    """
    scope, lookup = _subject(tenant=tenant, api_key=api_key, end_user=end_user)
    try:
        validate_amount(usd)
    except ValidationError as exc:
        raise ValidationError({"amount": exc.messages}) from None
    budget = Budget.objects.select_for_update().filter(period=period, **lookup).first()
    if budget is None:
        budget = Budget(tenant=tenant, scope=scope, api_key=api_key, end_user=end_user or "", period=period)
    budget.amount = usd
    budget.hard = hard
    if thresholds is not None:
        budget.thresholds = list(thresholds)
    if emails is not None:
        budget.emails = list(emails)
    if webhook_url is not None:
        budget.webhook_url = webhook_url
    return budget_save(budget=budget, actor=actor)


@transaction.atomic
def budget_save(*, budget: Budget, actor: Actor | None = None) -> Budget:
    """Validate and save a budget as it is on the instance (the admin edits them this way)."""
    # _check refuses a second budget for the same subject and period; two writers racing past it
    # meet the table's unique constraints, and the loser gets the same sentence.
    _check(budget)
    stored = Budget.objects.filter(pk=budget.pk).first() if budget.pk else None
    before = audit_snapshot(stored, BUDGET_AUDIT_FIELDS)
    try:
        with transaction.atomic():
            budget.save()
    except IntegrityError:
        raise ValidationError(DUPLICATE) from None
    after = audit_snapshot(budget, BUDGET_AUDIT_FIELDS)
    if before != after:
        action = "budget.create" if stored is None else "budget.change"
        audit_record(
            tenant=budget.tenant, actor=actor, action=action, target=budget, before=before, after=after
        )
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget, actor: Actor | None = None) -> None:
    before = audit_snapshot(budget, BUDGET_AUDIT_FIELDS)
    audit_record(
        tenant=budget.tenant, actor=actor, action="budget.delete", target=budget, before=before, after=None
    )
    budget.delete()


@transaction.atomic
def api_key_issue_with_budget(
    *,
    tenant: Tenant,
    name: str,
    actor: Actor | None = None,
    created_by: Any = None,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    allowed_ips: list[str] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    concurrency_limit: int | None = None,
    cache: bool = False,
    cache_ttl: int | None = None,
    budget_usd: Decimal | None = None,
    budget_period: str | None = None,
    budget_hard: bool = True,
) -> IssuedKey:
    """Issue a key and, if `budget_usd` is given, a budget of its own for `budget_period`, in one
    transaction: the console's keys page and `manage.py key_issue` both come here. Raises one
    ValidationError with every refused field (the key's, and `amount` / `period` for the budget)
    and stores nothing."""
    errors: dict[str, list[str]] = {}
    issued = None
    try:
        with transaction.atomic():
            issued = api_key_issue(
                tenant=tenant,
                name=name,
                actor=actor,
                created_by=created_by,
                expires_at=expires_at,
                allowed_models=allowed_models,
                allowed_ips=allowed_ips,
                rpm_limit=rpm_limit,
                tpm_limit=tpm_limit,
                concurrency_limit=concurrency_limit,
                cache=cache,
                cache_ttl=cache_ttl,
            )
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if budget_usd is not None:
        try:
            validate_amount(budget_usd)
        except ValidationError as exc:
            errors["amount"] = exc.messages
        if budget_period not in Budget.Period.values:
            errors["period"] = ["A key's budget needs a period: day, week or month."]
    elif budget_period is not None:
        errors["amount"] = ["Enter the budget's amount in USD, or leave the period empty for no budget."]
    if errors or issued is None:
        raise ValidationError(errors)
    if budget_usd is not None and budget_period is not None:
        budget_set(
            tenant=tenant,
            api_key=issued.api_key,
            usd=budget_usd,
            period=budget_period,
            hard=budget_hard,
            actor=actor,
        )
    return issued

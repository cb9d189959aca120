"""Prepaid credits: the ledger's writes (top-ups, refunds, adjustments, redemption codes) and its balance.

The ledger (`CreditEntry`) is append-only and the balance is always its sum, never a stored number.
Usage charges do not come through here: the usage pipeline writes them with the usage rows
(`billing.services.usage_events_record`), once per call, keyed by the call's request id.

Every other committed line is announced to the gateways' Redis counters (`billing.pots`) after
commit, so a top-up can be spent at once. Redemption codes are stored as HMAC-SHA256 digests with
the server's pepper (as API keys are, see accounts/keys.py); the raw codes exist only in the
return value of `redeem_codes_create`. A code is redeemed by one conditional UPDATE (`WHERE
redeemed_at IS NULL`) in the transaction that writes its ledger line: of any number of concurrent
redeemers, PostgreSQL lets exactly one change the row, and the others find it redeemed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.audit import Actor, audit_record, audit_snapshot
from accounts.models import Tenant
from accounts.throttle import LoginThrottle
from billing.models import CreditEntry, RedemptionCode
from billing.pots import credits_changed
from billing.pricing import dollars_to_nanos

logger = logging.getLogger(__name__)

MAX_CREDIT_USD = Decimal(1_000_000_000)  # one line of the ledger, either way
MAX_CODES_PER_BATCH = 10_000
USD_PLACES = 9

# Redemption codes read TH-XXXX-XXXX-XXXX-XXXX: 16 characters from 32 that cannot be mistaken for
# one another (no 0/O, no 1/I), 5 bits each, so 80 bits of randomness.
CODE_TAG = "TH"
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 16
CODE_GROUP = 4
_CODE_BODY = re.compile(f"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}")
_SEPARATORS = re.compile(r"[\s\-_]+")
MALFORMED_CODE = (
    f"That is not a redemption code: a code reads {CODE_TAG}- and then "
    f"{CODE_LENGTH} letters and digits in groups of {CODE_GROUP}."
)

# The kinds an operator adds by hand, and what their amount must be.
_ADDED_KINDS: dict[str, str] = {
    CreditEntry.Kind.TOPUP: "A top-up must be more than 0 USD",
    CreditEntry.Kind.REFUND: "A refund must be more than 0 USD",
    CreditEntry.Kind.ADJUSTMENT: "An adjustment must be more or less than 0 USD",
}


def usd_text(amount: Decimal) -> str:
    """An amount as an operator reads it: no exponent, at least cents, every significant digit."""
    whole, _, fraction = f"{amount:f}".partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _usd(value: object, *, what: str) -> Decimal:
    """A finite Decimal of at most 9 decimal places and at most MAX_CREDIT_USD either way."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValidationError(
            f"{what} must be a Decimal number of US dollars, not {type(value).__name__}.", code="invalid"
        )
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValidationError(f"{what} must be a finite number.", code="invalid")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > USD_PLACES:
        raise ValidationError(f"{what} takes at most {USD_PLACES} decimal places.", code="max_decimal_places")
    if abs(amount) > MAX_CREDIT_USD:
        raise ValidationError(f"{what} must be at most {MAX_CREDIT_USD} USD either way.", code="max_value")
    return amount.quantize(Decimal(1).scaleb(-USD_PLACES))


def _announce(entry: CreditEntry) -> None:
    """After commit, tell the gateways' counters about a non-usage line (see billing.pots)."""
    tenant_id, nanos = entry.tenant_id, dollars_to_nanos(entry.amount)

    def tell() -> None:
        try:
            credits_changed(tenant_id, nanos)
        except (redis.RedisError, OSError) as exc:
            # The line is committed and stands; the gateways' counter catches up when it is next
            # re-derived from the ledger. Never an error for the operator who added it.
            logger.warning(
                "credit line %s of tenant %s committed, but the gateways' counter was not told (%s: %s); "
                "it catches up when re-derived from the ledger",
                entry.pk,
                tenant_id,
                type(exc).__name__,
                str(exc)[:200],
            )

    transaction.on_commit(tell)


def _append(entry: CreditEntry) -> CreditEntry:
    entry.full_clean()
    entry.save()
    _announce(entry)
    return entry


@transaction.atomic
def credit_add(
    *,
    tenant: Tenant,
    kind: str,
    usd: Decimal,
    note: str = "",
    created_by: Any = None,
    actor: Actor | None = None,
) -> CreditEntry:
    """Append a top-up or refund (more than 0 USD) or an adjustment (either way, not 0) to a
    tenant's ledger. Raises ValidationError, storing nothing, for anything else."""
    if not isinstance(kind, str) or kind not in _ADDED_KINDS:
        known = ", ".join(repr(str(k)) for k in _ADDED_KINDS)
        raise ValidationError(f"A credit line added by hand is one of {known}, not {str(kind)[:40]!r}.")
    amount = _usd(usd, what="The amount")
    if amount == 0 or (kind != CreditEntry.Kind.ADJUSTMENT and amount < 0):
        raise ValidationError(f"{_ADDED_KINDS[kind]}, not {usd}.")
    if created_by is None and actor is not None:
        created_by = actor.user
    entry = _append(CreditEntry(tenant=tenant, kind=kind, amount=amount, note=note, created_by=created_by))
    _audit_entry(entry, actor=actor, action="credit.add")
    return entry


CREDIT_AUDIT_FIELDS = ("kind", "amount", "note")


def _audit_entry(entry: CreditEntry, *, actor: Actor | None, action: str) -> None:
    after = audit_snapshot(entry, CREDIT_AUDIT_FIELDS)
    audit_record(tenant=entry.tenant, actor=actor, action=action, target=entry, before=None, after=after)


def not_prepaid_sentence(tenant: Tenant) -> str:
    return (
        f"Tenant {tenant.slug} is not on prepaid credits: its calls are not charged to a balance, so a "
        "top-up would change nothing it can spend. Put it on prepaid credits first (credits_topup "
        "--start-prepaid, or Prepaid in the admin's tenant page)."
    )


@transaction.atomic
def credit_topup(
    *,
    tenant: Tenant,
    usd: Decimal,
    note: str = "",
    created_by: Any = None,
    actor: Actor | None = None,
    start_prepaid: bool = False,
) -> CreditEntry:
    """A top-up of a tenant on prepaid credits (credit_add); refused for a tenant that is not, whose
    balance nothing reads: an operator who paid it in would believe it bought calls. With
    `start_prepaid`, a tenant not yet on prepaid credits is put on them in the same transaction
    (from then on its calls are refused when the balance cannot cover them)."""
    if start_prepaid and not tenant.prepaid:
        from accounts.services import tenant_save

        tenant.prepaid = True
        tenant_save(tenant=tenant, actor=actor)
    if not tenant.prepaid:
        raise ValidationError(not_prepaid_sentence(tenant), code="not_prepaid")
    return credit_add(
        tenant=tenant, kind=CreditEntry.Kind.TOPUP, usd=usd, note=note, created_by=created_by, actor=actor
    )


def credit_balance(tenant: Tenant) -> Decimal:
    """The tenant's balance: the sum of its whole ledger, to the nano-dollar."""
    total = CreditEntry.objects.filter(tenant=tenant).aggregate(total=Sum("amount"))["total"]
    return Decimal(0).quantize(Decimal(1).scaleb(-USD_PLACES)) if total is None else Decimal(total)


# --- redemption codes ----------------------------------------------------------------------------


def _code_digest(body: str) -> str:
    # Its own domain, so that a code's digest can never equal an API key secret's.
    message = f"redemption-code:{body}".encode()
    return hmac.new(settings.API_KEY_PEPPER.encode(), message, hashlib.sha256).hexdigest()


def _code_body(code: object) -> str | None:
    """The 16 significant characters of a code as a person may type it (any case, spaces or dashes,
    with or without the TH- tag), or None if it cannot be a code."""
    if not isinstance(code, str) or len(code) > 100:
        return None
    body = _SEPARATORS.sub("", code).upper()
    if len(body) == len(CODE_TAG) + CODE_LENGTH and body.startswith(CODE_TAG):
        body = body[len(CODE_TAG) :]
    return body if _CODE_BODY.fullmatch(body) else None


def _code_text(body: str) -> str:
    groups = [body[i : i + CODE_GROUP] for i in range(0, CODE_LENGTH, CODE_GROUP)]
    return "-".join([CODE_TAG, *groups])


def _code_hint(body: str) -> str:
    return f"{CODE_TAG}-{body[:CODE_GROUP]}"


@dataclass(frozen=True)
class CodeBatch:
    batch: str
    codes: list[str]  # the raw codes: returned this once, never stored


def redeem_codes_create(
    *, usd: Decimal, count: int, expires_at: datetime | None = None, created_by: Any = None
) -> list[str]:
    """Create `count` single-use codes worth `usd` each, as one batch; returns the raw codes, which
    are not stored anywhere (only their digests and first characters are)."""
    return code_batch_create(usd=usd, count=count, expires_at=expires_at, created_by=created_by).codes


CODE_BATCH_AUDIT = "codes.create"


@transaction.atomic
def code_batch_create(
    *,
    usd: Decimal,
    count: int,
    expires_at: datetime | None = None,
    created_by: Any = None,
    actor: Actor | None = None,
) -> CodeBatch:
    """`redeem_codes_create`, returning the batch's name with the codes, and written to the audit log
    (gateway-wide: a batch belongs to no tenant until its codes are redeemed)."""
    if created_by is None and actor is not None:
        created_by = actor.user
    amount = _usd(usd, what="The value of a code")
    if amount <= 0:
        raise ValidationError(f"The value of a code must be greater than 0, not {usd}.")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CODES_PER_BATCH:
        raise ValidationError(f"A batch holds from 1 to {MAX_CODES_PER_BATCH} codes, not {count!r}.")
    if expires_at is not None:
        if timezone.is_naive(expires_at):
            raise ValidationError("The expiry must carry a time zone (or a UTC offset).")
        if expires_at <= timezone.now():
            raise ValidationError("The expiry is in the past.")
    batch = f"{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"
    bodies: set[str] = set()
    while len(bodies) < count:
        bodies.add("".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH)))
    codes = [
        RedemptionCode(
            digest=_code_digest(body),
            hint=_code_hint(body),
            batch=batch,
            amount=amount,
            expires_at=expires_at,
            created_by=created_by,
        )
        for body in bodies
    ]
    for code in codes:
        # The digests are fresh random values: checking each one's uniqueness would cost a query
        # per code for nothing (the unique index still holds).
        code.full_clean(validate_unique=False)
    created = RedemptionCode.objects.bulk_create(codes, batch_size=1000)
    audit_record(
        tenant=None,
        actor=actor,
        action=CODE_BATCH_AUDIT,
        target=created[0],
        before=None,
        after={"batch": batch, "count": count, "amount": usd_text(amount), "expires_at": expires_at},
        object_repr=f"redemption code batch {batch}",
    )
    logger.info("redemption codes: batch %s of %d codes worth %s USD each", batch, count, amount)
    return CodeBatch(batch=batch, codes=[_code_text(body) for body in bodies])


@transaction.atomic
def code_batch_void(*, batch: str, actor: Actor | None = None) -> int:
    """Void a batch: its codes not yet redeemed can no longer be redeemed (`code_redeem` refuses
    them as it refuses an unknown code). Codes already redeemed keep their ledger lines. Returns
    how many codes this voided (0 for a batch already voided); ValidationError for no such batch."""
    codes = RedemptionCode.objects.filter(batch=batch)
    first = codes.order_by("pk").first()
    if not isinstance(batch, str) or first is None:
        raise ValidationError("There is no such batch of redemption codes.", code="unknown_batch")
    voided = codes.filter(redeemed_at__isnull=True, voided_at__isnull=True).update(voided_at=timezone.now())
    if voided:
        audit_record(
            tenant=None,
            actor=actor,
            action="codes.void",
            target=first,
            before=None,
            after={"batch": batch, "voided": voided},
            object_repr=f"redemption code batch {batch}",
        )
    return voided


# Wrong codes: at most this many an hour per tenant and per client address (the sign-in's limiter),
# counted alike by the credits page and the API (billing/views.py, billing/api/credits.py).
REDEEM_FAILURES_PER_HOUR = 10
redeem_throttle = LoginThrottle(limit=REDEEM_FAILURES_PER_HOUR, window_seconds=3600)
WRONG_CODE = "That code cannot be redeemed: check it and try again."


def redeem_counters(*, tenant: Tenant, client_ip: str | None) -> list[str]:
    """What a redemption attempt counts against: the tenant, and the client's address."""
    return [f"redeem:tenant:{tenant.pk}", f"redeem:ip:{client_ip or '-'}"]


@transaction.atomic
def code_redeem(*, tenant: Tenant, code: str, actor: Actor | None = None) -> CreditEntry:
    """Redeem a code for a tenant: its value becomes a `redemption` line of the tenant's ledger.

    A malformed, unknown (or voided), expired or already redeemed code raises ValidationError (one sentence
    each) and changes nothing. Of concurrent attempts at one code, exactly one succeeds.
    """
    body = _code_body(code)
    if body is None:
        raise ValidationError(MALFORMED_CODE, code="malformed")
    digest = _code_digest(body)
    now = timezone.now()
    claimed = (
        RedemptionCode.objects.filter(digest=digest, redeemed_at__isnull=True, voided_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .update(redeemed_at=now, redeemed_by=tenant)
    )
    if not claimed:
        found = RedemptionCode.objects.filter(digest=digest).first()
        if found is not None and found.voided_at is not None:
            found = None  # a voided code reads as an unknown one
        if found is not None and found.redeemed_at is not None:
            raise ValidationError("That redemption code has already been redeemed.", code="redeemed")
        if found is not None and found.expires_at is not None and found.expires_at <= now:
            raise ValidationError(
                f"That redemption code expired on {found.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC.",
                code="expired",
            )
        raise ValidationError("That redemption code is not known.", code="unknown")
    found = RedemptionCode.objects.get(digest=digest)  # ours now: this transaction holds its row lock
    entry = _append(
        CreditEntry(
            tenant=tenant,
            kind=CreditEntry.Kind.REDEMPTION,
            amount=found.amount,
            redemption_code=found,
            note=f"code {found.hint}… (batch {found.batch})",
        )
    )
    _audit_entry(entry, actor=actor, action="credit.redeem")
    return entry

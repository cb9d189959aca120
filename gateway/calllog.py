"""The one log line of each call (logger `tollhouse.calls`, INFO).

`Call.settle()` passes the call's usage event (the dict of `Call.event()`), so the line and the
usage row say the same thing. The line carries who (tenant, the key's public prefix, the tenant's
end user), what (endpoint, requested and served model, provider), the outcome (status, error type),
usage and cost, and timings. Never the key itself, a token, a credential or any prompt text: the
event holds none of them, and this module adds only what the caller names.

In production the fields are top-level JSON fields (config/logs.py); in the embedded default the
message alone reads as a sentence. With the logger above INFO a call costs one level check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from billing.pricing import nanos_to_dollars
from config.logs import set_request_id

__all__ = ["call_logged", "set_request_id"]

logger = logging.getLogger("tollhouse.calls")


def _ms(microseconds: Any) -> float | None:
    return round(microseconds / 1000, 3) if isinstance(microseconds, int) else None


def call_logged(event: Mapping[str, Any], *, key_prefix: str, tenant: str) -> None:
    """Log one finished call. `key_prefix` is the key's public prefix ("" for an end-user token),
    `tenant` the tenant's slug (or id)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    cost_nanos = event.get("cost_nanos")
    cost = f"{nanos_to_dollars(cost_nanos):f}" if isinstance(cost_nanos, int) else None
    fields = {
        "request_id": event.get("request_id", ""),
        "client_request_id": event.get("client_request_id", ""),
        "tenant": tenant,
        "key_prefix": key_prefix,
        "end_user": event.get("end_user", ""),
        "endpoint": event.get("endpoint", ""),
        "model": event.get("requested_model", ""),
        "served_model": event.get("served_model", ""),
        "provider": event.get("provider", ""),
        "status": event.get("status"),
        "error_type": event.get("error_type", ""),
        "prompt_tokens": event.get("prompt_tokens"),
        "cached_tokens": event.get("cached_tokens"),
        "completion_tokens": event.get("completion_tokens"),
        "usage_estimated": event.get("usage_estimated", False),
        "cost_usd": cost,
        "latency_ms": _ms(event.get("latency_us")),
        "ttft_ms": _ms(event.get("ttft_us")),
        "upstream_ms": _ms(event.get("upstream_latency_us")),
        "overhead_ms": _ms(event.get("overhead_us")),
        "attempts": event.get("attempts"),
        "streamed": event.get("streamed", False),
    }
    logger.info(
        "call %s %s %s %s%s tokens=%s+%s cost=%s latency=%sms",
        fields["endpoint"],
        fields["status"],
        tenant,
        f"th-{key_prefix}… " if key_prefix else "",
        fields["model"],
        fields["prompt_tokens"],
        fields["completion_tokens"],
        cost,
        fields["latency_ms"],
        extra=fields,
    )

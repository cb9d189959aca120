"""Celery tasks of billing: thin wrappers over billing.usage / billing.services."""

from __future__ import annotations

from celery import shared_task

from billing.usage import usage_drain as drain


@shared_task(name="billing.tasks.usage_drain", ignore_result=True)
def usage_drain() -> int:
    return drain()

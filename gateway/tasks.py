"""Celery tasks of the gateway app (beat entries in config/settings.py CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import logging

from celery import shared_task

from gateway import bodylog

logger = logging.getLogger(__name__)


@shared_task(name="gateway.tasks.body_logs_purge", ignore_result=True)
def body_logs_purge() -> int:
    """Delete body logs older than TOLLHOUSE_BODY_LOG_RETENTION_DAYS."""
    deleted = bodylog.purge()
    if deleted:
        logger.info("body logs: %d rows past retention deleted", deleted)
    return deleted

"""The one boundary through which the hot path reads the database (on cache misses only).

The /v1 handler has no request cycle to recycle connections, so each read here does what
Django's request signals would: drop a connection that is broken or past CONN_MAX_AGE before
and after use. It runs in asgiref's shared database thread, so one connection serves them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

T = TypeVar("T")


def _with_fresh_connection(function: Callable[[], T]) -> T:
    close_old_connections()
    try:
        return function()
    finally:
        close_old_connections()


async def run_db(function: Callable[[], T]) -> T:
    return await sync_to_async(_with_fresh_connection, thread_sensitive=True)(function)

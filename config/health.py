"""`/healthz` (the process answers) and `/readyz` (it can do its work): for load balancers and
orchestrators, so unauthenticated, fast, and revealing nothing about hosts, versions or secrets.

/readyz checks what a call needs: the database answers, Redis answers (when configured), the Celery
broker accepts a connection (when it is not that same Redis), and no migration is waiting. Each
check has a short timeout; a failed one is named in the 503's body ("database", "redis", "broker",
"migrations"), never with its error text, which could carry a host or a credential (the log line has
the exception's type only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from inspect import iscoroutinefunction
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
_migrated = False  # once applied, migrations stay applied for the life of the process


READ_METHODS = ("GET", "HEAD")


def _method_not_allowed(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("Use GET or HEAD.\n", status=405, content_type="text/plain; charset=utf-8")
    response["Allow"] = ", ".join(READ_METHODS)
    response["Cache-Control"] = "no-store"
    return response


def read_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """A probe or scrape endpoint (/healthz, /readyz, /metrics): GET and HEAD, anything else a plain
    405 with `Allow`. CSRF-exempt, since they hold no session and change nothing: without it a POST
    got Django's HTML CSRF page, and TRACE or OPTIONS ran the checks and answered 200."""
    if iscoroutinefunction(view):

        @wraps(view)
        async def async_wrapper(request: HttpRequest) -> HttpResponse:
            if request.method not in READ_METHODS:
                return _method_not_allowed(request)
            response: HttpResponse = await view(request)
            return response

        return csrf_exempt(async_wrapper)

    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        if request.method not in READ_METHODS:
            return _method_not_allowed(request)
        response: HttpResponse = view(request)
        return response

    return csrf_exempt(wrapper)


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _migrations() -> None:
    global _migrated
    if _migrated:
        return
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise RuntimeError("migrations not applied")
    _migrated = True


def _redis() -> None:
    import redis

    client = redis.Redis.from_url(
        str(settings.REDIS_URL), socket_connect_timeout=CHECK_SECONDS, socket_timeout=CHECK_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()


def _broker() -> None:
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=CHECK_SECONDS) as broker:
        broker.ensure_connection(max_retries=1, timeout=CHECK_SECONDS)


def _checks() -> dict[str, Callable[[], None]]:
    checks: dict[str, Callable[[], None]] = {"database": _database, "migrations": _migrations}
    if settings.REDIS_URL:
        checks["redis"] = _redis
    broker = settings.CELERY_BROKER_URL
    if broker and broker != settings.REDIS_URL:
        checks["broker"] = _broker
    return checks


def readyz(request: HttpRequest) -> HttpResponse:
    failed = []
    for name, check in _checks().items():
        if name == "migrations" and "database" in failed:
            continue  # cannot tell without the database
        try:
            check()
        except Exception as exc:  # any failure of a dependency means "not ready", named
            logger.warning("readiness: %s failed (%s)", name, type(exc).__name__)
            failed.append(name)
            if name == "database":
                connection.close()  # a broken connection must not be reused by the next check
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed}, status=503)
    return JsonResponse({"status": "ok"})

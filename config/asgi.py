"""The ASGI application: the /v1 API (gateway/asgi.py), Django for the rest, static files, and
the gateway's per-process lifecycle.

Django does not speak ASGI lifespan, so this wrapper does: at startup it validates the
configuration and starts the usage sink (and, in embedded mode, the mock provider); at shutdown
it flushes usage and closes the pooled upstream and Redis clients.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import SuspiciousOperation  # noqa: E402
from django.http import FileResponse, Http404, HttpRequest, HttpResponse  # noqa: E402

from gateway.asgi import gateway_handler  # noqa: E402
from gateway.runtime import runtime  # noqa: E402

logger = logging.getLogger("tollhouse")


class Tollhouse:
    """/v1 API calls to the lean gateway handler; everything else to Django; lifespan here."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.gateway = gateway_handler()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.gateway.handles(scope):
            await self.gateway(scope, receive, send)
            return
        if scope["type"] == "websocket":  # nothing else here speaks WebSocket either
            await self.gateway.refuse_websocket(scope, receive, send)
            return
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await runtime.startup()
                except Exception as exc:
                    reason = str(exc) or f"{type(exc).__name__} while starting up"
                    logger.error("Tollhouse cannot start: %s", reason)
                    await send({"type": "lifespan.startup.failed", "message": reason})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await runtime.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


class StaticFiles(ASGIStaticFilesHandler):
    """Django's static handler, answering 404 (not 500) for a path that tries to leave the static
    directories (`/static/..%2fconfig%2fsettings.py`) or that no file system can hold (a NUL)."""

    def serve(self, request: HttpRequest) -> HttpResponse | FileResponse:
        try:
            return super().serve(request)
        except (SuspiciousOperation, ValueError, OSError) as exc:
            raise Http404("No such static file.") from exc


application = Tollhouse(StaticFiles(django_application))

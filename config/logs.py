"""Logging: one JSON object per line in production, readable lines in the embedded default.

- `JsonFormatter`: `{"time", "level", "logger", "message", "request_id"?, ...extra}`, one object a
  line, for a log shipper. Fields a caller passes with `extra=` (the call line of
  gateway/calllog.py, say) become top-level fields.
- `TextFormatter`: `time LEVEL logger [request id] message`, for a person at a terminal. Control
  characters in a message are escaped, so no client text can forge a second line.
- `request_id` (a context variable) is the id of the call being handled; `RequestIdFilter`, on
  every handler, stamps it on each record, so every line one call causes carries the same id.
  asyncio copies the context into tasks a call spawns, so its background settlement carries it too.

`logging_config()` builds Django's LOGGING (config/settings.py). Celery's worker and beat use the
same configuration (config/celery.py). Nothing here imports Django.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

request_id: ContextVar[str] = ContextVar("tollhouse_request_id", default="")

FORMATS = ("json", "text")
LEVELS = ("debug", "info", "warning", "error", "critical")

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "request_id", "taskName"}
)
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def set_request_id(value: str) -> None:
    """Make `value` the request id of every line logged from here on in this context (task)."""
    request_id.set(value)


class RequestIdFilter(logging.Filter):
    """Stamps the current call's request id on each record that has none of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = request_id.get()
        return True


def _time(record: logging.LogRecord) -> str:
    return (
        datetime.fromtimestamp(record.created, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _safe_text(value: str) -> str:
    """A string orjson accepts: lone surrogates (from a client's JSON escapes) shown escaped."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return _safe_text(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return _safe_text(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            line["request_id"] = rid
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES and name[:1] != "_":
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(line, default=str).decode()
        except (orjson.JSONEncodeError, TypeError):
            # A lone surrogate, an unserialisable value: the line is still written, each value shown.
            return orjson.dumps({name: _safe(value) for name, value in line.items()}).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if _CONTROL.search(message):
            message = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", message)
        rid = getattr(record, "request_id", "")
        line = f"{_time(record)} {record.levelname} {record.name}{f' [{rid}]' if rid else ''} {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def logging_config(*, fmt: str, level: str, loggers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Django's LOGGING: everything to stderr through one handler in `fmt` ("json" or "text").

    uvicorn configures its own loggers with its own handlers; they are handed back to the root
    handler here (Django configures logging again when the ASGI app loads, after uvicorn did), so
    its lines are JSON in production too. Their levels stay as uvicorn's --log-level set them.
    """
    formatter = "config.logs.JsonFormatter" if fmt == "json" else "config.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "config.logs.RequestIdFilter"}},
        "formatters": {"tollhouse": {"()": formatter}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "tollhouse",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level.upper()},
        "loggers": {
            **{name: {"handlers": [], "propagate": True} for name in _UVICORN},
            **loggers,
        },
    }

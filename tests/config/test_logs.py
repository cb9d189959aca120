"""config.logs: JSON lines in production, readable lines in the embedded default, the request id
stamped on every line, and the settings that choose between them."""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from config.logs import JsonFormatter, RequestIdFilter, TextFormatter, set_request_id

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.config.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)
    logger.propagate = True


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_it_writes_one_json_object_a_line_with_extra_fields(capture):
    logger, stream, _ = capture
    logger.info("hello %s", "world", extra={"tenant": "acme", "tokens": 12, "cost_usd": Decimal("0.5")})
    [line] = lines(stream)
    assert line["message"] == "hello world" and line["level"] == "INFO"
    assert line["logger"] == "tests.config.logs"
    assert str(line["time"]).endswith("Z") and "T" in str(line["time"])
    assert (line["tenant"], line["tokens"], line["cost_usd"]) == ("acme", 12, "0.5")
    assert "request_id" not in line  # no call in progress


def test_it_stamps_the_request_id_of_the_context_on_every_line(capture):
    logger, stream, _ = capture

    async def background() -> None:
        logger.info("from a task")

    async def one_call(rid: str) -> None:
        set_request_id(rid)
        logger.warning("first")
        await asyncio.sleep(0)
        # A task the call spawns inherits its context, so its lines carry the id too.
        await asyncio.ensure_future(background())
        logger.error("last")

    async def two_calls() -> None:
        await asyncio.gather(one_call("rid-a"), one_call("rid-b"))

    contextvars.copy_context().run(asyncio.run, two_calls())
    ids = [line["request_id"] for line in lines(stream)]
    assert sorted(ids) == ["rid-a"] * 3 + ["rid-b"] * 3


def test_a_traceback_stays_inside_its_one_line(capture):
    logger, stream, _ = capture
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    [line] = lines(stream)
    assert "ValueError: boom" in str(line["exc"])


@pytest.mark.parametrize(
    "hostile",
    ["\x00nul", "lone \ud800 surrogate", "line\nbreak", "x" * 1_000_000, object()],
    ids=["nul", "surrogate", "newline", "megabyte", "object"],
)
def test_hostile_values_still_make_one_parseable_line(capture, hostile):
    logger, stream, _ = capture
    logger.info("value %s", hostile, extra={"field": hostile})
    [line] = lines(stream)
    assert line["level"] == "INFO" and "field" in line


def test_the_text_formatter_is_readable_and_cannot_be_forged_into_two_lines():
    record = logging.LogRecord("tollhouse.calls", logging.INFO, __file__, 1, "model %s", ("a\nFAKE b",), None)
    record.request_id = "abc123"
    text = TextFormatter().format(record)
    assert "\n" not in text and "INFO tollhouse.calls [abc123] model a\\x0aFAKE b" in text


def _settings_logging(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "TOLLHOUSE_"))}
    environment.update(env)
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); "
        "from django.conf import settings; import logging; "
        "print(settings.LOGGING['formatters']['tollhouse']['()'], settings.LOGGING['root']['level'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_settings_pick_json_in_production_text_embedded_and_honour_the_override(tmp_path):
    production = {
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
        "TOLLHOUSE_SECRET_KEY": "x" * 40,
        "TOLLHOUSE_VAR_DIR": str(tmp_path),
    }
    assert _settings_logging(**production) == "config.logs.JsonFormatter INFO"
    assert _settings_logging(TOLLHOUSE_VAR_DIR=str(tmp_path)) == "config.logs.TextFormatter INFO"
    assert (
        _settings_logging(**production, TOLLHOUSE_LOG_FORMAT="text", TOLLHOUSE_LOG_LEVEL="debug")
        == "config.logs.TextFormatter DEBUG"
    )
    assert (
        _settings_logging(TOLLHOUSE_VAR_DIR=str(tmp_path), TOLLHOUSE_LOG_FORMAT="JSON")
        == "config.logs.JsonFormatter INFO"
    )


def test_a_bad_log_format_or_level_is_one_config_error():
    from config.env import EnvReader

    env = EnvReader({"TOLLHOUSE_LOG_FORMAT": "xml", "TOLLHOUSE_LOG_LEVEL": "loud"})
    from config.logs import FORMATS, LEVELS

    assert env.choice("TOLLHOUSE_LOG_FORMAT", "json", FORMATS) == "json"
    assert env.choice("TOLLHOUSE_LOG_LEVEL", "info", LEVELS) == "info"
    assert env.errors == [
        "TOLLHOUSE_LOG_FORMAT must be one of json, text, not 'xml'.",
        "TOLLHOUSE_LOG_LEVEL must be one of debug, info, warning, error, critical, not 'loud'.",
    ]


def test_celery_logs_json_in_production_at_its_loglevel(tmp_path):
    """The worker and beat configure logging through Celery's setup_logging signal (config/celery.py)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "TOLLHOUSE_"))}
    environment.update(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/unused",
        TOLLHOUSE_SECRET_KEY="x" * 40,
        TOLLHOUSE_VAR_DIR=str(tmp_path),
    )
    code = (
        "from config.celery import app; import logging; app.log.setup(loglevel='WARNING'); "
        "logging.getLogger('celery.worker').info('not shown'); "
        "logging.getLogger('celery.worker').warning('worker says %s', 'hi')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    [line] = [orjson.loads(text) for text in done.stderr.splitlines() if text.strip()]
    assert (line["logger"], line["level"], line["message"]) == ("celery.worker", "WARNING", "worker says hi")

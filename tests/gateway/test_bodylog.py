"""gateway.bodylog: per-tenant body logging — off by default, secrets redacted, bodies capped,
written off the request path, purged after the retention period."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.http import HttpResponse, StreamingHttpResponse
from django.test import override_settings

from accounts.models import Tenant
from accounts.services import tenant_create, tenant_save
from gateway import bodylog
from gateway.auth import KeyInfo
from gateway.bodylog import REDACTED, BodyLogWriter, body_text, capture, capture_response, purge, redact
from gateway.models import BodyLog
from gateway.tasks import body_logs_purge

KEY = "th-abcdefghijkl" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f'{{"messages": [{{"role": "user", "content": "my key is {KEY} ok"}}]}}', KEY),
        (f"Authorization: Bearer {JWT}", JWT),
        ("curl -H 'Authorization: Bearer abc.DEF-123_xyz' https://x", "abc.DEF-123_xyz"),
        ("token " + JWT + " in prose", JWT),
        ("openai sk-proj-Ab12Cd34Ef56Gh78Ij90 here", "sk-proj-Ab12Cd34Ef56Gh78Ij90"),
        ("anthropic sk-ant-api03-abcdefghijklmnop", "sk-ant-api03-abcdefghijklmnop"),
        ("groq gsk_Q2x8vLk0aZ7m1NnPp3RrSsTt", "gsk_Q2x8vLk0aZ7m1NnPp3RrSsTt"),
        ("aws AKIAIOSFODNN7EXAMPLE id", "AKIAIOSFODNN7EXAMPLE"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG"),
        ('{"api_key": "plain-words-are-secret-too"}', "plain-words-are-secret-too"),
        ('{"password":"hunter2!", "user": "bob"}', "hunter2!"),
        ('{"tool": "{\\"client_secret\\": \\"s3cr3t-v@lue\\"}"}', "s3cr3t-v@lue"),
        ("postgres://admin:Pa55w0rd@db.internal:5432/app", "Pa55w0rd"),
        ("https://user:tok%40en@example.com/path", "tok%40en"),
        ("google AIzaSyD-1234567890abcdefghijklmnopqrstu", "AIzaSyD-1234567890abcdefghijklmnopqrstu"),
        ("github ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ],
)
def test_it_redacts_obvious_secrets(text, secret):
    redacted = redact(text)
    assert secret not in redacted and REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        '{"model": "gpt-4.1", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]}',
        '{"usage": {"prompt_tokens": 20, "completion_tokens": 5}}',
        "marker-4f1c0d9e8b7a6f5e4d3c2b1a09f8e7d6 stays readable",
        "https://example.com/docs?page=2",
    ],
)
def test_it_keeps_ordinary_bodies_readable(text):
    assert redact(text) == text


def test_hostile_bytes_become_storable_text():
    text = body_text(b"nul\x00 bad utf8 \xff\xfe lone surrogate \xed\xa0\x80 end", truncated=False)
    assert "\x00" not in text and "end" in text
    text.encode("utf-8")  # no lone surrogate left: PostgreSQL can store it


def test_a_megabyte_of_near_secrets_is_redacted_quickly():
    text = ("th-" + "a" * 7 + " sk-x " + '"api_key": ' + "Bearer ") * 60_000
    started = time.monotonic()
    redact(text)
    assert time.monotonic() - started < 5


def test_a_cut_body_loses_its_last_partial_word():
    # The cap fell in the middle of a key: what is left of it must not be stored.
    text = body_text(b'{"content": "see th-abcdefg', truncated=True)
    assert "abcdefg" not in text and text.startswith('{"content": "')


def key_info(tenant: Tenant, *, body_logging: bool) -> KeyInfo:
    return KeyInfo(
        id=None,
        tenant_id=tenant.id,
        digest="",
        active=True,
        tenant_active=True,
        expires_at=None,
        allowed_models=None,
        allowed_networks=(),
        ip_restricted=False,
        tenant_slug=tenant.slug,
        body_logging=body_logging,
    )


@pytest.fixture
def fresh_writer(monkeypatch):
    writer = BodyLogWriter()
    monkeypatch.setattr(bodylog, "writer", writer)
    return writer


def test_it_is_off_by_default_and_then_captures_nothing(db, fresh_writer):
    from gateway.auth import tenant_policy

    tenant = tenant_create(name="Acme", slug="acme")
    assert tenant.body_logging is False and tenant_policy(tenant, api_key_id=None)["body_logging"] is False
    capture(
        key=key_info(tenant, body_logging=False),
        request_id="r1",
        endpoint="chat.completions",
        status=200,
        request_body=b"{}",
        response_body=b"{}",
    )
    assert not fresh_writer.pending


@pytest.mark.django_db(transaction=True)
def test_it_writes_redacted_capped_rows_for_a_tenant_that_turned_it_on(fresh_writer):
    tenant = tenant_create(name="Acme", slug="acme")
    tenant.body_logging = True
    tenant_save(tenant=tenant)
    key = key_info(Tenant.objects.get(pk=tenant.pk), body_logging=True)
    big = b'{"content": "' + b"x" * 70_000 + b'"}'

    async def calls() -> int:
        capture(
            key=key,
            request_id="r1",
            endpoint="chat.completions",
            status=200,
            request_body=f'{{"content": "hello {KEY}"}}'.encode(),
            response_body=b'{"choices": []}',
        )
        capture(
            key=key, request_id="r2", endpoint="embeddings", status=400, request_body=big, response_body=b""
        )
        return await fresh_writer.flush()

    with override_settings(TOLLHOUSE_BODY_LOG_MAX_BYTES=64 * 1024):
        assert asyncio.run(calls()) == 2
    first, second = BodyLog.objects.order_by("request_id")
    assert first.tenant_id == tenant.id and first.status == 200 and first.endpoint == "chat.completions"
    assert "hello" in first.request_body and KEY not in first.request_body and REDACTED in first.request_body
    assert first.response_body == '{"choices": []}' and not first.request_truncated
    assert second.request_truncated and len(second.request_body) <= 64 * 1024
    assert second.status == 400


@pytest.mark.django_db(transaction=True)
def test_a_stream_is_captured_as_relayed_and_up_to_the_cap(fresh_writer):
    tenant = tenant_create(name="Acme", slug="acme")
    key = key_info(tenant, body_logging=True)
    closed = []

    async def relay() -> AsyncIterator[bytes]:
        try:
            for i in range(5):
                yield b"data: " + b"%d" % i * 400 + b"\n\n"
        finally:
            closed.append(True)

    async def call() -> list[bytes]:
        response = capture_response(
            key=key,
            request_id="s1",
            endpoint="chat.completions",
            request_body=b'{"stream": true}',
            response=StreamingHttpResponse(relay(), content_type="text/event-stream"),
        )
        chunks = [chunk async for chunk in response.streaming_content]
        await fresh_writer.flush()
        return chunks

    with override_settings(TOLLHOUSE_BODY_LOG_MAX_BYTES=1024):
        chunks = asyncio.run(call())
    assert len(chunks) == 5 and closed == [True]  # the client got it all, unchanged
    row = BodyLog.objects.get()
    assert (
        row.response_truncated and row.response_body.startswith("data: 000") and len(row.response_body) < 1024
    )


def test_an_untouched_response_when_off(fresh_writer):
    response = HttpResponse(b"{}")
    key = replace(key_info(Tenant(id=1, slug="x"), body_logging=False))
    assert (
        capture_response(key=key, request_id="r", endpoint="e", request_body=b"", response=response)
        is response
    )
    assert (
        capture_response(key=None, request_id="r", endpoint="e", request_body=b"", response=response)
        is response
    )
    assert not fresh_writer.pending


def test_wrong_types_store_nothing_rather_than_fail(fresh_writer):
    key = key_info(Tenant(id=1, slug="x"), body_logging=True)
    capture(key=key, request_id="r", endpoint="e", status=200, request_body=None, response_body=12)  # type: ignore[arg-type]
    [entry] = fresh_writer.pending
    assert (entry.request_body, entry.response_body) == (b"", b"")


def test_a_full_queue_drops_bodies_and_says_so_without_failing_the_call(caplog):
    writer = BodyLogWriter(max_pending_bytes=100)
    key = key_info(Tenant(id=1, slug="x"), body_logging=True)
    entry = bodylog.Entry(
        request_id="r",
        tenant_id=1,
        api_key_id=None,
        endpoint="e",
        status=200,
        request_body=b"x" * 80,
        request_truncated=False,
        response_body=b"",
        response_truncated=False,
        created_at=datetime.now(tz=UTC),
    )
    writer.add(entry)
    writer.add(entry)
    assert len(writer.pending) == 1 and writer.dropped == 1 and key.body_logging
    writer.pending.clear()
    writer.pending_bytes = 0
    with caplog.at_level(logging.WARNING, logger="gateway.bodylog"):
        asyncio.run(writer.flush())
    assert "1 calls' bodies dropped" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_database_failure_loses_the_batch_not_the_call(fresh_writer, caplog):
    key = key_info(Tenant(id=1, slug="x"), body_logging=True)
    capture(
        key=key, request_id="r", endpoint="e", status=200, request_body=b"secret words", response_body=b""
    )
    from tests.support.process import database_down

    with database_down(), caplog.at_level(logging.ERROR, logger="gateway.bodylog"):
        assert asyncio.run(fresh_writer.flush()) == 0
    assert "1 calls' bodies not written" in caplog.text and "secret words" not in caplog.text
    assert not fresh_writer.pending


def test_retention_purges_old_rows_only(db):
    tenant = tenant_create(name="Acme", slug="acme")
    now = datetime.now(tz=UTC)
    for age_days in (0, 6, 8, 30):
        BodyLog.objects.create(
            request_id=f"r{age_days}",
            tenant=tenant,
            endpoint="chat.completions",
            status=200,
            created_at=now - timedelta(days=age_days),
        )
    with override_settings(TOLLHOUSE_BODY_LOG_RETENTION_DAYS=7):
        assert purge(now=now) == 2
        assert body_logs_purge() == 0
    assert sorted(BodyLog.objects.values_list("request_id", flat=True)) == ["r0", "r6"]


def test_the_purge_runs_hourly_from_beat():
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["body-logs-purge"]
    assert entry["task"] == body_logs_purge.name == "gateway.tasks.body_logs_purge"


def test_the_key_info_carries_the_flag_the_slug_and_the_public_prefix(db):
    from accounts.services import api_key_issue
    from gateway.auth import _read_key

    tenant = tenant_create(name="Acme", slug="acme")
    issued = api_key_issue(tenant=tenant, name="k")
    info = _read_key(issued.api_key.prefix)
    assert info is not None and not info.body_logging
    assert (info.prefix, info.tenant_slug) == (issued.api_key.prefix, "acme")
    assert info.prefix in issued.raw and info.prefix != issued.raw
    tenant.body_logging = True
    tenant_save(tenant=tenant)
    info = _read_key(issued.api_key.prefix)
    assert info is not None and info.body_logging

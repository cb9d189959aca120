"""The drain task through a real Celery worker process and the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from django.conf import settings
from django.db import connection

from billing.models import UsageRecord
from billing.tasks import usage_drain
from billing.usage import FIELD, stream_key
from config.redis import sync_client
from tests.billing.test_usage_records_save import event

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
    ),
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker():
    db = connection.settings_dict
    env = {
        **os.environ,
        # The worker is another process: point it at the test database the tests write to.
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "TOLLHOUSE_TESTING": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def test_it_drains_the_stream_in_a_worker_process(worker):
    for i in range(5):
        sync_client().xadd(stream_key(), {FIELD: orjson.dumps(event(f"w{i}"))})
    usage_drain.delay()
    deadline = time.monotonic() + 30
    while UsageRecord.objects.count() < 5 and time.monotonic() < deadline:
        assert worker.poll() is None, worker.stdout.read().decode()
        time.sleep(0.2)
    assert UsageRecord.objects.count() == 5
    assert sync_client().xlen(stream_key()) == 0

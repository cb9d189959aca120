"""An idle Celery worker + beat (as the README starts them) stay quiet, and beat keeps its schedule
file in TOLLHOUSE_VAR_DIR, never in the checkout.

Real `celery -A config worker` and `celery -A config beat` processes, on the test database and
Redis, with the usage drain every second: the drain must keep running (the worker's task counter
grows during the idle window), but no "Task ... received/succeeded" or "Sending due task" line may
appear in their output.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.support.manage import database_url

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).parent / "celery")  # the venv running the tests
PER_TASK_LINE = re.compile(r"Task \S+\[[^\]]+\] (received|succeeded)|Sending due task")

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs a real Redis broker")


def _drain_count(node: str) -> int:
    from config.celery import app

    stats = app.control.inspect(destination=[node], timeout=3).stats() or {}
    return int(stats.get(node, {}).get("total", {}).get("billing.tasks.usage_drain", 0))


@pytest.fixture
def celery_processes(db: None, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if not Path(CELERY).exists():
        pytest.skip(f"{CELERY} is not installed")
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "TOLLHOUSE_VAR_DIR": str(tmp_path / "var"),
        "TOLLHOUSE_USAGE_DRAIN_SECONDS": "1",
    }
    env.pop("TOLLHOUSE_TESTING", None)
    node = f"thlogs{os.getpid()}@{socket.gethostname()}"
    logs = {"worker": tmp_path / "worker.log", "beat": tmp_path / "beat.log"}
    commands = {
        "worker": [CELERY, "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "1", "-n", node],
        "beat": [CELERY, "-A", "config", "beat", "--loglevel", "INFO"],
    }
    processes = []
    for name, command in commands.items():
        with logs[name].open("wb") as out:
            processes.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
    try:
        yield {"node": node, "logs": logs, "var": tmp_path / "var", "processes": processes}
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def _output(celery_processes: dict[str, Any]) -> str:
    return "\n".join(
        f"--- {name} ---\n{path.read_text(errors='replace')}"
        for name, path in celery_processes["logs"].items()
    )


def test_it_keeps_idle_worker_and_beat_quiet(celery_processes: dict[str, Any]) -> None:
    node = celery_processes["node"]
    deadline = time.monotonic() + 90
    while _drain_count(node) == 0:
        for process in celery_processes["processes"]:
            assert process.poll() is None, "a celery process exited:\n" + _output(celery_processes)
        assert time.monotonic() < deadline, "the usage drain never ran:\n" + _output(celery_processes)
        time.sleep(1)
    before = _drain_count(node)
    time.sleep(6)  # idle: beat sends the drain every second, the worker runs it
    after = _drain_count(node)

    output = _output(celery_processes)
    assert after > before, "the drain stopped running during the idle window:\n" + output
    assert not PER_TASK_LINE.search(output), output
    assert "Traceback" not in output, output
    assert f"{node} ready." in output, output  # the worker does log at INFO, just not per task


def test_it_keeps_the_beat_schedule_out_of_the_checkout(celery_processes: dict[str, Any]) -> None:
    deadline = time.monotonic() + 90
    while not list(celery_processes["var"].glob("celerybeat-schedule*")):
        assert celery_processes["processes"][1].poll() is None, "beat exited:\n" + _output(celery_processes)
        assert time.monotonic() < deadline, "beat wrote no schedule file:\n" + _output(celery_processes)
        time.sleep(0.5)
    assert not list(ROOT.glob("celerybeat-schedule*")), "beat wrote its schedule into the checkout"

"""Tollhouse benchmark: one command sets everything up, measures, and writes bench/REPORT.md.

    .venv/bin/python bench/run.py [--quick] [--rounds N] [--baseline REV]

Layout on the 2-core box: the gateway (`manage.py serve`, 1 worker) alone on core 0; the mock
provider and the load generator share core 1. The governed path (a key with rpm, tpm and
concurrency limits and a hard budget) is measured next to the bare path (the demo key, which
nothing governs) in the same gateway process, in interleaved rounds. With --baseline, the gateway
as it was at REV is measured against this checkout in the same run (interleaved rounds, one
gateway at a time, both on core 0). See bench/README.md for what is measured and how.

Exit status: 0 when the run completed (missed targets included), 1 when a measurement phase
failed part-way (the report is still written), 2 when setup failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import baseline
import compare
import dialects
import governed
import loadgen
import procs
import psycopg
import pyspy
import redis
import report
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
OUT_DIR = BENCH_DIR / "out"
REPORT_PATH = BENCH_DIR / "REPORT.md"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable

DB_NAME = "tollhouse_bench"
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_DB = 14
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
REDIS_PREFIX = "th:"
USAGE_STREAM = REDIS_PREFIX + "usage:stream"  # billing.usage.STREAM under the prefix
# --baseline: the older gateway gets its own database and Redis prefix (same server, same db 14).
BASELINE_DIR = OUT_DIR / "baseline"
BASE_DB_NAME = "tollhouse_bench_base"
BASE_REDIS_PREFIX = "thbase:"

GATEWAY_CORE, LOAD_CORE = 0, 1
PYSPY_RATE_HZ = 200
MODEL = "gpt-4.1"
# The mock answers 16 tokens at once by default; the directive makes the body self-describing.
PROMPT = "Say hello in one sentence. [mock tokens=16]"
STREAM_PROMPT = "Count slowly. [mock ttft_ms=20 chunk_ms=2 tokens=32]"
# The streamed profile at c=32: small delays, so the stream is not all idle waiting for the mock.
PROFILE_STREAM_PROMPT = "Count quickly. [mock ttft_ms=1 chunk_ms=1 tokens=32]"

TARGET_RPS_C32 = 400.0
TARGET_RSS_AFTER_REQUESTS = 20_000
# Issue 17 (governed path, this checkout; replacing the bare path's 2.5 ms / 10 ms, 200 MB and 0.90).
TARGET_OVERHEAD_P50_MS = 0.5
TARGET_OVERHEAD_P99_MS = 2.0
TARGET_TTFT_OVERHEAD_P50_MS = 1.0
TARGET_RSS_MB = 150.0
TARGET_CPU_RATIO = 0.5  # governed CPU per call at c=32, after / before
TARGET_CEILING_FRACTION = 1 / 3  # governed req/s at c=32 / the Python ceiling's
TARGET_METRICS_SHARE_PCT = 2.0  # the "metrics" category of the governed JSON profile

# Issue 6: the governed path next to the bare one. The governed key belongs to the demo tenant (the
# slug gateway.services.demo_prepare gives it) and has every kind of limit, set so high that the
# bench never hits one: each call pays the full admission and settlement, and none is refused.
DEMO_TENANT = "demo"
GOVERNED_KEY_OPTIONS = ("--rpm", "1000000", "--tpm", "1000000000", "--concurrency", "100000")
GOVERNED_BUDGET_OPTIONS = ("--usd", "1000000", "--period", "month")  # hard (no --soft)
TARGET_GOVERNED_RPS_RATIO = 0.95  # governed / bare req/s at c=32
TARGET_GOVERNED_EXTRA_P50_MS = 0.3  # governed minus bare overhead p50 at c=1
RATELIMIT_HEADERS = tuple(
    f"x-ratelimit-{what}-{unit}"
    for unit in ("requests", "tokens")
    for what in ("limit", "remaining", "reset")
)
# The two paths of the comparison, and the load target (key) each one uses.
PATH_TARGET = {"bare": "gateway", "governed": "governed"}
GATEWAY_TARGETS = ("gateway", "governed")  # both hit the main gateway process


@dataclass(frozen=True)
class Plan:
    """Counts and durations; --quick divides them by about ten."""

    name: str
    latency_warmup: int
    latency_requests: int
    stream_warmup: int
    stream_requests: int
    tput_warmup_s: int  # wrk takes whole seconds
    tput_s: int
    direct_s: int
    soak_target: int  # gateway requests before the final RSS reading
    soak_max_s: float  # never let a slow gateway blow the time budget
    profile_s: int
    compare_rounds: int  # rounds of each interleaved comparison: governed vs bare, --baseline before vs after
    compare_tput_s: int  # seconds of c=32 per side per round in those comparisons
    monitor_requests: int  # c=1 calls per path watched with Redis MONITOR (not timed)
    # Issue 14, per scenario and round: c=1 JSON calls (and warm-up), c=1 streams (and warm-up),
    # seconds of c=32 after a warm-up of the same seconds as tput_warmup_s.
    dialect_requests: int = 1000
    dialect_warmup: int = 100
    dialect_stream_requests: int = 40
    dialect_stream_warmup: int = 5
    dialect_tput_s: int = 6
    # --baseline, per side and round: c=1 streams (and warm-up) for the TTFT overhead.
    ba_stream_requests: int = 60
    ba_stream_warmup: int = 5


FULL = Plan("full", 200, 2000, 20, 200, 3, 15, 10, TARGET_RSS_AFTER_REQUESTS, 100.0, 10, 3, 10, 500)
QUICK = Plan(
    "quick", 20, 200, 5, 20, 1, 2, 1, TARGET_RSS_AFTER_REQUESTS // 10, 10.0, 3, 2, 2, 50, 100, 10, 8, 2, 2,
    ba_stream_requests=10, ba_stream_warmup=2,
)  # fmt: skip


class SetupError(Exception):
    """The benchmark could not run at all (exit 2)."""


@dataclass
class Side:
    """One server of the before/after comparison: how it starts, and where it listens once started."""

    name: str  # "before" (the baseline REV), "after" (this checkout) or "ceiling" (bench/ceiling.py)
    command: Callable[[int], list[str]]  # argv for a port, unpinned
    shown: str  # the command as the report shows it
    cwd: Path
    env: dict[str, str]
    api_key: str = ""  # the demo key: the bare path
    governed_key: str = ""  # limits and a hard budget: the governed path
    url: str = ""
    kind: str = "gateway"  # or "ceiling": no keys, no accounting, only the pass-through
    usage_stream: str = ""  # the side's usage stream in Redis (gateways only)


def ceiling_command(python: str, mock_url: str, port: int) -> list[str]:
    """bench/ceiling.py: raw ASGI + one aiohttp session, served like the gateway (uvicorn, uvloop,
    httptools, one worker, no access log)."""
    return [
        python,
        str(BENCH_DIR / "ceiling.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--mock-url",
        mock_url,
    ]


def serve_command(python: str, port: int) -> list[str]:
    """This checkout's gateway, started the way production starts it (see config/server.py)."""
    return [python, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def uvicorn_command(python: str, port: int) -> list[str]:
    """An older tree without `manage.py serve`: uvicorn's own command line, as the bench used to run it."""
    return [
        python, "-m", "uvicorn", "config.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def shown_python(python: str) -> str:
    path = Path(python)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else python


def shown_command(argv: list[str], python: str, core: int | None) -> str:
    """argv as the report shows it: a short interpreter name, and PORT for the port each start picks."""
    out = [python, *argv[1:]]
    out[out.index("--port") + 1] = "PORT"
    return " ".join(procs.pinned(out, core))


@dataclass(frozen=True)
class Sample:
    """Resource counters at one instant, to be differenced over a measured run."""

    t: float
    gateway_cpu_s: float
    mock_cpu_s: float
    cores: dict[int, tuple[int, int]]
    redis_cpu_s: float


@dataclass
class Bench:
    plan: Plan
    groups: procs.ProcessGroups
    pin: bool
    results: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    gateway_url: str = ""
    mock_url: str = ""
    api_key: str = ""  # the demo key: the bare path
    governed_key: str = ""  # limits and a budget: the governed path
    governed_prefix: str = ""
    gateway: procs.Managed | None = None
    mock: procs.Managed | None = None
    redis: redis.Redis | None = None
    wrk: str | None = None
    gateway_requests: int = 0  # as counted by the clients, warm-ups included
    # Redis commands seen while the gateway was idle (other clients of the server), and how long.
    noise_ops: Counter[str] = field(default_factory=Counter)
    noise_s: float = 0.0
    redis_window: dict[str, Any] = field(default_factory=dict)
    baseline_rev: str | None = None
    baseline_tree: baseline.BaselineTree | None = None
    sides: dict[str, Side] = field(default_factory=dict)
    side_calls: Counter[str] = field(default_factory=Counter)  # per before/after side, warm-ups included
    profile_sides: bool = False  # --baseline: py-spy on the before and after sides (once each)

    # -- helpers -------------------------------------------------------------------------------------
    def core(self, core: int) -> int | None:
        return core if self.pin else None

    @property
    def gateway_pid(self) -> int:
        assert self.gateway is not None
        return self.gateway.proc.pid

    @property
    def mock_pid(self) -> int:
        assert self.mock is not None
        return self.mock.proc.pid

    def r(self) -> redis.Redis:
        assert self.redis is not None
        return self.redis

    def body(self, *, stream: bool, prompt: str | None = None) -> bytes:
        prompt = prompt or (STREAM_PROMPT if stream else PROMPT)
        return json.dumps(
            {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": stream}
        ).encode()

    def headers(self, target: str = "gateway") -> dict[str, str]:
        # Sent to the mock as well, so both paths carry the same request bytes (the demo key's).
        side, _, path = target.partition("/")
        if side in self.sides:
            key = self.sides[side].governed_key if path == "governed" else self.sides[side].api_key
        else:
            key = self.governed_key if target == "governed" else self.api_key
        return {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def url(self, target: str) -> str:
        """target: "gateway" (the main one, demo key), "governed" (the main one, governed key),
        "mock", or a before/after side's name ("after": its demo key; "after/governed": its governed
        key; "ceiling": the Python ceiling, which forwards whatever key it gets)."""
        base = {"gateway": self.gateway_url, "governed": self.gateway_url, "mock": self.mock_url}.get(target)
        return (
            base if base is not None else self.sides[target.partition("/")[0]].url
        ) + "/v1/chat/completions"

    def count_calls(self, target: str, calls: int) -> None:
        """Calls as the clients count them (warm-ups included), per gateway: the usage events must match."""
        if target in GATEWAY_TARGETS:
            self.gateway_requests += calls
        side = target.partition("/")[0]
        if side in self.sides:
            self.side_calls[side] += calls

    def load(self, target: str, **kwargs: Any) -> loadgen.LoadResult:
        spec = loadgen.LoadSpec(url=self.url(target), headers=self.headers(target), **kwargs)
        result = loadgen.run(spec)
        self.count_calls(target, result.completed + result.warmup_completed)
        return result

    def sample(self) -> Sample:
        cpu = self.r().info("cpu")
        return Sample(
            t=time.monotonic(),
            gateway_cpu_s=procs.cpu_seconds(self.gateway_pid),
            mock_cpu_s=procs.cpu_seconds(self.mock_pid),
            cores=procs.core_ticks(),
            redis_cpu_s=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        )

    @staticmethod
    def usage(a: Sample, b: Sample, requests: int) -> dict[str, Any]:
        wall = b.t - a.t
        gateway_cpu = b.gateway_cpu_s - a.gateway_cpu_s
        redis_cpu = b.redis_cpu_s - a.redis_cpu_s
        busy = {}
        for core, (busy_b, total_b) in b.cores.items():
            busy_a, total_a = a.cores.get(core, (0, 0))
            busy[str(core)] = round((busy_b - busy_a) / max(total_b - total_a, 1), 3)
        return {
            "wall_s": round(wall, 3),
            "gateway_cpu_s": round(gateway_cpu, 3),
            "gateway_cores": round(gateway_cpu / wall, 3) if wall else None,
            "gateway_cpu_ms_per_request": round(gateway_cpu * 1000 / requests, 3) if requests else None,
            "mock_cores": round((b.mock_cpu_s - a.mock_cpu_s) / wall, 3) if wall else None,
            "redis_cores": round(redis_cpu / wall, 3) if wall else None,
            "redis_cpu_us_per_request": round(redis_cpu * 1e6 / requests, 1) if requests else None,
            "core_busy": busy,
        }

    def busy_sample(self) -> tuple[float, float, float]:
        """(time, busy CPU seconds of all cores, CPU seconds of the bench's own processes): the
        gateway, the mock, this harness with what it waited for (wrk, manage.py), and Redis (shared
        with other users, but counted as ours: the estimate of other work stays a lower bound)."""
        busy = sum(b for b, _ in procs.core_ticks().values()) / procs.CLOCK_TICKS
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        own += procs.cpu_seconds(self.gateway_pid) + procs.cpu_seconds(self.mock_pid)
        cpu = self.r().info("cpu")
        own += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        return time.monotonic(), busy, own

    @staticmethod
    def other_cores(a: tuple[float, float, float], b: tuple[float, float, float]) -> float | None:
        """Cores' worth of CPU used by other work on the machine between two samples (e.g. test
        suites of other people): all busy time minus the bench's own."""
        wall = b[0] - a[0]
        return round(max((b[1] - a[1]) - (b[2] - a[2]), 0.0) / wall, 2) if wall > 0 else None

    def commandstats(self) -> dict[str, int]:
        stats = self.r().info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    @staticmethod
    def stats_delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        # INFO is the harness's own probe; everything else counts.
        out = {name: b[name] - a.get(name, 0) for name in b if name != "info"}
        return {name: n for name, n in sorted(out.items()) if n}

    @contextlib.contextmanager
    def noise_window(self) -> Iterator[None]:
        """Count Redis commands while only the mock is under load: they come from other clients."""
        before, t = self.commandstats(), time.monotonic()
        yield
        self.noise_ops.update(self.stats_delta(before, self.commandstats()))
        self.noise_s += time.monotonic() - t

    def requests_seen(self) -> int:
        """Calls the gateway handled: one usage event each (XLEN) also counts requests cut off by wrk."""
        try:
            return max(self.gateway_requests, int(self.r().xlen(USAGE_STREAM)))
        except redis.RedisError:
            return self.gateway_requests

    def check_gateway_alive(self) -> None:
        if self.gateway is None or self.gateway.proc.poll() is not None:
            log = procs.tail(self.gateway.log_path if self.gateway else None)
            raise RuntimeError(f"the gateway process exited; last log lines:\n{log}")

    # -- setup ---------------------------------------------------------------------------------------
    def setup(self) -> None:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        self.wrk = shutil.which("wrk")
        self._fresh_database(DB_NAME)
        self.redis = redis.Redis.from_url(REDIS_URL)
        try:
            self.r().flushdb()
            self.results.setdefault("meta", {})["redis_version"] = self.r().info("server")["redis_version"]
        except redis.RedisError as exc:
            raise SetupError(f"Redis at {REDIS_URL} is not usable: {exc}") from exc

        self.env = {
            **os.environ,
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "TOLLHOUSE_SECRET_KEY": secrets.token_urlsafe(48),
            "TOLLHOUSE_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "TOLLHOUSE_EMBEDDED_MOCK": "false",
            "TOLLHOUSE_LOG_LEVEL": "WARNING",
            "TOLLHOUSE_DEBUG": "false",
            "TOLLHOUSE_REDIS_PREFIX": REDIS_PREFIX,
            # The Responses deployment's credential (the mock accepts any): see _responses_route.
            dialects.RESPONSES_CREDENTIAL_ENV: "bench-" + secrets.token_hex(8),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("TOLLHOUSE_TESTING", None)
        self._manage("migrate", "--noinput", "-v", "0")
        self._start_mock()
        self.api_key = self._demo_key()
        self._responses_route()
        self._governed_key()
        if self.baseline_rev is not None:
            self._setup_baseline(self.baseline_rev)
        self._start_gateway()

    def _setup_baseline(self, rev: str) -> None:
        """The gateway at REV: exported tree, its own venv, database, Redis prefix and key; same mock."""
        BASELINE_DIR.mkdir(parents=True, exist_ok=True)
        print(f"[bench] preparing the baseline {rev} (its venv: cached, or a minute or two to build) ...",
              flush=True)  # fmt: skip
        try:
            tree = baseline.prepare(
                root=ROOT, rev=rev, work_dir=BASELINE_DIR, current_python=PYTHON, log=BASELINE_DIR / "pip.log"
            )
        except (baseline.BaselineError, OSError, subprocess.SubprocessError) as exc:
            raise SetupError(f"cannot prepare the baseline {rev}: {exc}") from exc
        self.baseline_tree = tree
        self._fresh_database(BASE_DB_NAME)
        env = {
            **self.env,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BASE_DB_NAME}",
            "TOLLHOUSE_REDIS_PREFIX": BASE_REDIS_PREFIX,
            "VIRTUAL_ENV": str(tree.venv),
        }
        python = str(tree.python)
        where: dict[str, Any] = {"python": python, "cwd": tree.src, "env": env}
        self._manage("migrate", "--noinput", "-v", "0", **where)
        has_serve = (tree.src / "config" / "management" / "commands" / "serve.py").exists()
        command = serve_command if has_serve else uvicorn_command
        api_key = self._demo_key(**where)
        try:
            # The same governed key as this checkout's, issued by that tree's own manage.py commands.
            governed_key, _, _ = self._issue_governed_key(**where)
        except SetupError as exc:
            raise SetupError(f"the baseline {rev} cannot issue the governed key: {exc}") from exc
        self.sides["before"] = Side(
            name="before",
            command=functools.partial(command, python),
            shown=shown_command(command(python, 0), "python", self.core(GATEWAY_CORE)),
            cwd=tree.src,
            env=env,
            api_key=api_key,
            governed_key=governed_key,
            usage_stream=BASE_REDIS_PREFIX + "usage:stream",
        )
        self.sides["after"] = Side(
            name="after",
            command=functools.partial(serve_command, PYTHON),
            shown=shown_command(serve_command(PYTHON, 0), shown_python(PYTHON), self.core(GATEWAY_CORE)),
            cwd=ROOT,
            env=self.env,
            api_key=self.api_key,
            governed_key=self.governed_key,
            usage_stream=USAGE_STREAM,
        )
        # The Python ceiling: the same request bytes as the after side's governed calls (it forwards
        # the key untouched; the mock accepts any).
        ceiling = functools.partial(ceiling_command, PYTHON, self.mock_url)
        self.sides["ceiling"] = Side(
            name="ceiling",
            command=ceiling,
            shown=shown_command(ceiling(0), shown_python(PYTHON), self.core(GATEWAY_CORE)).replace(
                self.mock_url, "MOCK_URL"
            ),
            cwd=ROOT,
            env=self.env,
            api_key=self.governed_key,
            governed_key=self.governed_key,
            kind="ceiling",
        )

    def _demo_key(self, **where: Any) -> str:
        lines = self._manage("demo", "--mock-url", self.mock_url, "--key-only", **where).strip().splitlines()
        if not lines or not lines[-1].startswith("th-"):
            raise SetupError(f"`manage.py demo --key-only` printed no key: {lines!r}")
        return lines[-1]

    def _responses_route(self) -> None:
        """Issue 14: a route served by an OpenAI-Responses upstream (the mock's /v1/responses), which the
        demo does not have, for the /v1/responses pass-through scenario."""
        self._manage(
            "provider_add", dialects.RESPONSES_PROVIDER, "--kind", "openai-responses",
            "--base-url", self.mock_url + "/v1", "--credential-env", dialects.RESPONSES_CREDENTIAL_ENV,
            "--models", dialects.RESPONSES_MODEL,
        )  # fmt: skip

    def _governed_key(self) -> None:
        """A second key of the demo tenant with rpm, tpm and concurrency limits and a hard budget."""
        self.governed_key, self.governed_prefix, info = self._issue_governed_key()
        self.results["governed_key"] = info

    def _issue_governed_key(self, **where: Any) -> tuple[str, str, dict[str, Any]]:
        """`manage.py key_issue` + `budget_set` (GOVERNED_KEY_OPTIONS, GOVERNED_BUDGET_OPTIONS) in the
        tree and database ``where`` names (this checkout's by default): (key, prefix, description)."""
        issue = ("key_issue", "--tenant", DEMO_TENANT, "--name", "bench-governed", *GOVERNED_KEY_OPTIONS)
        lines = self._manage(*issue, **where).strip().splitlines()
        match = re.search(r"\(prefix (th-[A-Za-z0-9]+)\)", "\n".join(lines[:-1]))
        if not lines or not lines[-1].startswith("th-") or match is None:
            # Never echo the output: it holds a secret when only the prefix line is missing.
            raise SetupError("`manage.py key_issue` did not print a prefix and a key on its last line")
        key, prefix = lines[-1], match.group(1)
        budget = ("budget_set", "--tenant", DEMO_TENANT, "--key", prefix, *GOVERNED_BUDGET_OPTIONS)
        said = self._manage(*budget, **where).strip()
        return (
            key,
            prefix,
            {
                "prefix": prefix,
                "commands": [
                    "manage.py " + " ".join(issue),
                    "manage.py " + " ".join(budget[:4]) + " PREFIX " + " ".join(budget[5:]),
                ],
                "budget_set_said": said.splitlines()[-1] if said else "",
            },
        )

    def _fresh_database(self, name: str) -> None:
        try:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
                # WITH (FORCE) ends sessions a crashed earlier run may have left behind (PG >= 13).
                force = " WITH (FORCE)" if conn.info.server_version >= 130000 else ""
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"{force}')
                conn.execute(f'CREATE DATABASE "{name}"')
                self.results.setdefault("meta", {})["postgres_version"] = conn.info.server_version
        except psycopg.Error as exc:
            raise SetupError(f"cannot (re)create database {name}: {exc}") from exc

    def _manage(
        self, *args: str, python: str = PYTHON, cwd: Path = ROOT, env: dict[str, str] | None = None
    ) -> str:
        try:
            done = subprocess.run(
                [python, "manage.py", *args], env=env or self.env, cwd=cwd, capture_output=True, timeout=300
            )
        except subprocess.TimeoutExpired as exc:
            raise SetupError(f"manage.py {args[0]} timed out") from exc
        if done.returncode != 0:
            raise SetupError(
                f"manage.py {args[0]} failed ({done.returncode}) in {cwd}:\n{done.stderr.decode()[-3000:]}"
            )
        return done.stdout.decode()

    def _start_mock(self) -> None:
        # Port 0: the mock binds a free port itself and prints its URL, so there is no port race.
        argv = procs.pinned([PYTHON, "-m", "gateway.mockserver", "--port", "0"], self.core(LOAD_CORE))
        self.mock = self.groups.start(
            "mock", argv, env=self.env, cwd=ROOT, log_path=OUT_DIR / "mock.log", stdout_pipe=True
        )
        line = procs.read_line(self.mock.proc, timeout_s=30)
        match = re.search(r"listening on (http://\S+)", line or "")
        if match is None:
            raise SetupError(f"the mock provider did not start: {line!r}\n{procs.tail(self.mock.log_path)}")
        self.mock_url = match.group(1)

    def _start_gateway(self) -> None:
        port = procs.free_port()
        argv = serve_command(PYTHON, port)
        self.results.setdefault("meta", {})["gateway_command"] = " ".join(
            procs.pinned([shown_python(PYTHON), *argv[1:]], self.core(GATEWAY_CORE))
        )
        try:
            self.gateway, self.gateway_url = self._launch(
                "gateway", argv, ROOT, self.env, OUT_DIR / "gateway.log"
            )
        except RuntimeError as exc:
            raise SetupError(str(exc)) from exc

    def _launch(
        self, name: str, argv: list[str], cwd: Path, env: dict[str, str], log_path: Path
    ) -> tuple[procs.Managed, str]:
        """Start a gateway on core 0 (argv names its port) and wait for /healthz; return it and its URL."""
        port = argv[argv.index("--port") + 1]
        managed = self.groups.start(
            name, procs.pinned(argv, self.core(GATEWAY_CORE)), env=env, cwd=cwd, log_path=log_path
        )
        url = f"http://127.0.0.1:{port}"
        if not procs.wait_http_ok(url + "/healthz", managed.proc, timeout_s=60):
            self.groups.stop(managed)
            raise RuntimeError(f"the gateway ({name}) did not answer /healthz:\n{procs.tail(log_path)}")
        return managed, url

    def sanity(self) -> None:
        """One plain and one streamed call through the gateway must work, or nothing is worth measuring;
        so must a governed call, which must also carry OpenAI's x-ratelimit-* headers."""
        for target, stream in (("gateway", False), ("gateway", True), ("governed", False)):
            request = urllib.request.Request(
                self.url(target), data=self.body(stream=stream), headers=self.headers(target), method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    text = response.read().decode(errors="replace")
                    headers = {name: response.headers.get(name) for name in RATELIMIT_HEADERS}
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:1000]
                raise SetupError(
                    f"gateway answered HTTP {exc.code} to a {target} sanity call: {detail}"
                ) from exc
            except OSError as exc:
                raise SetupError(f"gateway sanity call ({target}) failed: {exc}") from exc
            self.gateway_requests += 1
            ok = "data: [DONE]" in text if stream else '"choices"' in text
            if not ok:
                raise SetupError(f"unexpected gateway answer ({target}, stream={stream}): {text[:500]}")
            if target == "governed":
                missing = [name for name, value in headers.items() if value is None]
                if missing:
                    raise SetupError(f"a governed call came back without {', '.join(missing)}")
                self.results["governed_key"]["sanity_headers"] = headers

    # -- measurements --------------------------------------------------------------------------------
    def memory(self, label: str) -> None:
        mem = self.results.setdefault("memory", {})
        mem[label] = {
            "rss_mb": round(procs.rss_kb(self.gateway_pid) / 1024, 1),
            "peak_rss_mb": round(procs.hwm_kb(self.gateway_pid) / 1024, 1),
            "threads": procs.thread_count(self.gateway_pid),
            "gateway_requests": self.requests_seen(),
        }

    def latency(self) -> None:
        """(a) Concurrency 1, non-stream, direct vs gateway; also the Redis ops-per-request window."""
        plan, body = self.plan, self.body(stream=False)
        counts = {"requests": plan.latency_requests, "warmup_requests": plan.latency_warmup}

        # INFO commandstats is server-wide: the direct runs double as windows that measure what
        # other clients of the same Redis send meanwhile, to be subtracted later.
        with self.noise_window():
            direct = self.load("mock", body=body, **counts)

        xlen_a = self.r().xlen(USAGE_STREAM)
        stats_a, window_t = self.commandstats(), time.monotonic()
        gateway = self.load("gateway", body=body, **counts)
        stats_b, window_s = self.commandstats(), time.monotonic() - window_t
        xlen_b = self.r().xlen(USAGE_STREAM)

        d, g = direct.summary(), gateway.summary()
        self.results["latency_c1"] = {
            "direct": d,
            "gateway": g,
            # Difference of the two distributions' percentiles (the runs are not paired per request).
            "overhead_ms": {
                p: round(g["latency_ms"][p] - d["latency_ms"][p], 3)
                for p in ("p50", "p90", "p99")
                if p in g["latency_ms"] and p in d["latency_ms"]
            },
            "gateway_self_reported": self._self_reported(plan.latency_requests),
        }
        self.redis_window = {
            "ops": self.stats_delta(stats_a, stats_b),
            "window_s": window_s,
            "requests": gateway.completed + gateway.warmup_completed,
            "usage_events": xlen_b - xlen_a,
        }
        self.memory("after_latency_run")

    def _self_reported(self, count: int) -> dict[str, Any]:
        """The gateway's own view: latency_us and overhead_us of the last ``count`` usage events."""
        latency, overhead = [], []
        for _, fields in self.r().xrevrange(USAGE_STREAM, count=count):
            event = json.loads(fields[b"e"])
            if event.get("status") == 200 and not event.get("streamed"):
                latency.append(event["latency_us"])
                overhead.append(event["overhead_us"])
        latency.sort()
        overhead.sort()

        def dist(values: list[int]) -> dict[str, float]:
            return {p: round(loadgen.percentile(values, q) / 1000, 3) for p, q in (("p50", 50), ("p99", 99))}

        return {"events": len(latency), "latency_ms": dist(latency), "overhead_ms": dist(overhead)}

    def redis_ops(self) -> dict[str, Any]:
        """Redis commands per gateway request over the c=1 window, net of other clients' traffic."""
        w = self.redis_window
        if not w:
            return {}
        return self.ops_summary(w["ops"], w["window_s"], w["requests"], w["usage_events"])

    def ops_summary(
        self, ops: dict[str, int], window_s: float, requests: int, usage_events: int
    ) -> dict[str, Any]:
        """Commands per request from `INFO commandstats` deltas over windows of known requests, with
        what other clients sent meanwhile (measured while the gateway was idle) subtracted per command.
        commandstats also counts the commands a Lua script runs, under their own names."""
        rate = {name: n / self.noise_s for name, n in self.noise_ops.items()} if self.noise_s else {}
        # Per command, subtract what the idle-gateway windows say other clients send in that time.
        net = {name: max(n - rate.get(name, 0.0) * window_s, 0.0) for name, n in ops.items()}
        raw, corrected = sum(ops.values()), sum(net.values())
        return {
            "window_requests": requests,
            "window_s": round(window_s, 3),
            "by_command": dict(sorted(ops.items())),
            "net_by_command": {name: round(n / requests, 3) for name, n in net.items() if n}
            if requests
            else {},
            "noise_window_s": round(self.noise_s, 3),
            "noise_by_command": dict(sorted(self.noise_ops.items())),
            "noise_ops_per_s": round(sum(self.noise_ops.values()) / self.noise_s, 2) if self.noise_s else 0.0,
            "ops_per_request_raw": round(raw / requests, 3) if requests else None,
            "ops_per_request": round(corrected / requests, 3) if requests else None,
            "usage_events_per_request": round(usage_events / requests, 3) if requests else None,
        }

    def streaming(self) -> None:
        """(c) Time to first token at concurrency 1, direct vs gateway."""
        counts = {"requests": self.plan.stream_requests, "warmup_requests": self.plan.stream_warmup}
        body = self.body(stream=True)
        d = self.load("mock", body=body, stream=True, **counts).summary()
        g = self.load("gateway", body=body, stream=True, **counts).summary()
        self.results["streaming_c1"] = {
            "direct": d,
            "gateway": g,
            "ttft_overhead_ms": {
                p: round(g["ttft_ms"][p] - d["ttft_ms"][p], 3)
                for p in ("p50", "p90", "p99")
                if p in g.get("ttft_ms", {}) and p in d.get("ttft_ms", {})
            },
        }

    def throughput(self) -> None:
        """(b) Gateway at c=32 and c=64, direct at c=64 for reference."""
        plan = self.plan
        runs = self.results.setdefault("throughput", {})
        runs["gateway_c32"] = self._throughput("gateway", 32, plan.tput_warmup_s, plan.tput_s)
        self.check_gateway_alive()
        runs["gateway_c64"] = self._throughput("gateway", 64, max(plan.tput_warmup_s - 1, 1), plan.tput_s)
        self.check_gateway_alive()
        runs["direct_c64"] = self._throughput("mock", 64, max(plan.tput_warmup_s - 1, 1), plan.direct_s)

    def _throughput(self, target: str, concurrency: int, warmup_s: int, duration_s: int) -> dict[str, Any]:
        if warmup_s:
            self._run_load(target, concurrency, warmup_s)
        before = self.sample()
        with self.noise_window() if target == "mock" else contextlib.nullcontext():
            out = self._run_load(target, concurrency, duration_s)
        after = self.sample()
        out["resources"] = self.usage(before, after, out["completed"])
        return out

    def _run_load(
        self, target: str, concurrency: int, duration_s: float, max_requests: int | None = None
    ) -> dict[str, Any]:
        """A closed-loop run with wrk when installed, else the bundled generator; common summary."""
        if self.wrk is not None and max_requests is None:
            out = self._wrk(target, concurrency, int(max(round(duration_s), 1)))
        else:
            result = self.load(
                target,
                body=self.body(stream=False),
                concurrency=concurrency,
                duration_s=duration_s,
                requests=max_requests,
                expect_headers=RATELIMIT_HEADERS,
            )
            s = result.summary()
            out = {
                "tool": "bundled",
                "concurrency": concurrency,
                "elapsed_s": s["elapsed_s"],
                "completed": s["completed"],
                "errors": s["errors"],
                "non200": sum(n for code, n in s["statuses"].items() if code != "200"),
                "ok": s["ok"],
                "transport_errors": s["error_kinds"],
                "with_ratelimit_headers": s["with_headers"],
                "rps": s["rps"],
                "latency_ms": s["latency_ms"],
            }
        return out

    def _wrk_script(self, target: str) -> Path:
        path = OUT_DIR / f"wrk_post_{target}.lua"
        headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in self.headers(target).items())
        body = self.body(stream=False).decode()
        # Counting non-200 answers (and 200s carrying every x-ratelimit-* header) needs a response()
        # hook; each wrk thread has its own Lua state, so done() sums the per-thread counters it
        # collected in setup(). Every run does the same header check, so it costs both paths alike.
        wanted = ", ".join(f'["{name}"] = true' for name in RATELIMIT_HEADERS)
        path.write_text(
            f"""-- written by bench/run.py
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}

local threads = {{}}
local wanted = {{{wanted}}}
local n_wanted = {len(RATELIMIT_HEADERS)}
function setup(thread) table.insert(threads, thread) end
function init(args) non200 = 0; rlh = 0 end
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1; return end
  local found = 0
  for name, _ in pairs(headers) do
    if wanted[string.lower(name)] then found = found + 1 end
  end
  if found == n_wanted then rlh = rlh + 1 end
end
function done(summary, latency, requests)
  local bad, with = 0, 0
  for _, t in ipairs(threads) do bad = bad + t:get("non200"); with = with + t:get("rlh") end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,'
    .. '"non200":%d,"rlh":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, bad, with,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""
        )
        return path

    def _wrk(self, target: str, concurrency: int, duration_s: int) -> dict[str, Any]:
        assert self.wrk is not None
        argv = [self.wrk, "-t1", f"-c{concurrency}", f"-d{duration_s}s", "--timeout", "10s"]
        argv += ["-s", str(self._wrk_script(target)), self.url(target)]
        done = subprocess.run(
            procs.pinned(argv, self.core(LOAD_CORE)), capture_output=True, timeout=duration_s + 60
        )
        match = re.search(r"^WRKJSON (\{.*\})$", done.stdout.decode(), re.MULTILINE)
        if done.returncode != 0 or match is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.decode()[-500:]}")
        w = json.loads(match.group(1))
        transport = {k: w[k] for k in ("connect", "read", "write", "timeout") if w[k]}
        elapsed = w["duration_us"] / 1e6
        self.count_calls(target, w["requests"])
        return {
            "tool": "wrk",
            "concurrency": concurrency,
            "elapsed_s": round(elapsed, 3),
            "completed": w["requests"],
            "errors": w["non200"] + sum(transport.values()),
            "non200": w["non200"],
            "ok": w["requests"] - w["non200"],
            "transport_errors": transport,
            "with_ratelimit_headers": w["rlh"],
            "rps": round(w["requests"] / elapsed, 1) if elapsed else 0.0,
            "latency_ms": {p: round(w[f"{p}_us"] / 1000, 3) for p in ("p50", "p90", "p99", "max", "mean")},
        }

    def soak(self) -> None:
        """Top the gateway up to the request count the RSS target is defined at, then read RSS."""
        plan = self.plan
        started = time.monotonic()
        runs = []
        rps = max(self.results.get("throughput", {}).get("gateway_c64", {}).get("rps", 100.0), 50.0)
        while (missing := plan.soak_target - self.requests_seen()) > 0:
            budget = plan.soak_max_s - (time.monotonic() - started)
            if budget < 1:
                break
            seconds = min(missing / rps * 1.1 + 1, budget)
            # wrk cannot stop at a count, so it runs for an estimate; the bundled one stops exactly.
            out = self._run_load("gateway", 64, seconds, max_requests=None if self.wrk else missing)
            rps = max(out["rps"], 10.0)
            runs.append({k: out[k] for k in ("tool", "elapsed_s", "completed", "errors", "rps")})
            self.check_gateway_alive()
        self.results["soak"] = {"runs": runs, "target_requests": plan.soak_target}
        self.memory("end")

    def profile(self) -> None:
        """Where the time goes (issue 17): py-spy on the main gateway (this checkout), the governed
        JSON path at c=32 and a governed stream at c=32 (without --baseline; with it, the before and
        after sides are profiled the same way in before_after)."""
        self.results["profile"] = {"after": self._profile_process(self.gateway_pid, "governed", "main")}

    def _profile_process(self, pid: int, target: str, label: str) -> dict[str, Any]:
        """py-spy attached to a running gateway: the governed JSON path at c=32, then a governed
        stream at c=32 (PROFILE_STREAM_PROMPT: small delays), each profile_s seconds."""
        pyspy_bin = VENV_BIN / "py-spy"
        if not pyspy_bin.exists():
            subprocess.run([PYTHON, "-m", "pip", "install", "-q", "py-spy"], capture_output=True, timeout=180)
        if not pyspy_bin.exists():
            return {"error": "py-spy is not installed and `pip install py-spy` failed"}
        out: dict[str, Any] = {}
        for kind in ("json", "stream"):
            raw_path = OUT_DIR / f"pyspy-{label}-{kind}.raw"
            raw_path.unlink(missing_ok=True)
            seconds = self.plan.profile_s
            # --gil keeps only samples where a thread held the GIL, i.e. Python was running; without
            # it, idle executor threads parked in queue.get() would swamp the picture.
            argv = [str(pyspy_bin), "record", "--pid", str(pid), "--duration", str(seconds)]
            argv += ["--rate", str(PYSPY_RATE_HZ), "--gil", "--format", "raw", "--output", str(raw_path)]
            spy = self.groups.start(
                "py-spy", procs.pinned(argv, self.core(LOAD_CORE)), env=os.environ, cwd=ROOT,
                log_path=OUT_DIR / f"pyspy-{label}-{kind}.log",
            )  # fmt: skip
            time.sleep(0.5)  # let py-spy attach before the load starts
            if kind == "json":
                rps = self._run_load(target, 32, seconds + 1)["rps"]
            else:
                body = self.body(stream=True, prompt=PROFILE_STREAM_PROMPT)
                rps = self.load(target, body=body, stream=True, concurrency=32, duration_s=seconds + 1).rps
            try:
                spy.proc.wait(timeout=30)
            finally:
                self.groups.stop(spy)
            if not raw_path.exists():
                out[kind] = {"error": f"py-spy wrote nothing: {procs.tail(spy.log_path, 5)}"}
                continue
            raw = raw_path.read_text()
            out[kind] = {
                **pyspy.categorise(raw),
                "inclusive": pyspy.summarise(raw)["inclusive"],
                "seconds": seconds,
                "rate_hz": PYSPY_RATE_HZ,
                "load_rps": round(rps, 1),
                "raw_file": f"out/{raw_path.name}",
            }
        return out

    # -- governed path next to the bare path ---------------------------------------------------------
    def governed_vs_bare(self) -> None:
        """Issue 6: the governed path next to the bare path, in the same gateway process.

        The two paths differ only in the key. The demo key is the bare path: nothing governs it, so
        there is no admission round trip and its usage event is one XADD. The governed key has rpm,
        tpm and concurrency limits and a hard monthly budget (GOVERNED_KEY_OPTIONS: never reached):
        authentication, the admission script, the call, and the settlement script that also XADDs
        the usage event. One process for both removes process-to-process variation from the
        difference. Each round: a direct-to-mock c=1 run (also a Redis noise window), c=1 latency of
        both paths, then c=32 throughput of both; the order of the paths alternates from round to
        round, so drift of the shared machine hits both alike.
        """
        plan, body = self.plan, self.body(stream=False)
        counts = {"requests": plan.latency_requests, "warmup_requests": plan.latency_warmup}
        section: dict[str, Any] = {
            **self.results.get("governed_key", {}),
            "rounds_total": plan.compare_rounds,
            "latency_requests": plan.latency_requests,
            "latency_warmup": plan.latency_warmup,
            "tput_warmup_s": plan.tput_warmup_s,
            "tput_s": plan.compare_tput_s,
            "rounds": [],
        }
        self.results["governed"] = section
        windows: dict[str, dict[str, Any]] = {
            path: {"ops": Counter(), "window_s": 0.0, "requests": 0, "usage_events": 0}
            for path in PATH_TARGET
        }
        paths = tuple(PATH_TARGET)
        for number in range(1, plan.compare_rounds + 1):
            order = paths if number % 2 else paths[::-1]
            print(f"[bench]   round {number}/{plan.compare_rounds}: {' then '.join(order)} ...", flush=True)
            loadavg = Path("/proc/loadavg").read_text().split()[:3]
            busy_start = self.busy_sample()
            with self.noise_window():
                direct = self.load("mock", body=body, **counts).summary()
            row: dict[str, Any] = {
                "round": number,
                "order": list(order),
                "direct_ms": direct["latency_ms"],
                "direct_errors": direct["errors"],
                # Other work on the box (e.g. test suites) shows here: 1-, 5- and 15-minute averages.
                "loadavg": " ".join(loadavg),
            }
            for path in order:
                row[path] = self._path_c1(path, body, counts, direct, windows[path])
            self.check_gateway_alive()
            for path in order:
                row[path]["c32"] = self._throughput(
                    PATH_TARGET[path], 32, plan.tput_warmup_s, plan.compare_tput_s
                )
                self.check_gateway_alive()
            row["other_work_cores"] = self.other_cores(busy_start, self.busy_sample())
            section["rounds"].append(row)
            # Summarised as it goes: a run cut short still reports the rounds it has.
            section["summary"] = governed.summarise(section["rounds"])
        section["redis"] = {
            path: self.ops_summary(w["ops"], w["window_s"], w["requests"], w["usage_events"])
            for path, w in windows.items()
        }
        print("[bench]   Redis MONITOR windows (not timed) ...", flush=True)
        section["monitor"] = {path: self._monitor(path) for path in paths}
        section["budget_pots"] = self._budget_pots()

    def _path_c1(
        self, path: str, body: bytes, counts: dict[str, int], direct: dict[str, Any], window: dict[str, Any]
    ) -> dict[str, Any]:
        """One path's c=1 run: latency, overhead against this round's direct run, Redis commands."""
        xlen_a = self.r().xlen(USAGE_STREAM)
        stats_a, started = self.commandstats(), time.monotonic()
        result = self.load(PATH_TARGET[path], body=body, expect_headers=RATELIMIT_HEADERS, **counts)
        stats_b, window_s = self.commandstats(), time.monotonic() - started
        xlen_b = self.r().xlen(USAGE_STREAM)
        window["ops"].update(self.stats_delta(stats_a, stats_b))
        window["window_s"] += window_s
        window["requests"] += result.completed + result.warmup_completed
        window["usage_events"] += xlen_b - xlen_a
        s = result.summary()
        d, g = direct["latency_ms"], s["latency_ms"]
        return {
            "latency_ms": g,
            "overhead_ms": {p: round(g[p] - d[p], 3) for p in ("p50", "p90", "p99") if p in g and p in d},
            "completed": s["completed"],
            "errors": s["errors"],
            "statuses": s["statuses"],
            "with_ratelimit_headers": s["with_headers"],
            "self_reported": self._self_reported(self.plan.latency_requests),
        }

    def _monitor(self, path: str) -> dict[str, Any]:
        """Exact Redis commands per call of one path, from MONITOR over a short c=1 run (not timed:
        MONITOR slows Redis down). Only this bench's Redis db counts, so other users of the server
        do not blur it, and each command is either the gateway's own (a round trip) or one that a
        Lua script ran ("lua")."""
        requests = self.plan.monitor_requests
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=30)
        token = f"bench-monitor-end-{secrets.token_hex(6)}"
        seen: Counter[tuple[str, str]] = Counter()
        failure: list[str] = []
        listening = threading.Event()

        def read() -> None:
            try:
                with client.monitor() as monitor:
                    listening.set()
                    while True:
                        command = monitor.next_command()
                        if command is None or command["db"] != REDIS_DB:
                            continue
                        name = command["command"].split(" ", 1)[0].lower()
                        if name == "echo" and token in command["command"]:
                            return  # the harness's end marker: everything before it is counted
                        seen[("script" if command["client_type"] == "lua" else "client", name)] += 1
            except (redis.RedisError, OSError, ValueError, AttributeError) as exc:
                failure.append(f"{type(exc).__name__}: {exc}")
            finally:
                listening.set()

        thread = threading.Thread(target=read, name="redis-monitor", daemon=True)
        thread.start()
        listening.wait(10)
        result = self.load(
            PATH_TARGET[path],
            body=self.body(stream=False),
            requests=requests,
            expect_headers=RATELIMIT_HEADERS,
        )
        time.sleep(0.2)  # anything the gateway still sends for the last call, before the marker
        self.r().echo(token)
        thread.join(timeout=60)
        client.close()
        if failure or thread.is_alive():
            return {"error": failure[0] if failure else "MONITOR did not see the end marker within 60 s"}
        calls = result.completed
        if not calls:
            return {"error": "no call completed in the MONITOR window"}

        def per_call(kind: str) -> dict[str, float]:
            return {name: round(n / calls, 3) for (k, name), n in sorted(seen.items()) if k == kind}

        client_ops, script_ops = per_call("client"), per_call("script")
        return {
            "calls": calls,
            "errors": result.error_count,
            "with_ratelimit_headers": result.with_headers,
            "round_trips_per_call": round(sum(client_ops.values()), 3),
            "client_by_command": client_ops,
            "script_commands_per_call": round(sum(script_ops.values()), 3),
            "script_by_command": script_ops,
        }

    def _budget_pots(self) -> list[dict[str, Any]]:
        """The governed key's budget counter once every call has ended: spend, and nothing reserved."""
        pots = []
        for key in sorted(self.r().scan_iter(match=REDIS_PREFIX + "pot:b:*", count=1000)):
            if key.endswith(b":x"):  # a pot's reservation-expiry set
                continue
            fields = self.r().hgetall(key)
            pots.append(
                {
                    "key": key.decode(),
                    "spent_nanos": int(fields.get(b"spent", 0)),
                    "reserved_nanos": int(fields.get(b"reserved", 0)),
                    "open_reservations": sum(1 for name in fields if name.startswith(b"r:")),
                }
            )
        return pots

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self) -> list[dict[str, Any]]:
        """The targets. Issue 17's come from the before/after section (this checkout's side) when
        --baseline was given, else from the main gateway's phases (the CPU and ceiling ones then
        need --baseline and read n/a)."""
        res = self.results
        targets: list[dict[str, Any]] = []

        def add(name: str, measured: float | None, op: str, limit: float, unit: str, note: str = "") -> None:
            passed = None
            if measured is not None:
                passed = (
                    measured <= limit
                    if op == "<="
                    else measured >= limit
                    if op == ">="
                    else measured == limit
                )
            targets.append(
                {"name": name, "op": op, "limit": limit, "measured": measured, "unit": unit,
                 "passed": passed, "note": note}
            )  # fmt: skip

        ba = res.get("before_after", {}).get("summary")
        gov = res.get("governed", {}).get("summary")
        if ba:
            after, before, ceiling = ba["after"], ba["before"], ba["ceiling"]
            source = "before/after section, this checkout (median of its rounds)"
            add(
                "Gateway CPU per governed call at c=32, after / before",
                ba["cpu_ratio"],
                "<=",
                TARGET_CPU_RATIO,
                "x",
                f"{_ms(after['cpu_ms_per_request'])} after vs {_ms(before['cpu_ms_per_request'])} before (medians); "
                "per round: " + (", ".join(f"{v:.3f}" for v in ba["cpu_ratio_per_round"]) or "n/a"),
            )
            add(
                "Governed req/s at c=32 / the Python ceiling's",
                ba["ceiling_fraction"],
                ">=",
                round(TARGET_CEILING_FRACTION, 3),
                "x",
                f"{_rps(after['rps'])} vs the ceiling's {_rps(ceiling['rps'])} (medians): needs ≥ "
                f"{_rps(ceiling['rps'] * TARGET_CEILING_FRACTION if ceiling['rps'] else None)}",
            )
            overhead = {p: after[f"overhead_{p}_ms"] for p in ("p50", "p99")}
            ttft, ttft_note = after["ttft_overhead_p50_ms"], source
            ratio, ratio_note = (
                after["governed_bare_ratio"],
                source
                + (
                    f"; the governed-vs-bare phase (one process) says {gov['rps_ratio']['median']:.3f}"
                    if gov
                    else ""
                ),
            )
        else:
            add("Gateway CPU per governed call at c=32, after / before", None, "<=", TARGET_CPU_RATIO, "x",
                "needs --baseline")  # fmt: skip
            add("Governed req/s at c=32 / the Python ceiling's", None, ">=", round(TARGET_CEILING_FRACTION, 3),
                "x", "needs --baseline (the ceiling is measured there)")  # fmt: skip
            source = "the governed-vs-bare phase, governed path"
            g = gov["governed"] if gov else {}
            overhead = {p: g.get(f"overhead_{p}_ms") for p in ("p50", "p99")}
            ttft = res.get("streaming_c1", {}).get("ttft_overhead_ms", {}).get("p50")
            ttft_note = "the streaming phase, bare path (the governed stream is measured with --baseline)"
            ratio = gov["rps_ratio"]["median"] if gov else None
            ratio_note = (
                governed.rounds_note(gov["rps_ratio"]["per_round"], ">=", TARGET_GOVERNED_RPS_RATIO, 3)
                if gov
                else ""
            )
        add("Governed overhead p50 at c=1", overhead["p50"], "<=", TARGET_OVERHEAD_P50_MS, "ms", source)
        add("Governed overhead p99 at c=1", overhead["p99"], "<=", TARGET_OVERHEAD_P99_MS, "ms", source)
        add("TTFT overhead p50 at c=1", ttft, "<=", TARGET_TTFT_OVERHEAD_P50_MS, "ms", ttft_note)
        add("Governed / bare throughput at c=32", ratio, ">=", TARGET_GOVERNED_RPS_RATIO, "x", ratio_note)

        end = res.get("memory", {}).get("end", {})
        count = end.get("gateway_requests", 0)
        note = "" if count >= TARGET_RSS_AFTER_REQUESTS else f"measured after {count:,} requests, not 20,000"
        add("Gateway RSS after the soak", end.get("rss_mb"), "<=", TARGET_RSS_MB, "MB", note)

        profile = res.get("before_after", {}).get("profile", {}).get("after") or res.get("profile", {}).get(
            "after"
        )
        share = pyspy.category_share(profile.get("json", {}), "metrics") if profile else None
        add(
            "Metrics share of the gateway's CPU (governed JSON profile at c=32)",
            round(share * 100, 2) if share is not None else None,
            "<=",
            TARGET_METRICS_SHARE_PCT,
            "%",
            "py-spy samples in the 'metrics' category"
            if share is not None
            else "needs a profile (--profile or --baseline)",
        )

        c32 = res.get("throughput", {}).get("gateway_c32", {})
        add("Throughput at c=32 (bare path, main gateway)", c32.get("rps"), ">=", TARGET_RPS_C32, "req/s")
        add("Errors at c=32 (bare path, main gateway)", c32.get("errors"), "==", 0, "errors")
        if gov:
            extra = gov["extra_overhead_p50_ms"]
            add(
                "Governed − bare overhead p50 at c=1",
                extra["median"],
                "<=",
                TARGET_GOVERNED_EXTRA_P50_MS,
                "ms",
                governed.rounds_note(extra["per_round"], "<=", TARGET_GOVERNED_EXTRA_P50_MS, 3, unit=" ms"),
            )
            bad = gov["governed_bad_answers"] + (ba["after"]["governed_bad_answers"] if ba else 0)
            add("Governed calls not 200 or without x-ratelimit-* headers", bad, "==", 0, "calls")
        usage = self.usage_check()
        if usage is not None:
            add(
                "Usage events − calls counted by the clients",
                usage["difference"],
                "==",
                0,
                "calls",
                usage["note"],
            )
        return targets

    def usage_check(self) -> dict[str, Any] | None:
        """Usage events (and rows) against the calls the clients counted: this checkout's before/after
        side when --baseline ran, else the main gateway (XLEN just before the drain)."""
        check = self.results.get("before_after", {}).get("usage_check", {}).get("after")
        if check:
            rows = check.get("usage_rows")
            worst = max(
                (check["usage_events"], rows or check["usage_events"]), key=lambda n: abs(n - check["calls"])
            )
            return {
                "difference": worst - check["calls"],
                "note": f"this checkout's before/after side: {check['calls']:,} calls, {check['usage_events']:,} "
                f"usage events" + (f", {rows:,} usage rows after the drain" if rows is not None else ""),
            }
        events = self.results.get("usage_stream_len")
        if events is None:
            return None
        calls = self.results.get("gateway_requests_before_drain", self.gateway_requests)
        return {
            "difference": events - calls,
            "note": f"main gateway: {calls:,} calls, {events:,} usage events in the stream before the drain, "
            f"{self.results.get('drain', {}).get('rows', 0):,} rows drained",
        }

    def capacity(self) -> dict[str, Any]:
        runs = self.results.get("throughput", {})
        candidates = [runs[k] for k in ("gateway_c32", "gateway_c64") if k in runs]
        if not candidates:
            return {}
        best = max(candidates, key=lambda r: r["rps"])
        res = best["resources"]
        ops = self.results.get("redis", {}).get("ops_per_request")
        per_core = best["completed"] / res["gateway_cpu_s"] if res["gateway_cpu_s"] else None
        load_core = res["core_busy"].get(str(LOAD_CORE))
        if res["gateway_cores"] is not None and res["gateway_cores"] >= 0.9:
            verdict = (
                f"the gateway's core: its one worker used {res['gateway_cores']:.0%} of a core at "
                f"c={best['concurrency']}, so more concurrency only adds queueing"
            )
        elif load_core is not None and load_core >= 0.9:
            verdict = (
                f"the load-generator/mock core (core {LOAD_CORE} {load_core:.0%} busy): the gateway "
                "figures are a lower bound"
            )
        else:
            verdict = "no core was saturated: the run is latency-bound (client concurrency), not CPU-bound"
        return {
            "from_run": f"c={best['concurrency']}",
            "rps": best["rps"],
            "gateway_cores_used": res["gateway_cores"],
            "gateway_cpu_ms_per_request": res["gateway_cpu_ms_per_request"],
            "rps_per_gateway_core": round(per_core, 1) if per_core else None,
            "redis_ops_per_request": ops,
            "redis_ops_per_s": round(ops * best["rps"], 1) if ops is not None else None,
            "redis_cpu_us_per_request": res["redis_cpu_us_per_request"],
            "redis_cores_used": res["redis_cores"],
            "db_rows_per_s": best["rps"],  # one usage row per request, written later by the drain task
            "load_core_busy": load_core,
            "saturates_first": verdict,
        }

    def drain(self) -> None:
        """How fast the usage pipeline empties the stream into PostgreSQL (one drain process)."""
        backlog = self.r().xlen(USAGE_STREAM)
        code = (
            "import time, json; from billing.usage import usage_drain; from billing.models import UsageRecord\n"
            "t = time.perf_counter(); n = 0\n"
            "while True:\n"
            "    w = usage_drain(batch_size=500, max_batches=20); n += w\n"
            "    if not w: break\n"
            "print(json.dumps({'rows': n, 'seconds': time.perf_counter() - t, 'total': UsageRecord.objects.count()}))"
        )
        out = json.loads(self._manage("shell", "-c", code).strip().splitlines()[-1])
        self.results["drain"] = {
            "backlog": backlog,
            "rows": out["rows"],
            "seconds": round(out["seconds"], 2),
            "rows_per_s": round(out["rows"] / out["seconds"], 1) if out["seconds"] else None,
            "usage_rows_total": out["total"],
            "stream_left": self.r().xlen(USAGE_STREAM),
        }

    def governed_ledger(self) -> None:
        """After the drain: the governed key's usage rows (statuses, cost) against its budget counter,
        which settlement kept in Redis; they must agree to the nano-dollar."""
        section = self.results.get("governed")
        if not section or not self.governed_prefix:
            return
        code = (
            "import json\n"
            "from decimal import Decimal\n"
            "from django.db.models import Count, Sum\n"
            "from accounts.models import ApiKey\n"
            "from billing.models import UsageRecord\n"
            "from billing.pricing import dollars_to_nanos\n"
            f"rows = UsageRecord.objects.filter(api_key=ApiKey.objects.get(prefix={self.governed_prefix[3:]!r}))\n"
            "statuses = {str(r['status']): r['n'] for r in rows.order_by().values('status').annotate(n=Count('id'))}\n"
            "cost = rows.aggregate(c=Sum('cost', default=Decimal(0)))['c']\n"
            "print(json.dumps({'rows': rows.count(), 'statuses': statuses, 'cost_nanos': dollars_to_nanos(cost)}))"
        )
        ledger = json.loads(self._manage("shell", "-c", code).strip().splitlines()[-1])
        spent = sum(p["spent_nanos"] for p in section.get("budget_pots", []))
        ledger["budget_spent_nanos"] = spent
        ledger["matches_budget_counter"] = spent == ledger["cost_nanos"]
        section["ledger"] = ledger

    # -- dialects (issue 14) -------------------------------------------------------------------------
    def _scenario_load(
        self, scenario: dialects.Scenario, target: str, *, stream: bool = False, **kwargs: Any
    ) -> loadgen.LoadResult:
        """One load of a scenario: target "gateway" (the main gateway, demo key, the client's dialect)
        or "direct" (the mock, in the upstream's format, with the same key bytes)."""
        base = self.gateway_url if target == "gateway" else self.mock_url
        call = scenario.request(target, base_url=base, key=self.api_key, stream=stream)
        spec = loadgen.LoadSpec(
            url=call["url"], body=call["body"], headers=call["headers"], done_marker=call["done_marker"],
            stream=stream, **kwargs,
        )  # fmt: skip
        result = loadgen.run(spec)
        if target == "gateway":
            self.gateway_requests += result.completed + result.warmup_completed
        return result

    def dialect_paths(self) -> None:
        """Issue 14: every scenario of bench/dialects.py through the main gateway, in interleaved rounds.

        Each round, per scenario (the order rotates from round to round, so drift of the shared box
        hits all alike): c=1 JSON straight to the mock in the upstream's format, then through the
        gateway in the client's dialect (the overhead); c=1 streams the same way (the TTFT overhead);
        c=32 JSON through the gateway (requests/s, the gateway's CPU per request). One process for all
        scenarios: the differences between them are the dialect work, not process-to-process noise.
        """
        plan = self.plan
        section: dict[str, Any] = {
            "rounds_total": plan.compare_rounds,
            "requests": plan.dialect_requests,
            "warmup": plan.dialect_warmup,
            "stream_requests": plan.dialect_stream_requests,
            "stream_warmup": plan.dialect_stream_warmup,
            "tput_warmup_s": plan.tput_warmup_s,
            "tput_s": plan.dialect_tput_s,
            "prompt": dialects.PROMPT,
            "stream_prompt": dialects.STREAM_PROMPT,
            "scenarios": [
                {"name": s.name, "label": s.label, "ingress": s.ingress, "upstream": s.upstream,
                 "model": s.model, "passthrough": s.passthrough}
                for s in dialects.SCENARIOS
            ],
            "rounds": [],
        }  # fmt: skip
        self.results["dialects"] = section
        for scenario in dialects.SCENARIOS:  # every path must answer, JSON and stream, or nothing counts
            for stream in (False, True):
                for target in ("direct", "gateway"):
                    r = self._scenario_load(scenario, target, stream=stream, requests=1)
                    if r.ok != 1:
                        raise RuntimeError(
                            f"{scenario.name} ({target}, stream={stream}) failed its sanity call: "
                            f"{dict(r.statuses)} {dict(r.errors)}"
                        )
        names = [s.name for s in dialects.SCENARIOS]
        by_name = {s.name: s for s in dialects.SCENARIOS}
        for number in range(1, plan.compare_rounds + 1):
            shift = (number - 1) % len(names)
            for name in names[shift:] + names[:shift]:
                print(f"[bench]   dialects round {number}/{plan.compare_rounds}: {name} ...", flush=True)
                section["rounds"].append(self._dialect_round(by_name[name], number))
                section["summary"] = dialects.summarise(section["rounds"])
            self.check_gateway_alive()

    def _dialect_round(self, scenario: dialects.Scenario, number: int) -> dict[str, Any]:
        plan = self.plan
        counts = {"requests": plan.dialect_requests, "warmup_requests": plan.dialect_warmup}
        scounts = {"requests": plan.dialect_stream_requests, "warmup_requests": plan.dialect_stream_warmup}
        direct = self._scenario_load(scenario, "direct", **counts).summary()
        c1 = self._scenario_load(scenario, "gateway", **counts).summary()
        sdirect = self._scenario_load(scenario, "direct", stream=True, **scounts).summary()
        sgateway = self._scenario_load(scenario, "gateway", stream=True, **scounts).summary()
        if plan.tput_warmup_s:
            self._scenario_load(scenario, "gateway", concurrency=32, duration_s=plan.tput_warmup_s)
        cpu_before = procs.cpu_seconds(self.gateway_pid)
        tput = self._scenario_load(
            scenario, "gateway", concurrency=32, duration_s=plan.dialect_tput_s
        ).summary()
        cpu_s = procs.cpu_seconds(self.gateway_pid) - cpu_before
        return {
            "round": number,
            "scenario": scenario.name,
            **c1_overheads(direct, c1, sdirect, sgateway),
            "rps": tput["rps"],
            "completed": tput["completed"],
            "p50_ms": tput["latency_ms"].get("p50"),
            "p99_ms": tput["latency_ms"].get("p99"),
            "cpu_ms_per_request": round(cpu_s * 1000 / tput["completed"], 3) if tput["completed"] else None,
            "errors": tput["errors"] + c1["errors"] + sgateway["errors"],
            "direct_errors": direct["errors"] + sdirect["errors"],
        }

    # -- the response cache (issue 16) ---------------------------------------------------------------
    def cache_hits(self) -> None:
        """bench/cache.py's scenarios (a cache hit next to the plain path) on the main gateway."""
        import cache  # bench/cache.py imports this module

        measure = cache.CacheBench(
            self,
            requests=self.plan.dialect_requests,
            stream_requests=self.plan.dialect_stream_requests,
            tput_s=self.plan.dialect_tput_s,
        )
        measure.setup()
        rows: list[dict[str, Any]] = []
        for number in range(1, self.plan.compare_rounds + 1):
            rows += measure.round(number)
        self.results["cache"] = {
            "rows": rows,
            "summary": cache.summarise(rows),
            "tput_s": self.plan.dialect_tput_s,
        }

    # -- before / after ------------------------------------------------------------------------------
    def before_after(self) -> None:
        """--baseline: REV, this checkout and the Python ceiling in interleaved rounds, one server at a
        time on core 0.

        Only one server runs at a time: all are pinned to core 0, and an idle gateway is not quite
        idle (its config-change listener polls Redis pub/sub every second and pings when quiet), so it
        would tax whichever one is measured. Each round starts a fresh process per side, so the spread
        between rounds also covers process-to-process variation, which a single long-lived process
        would hide. The order of the sides rotates from round to round (before, after, ceiling; then
        after, ceiling, before; ...), so drift of the shared machine hits all alike. After the rounds,
        with profiling on, each gateway side is started once more and profiled with py-spy.
        """
        tree = self.baseline_tree
        assert tree is not None
        if self.gateway is not None:
            self.groups.stop(self.gateway)  # the main gateway's phases are over
        plan = self.plan
        section: dict[str, Any] = {
            "baseline": {
                **tree.describe(),
                "command": self.sides["before"].shown,
                "database": BASE_DB_NAME,
                "redis_prefix": BASE_REDIS_PREFIX,
                "packages_differing": baseline.package_diff(
                    baseline.installed_packages(PYTHON), tree.packages
                ),
            },
            "current_command": self.sides["after"].shown,
            "ceiling_command": self.sides["ceiling"].shown,
            "sides": list(compare.SIDES),
            "rounds_per_side": plan.compare_rounds,
            "latency_requests": plan.latency_requests,
            "latency_warmup": plan.latency_warmup,
            "stream_requests": plan.ba_stream_requests,
            "stream_warmup": plan.ba_stream_warmup,
            "stream_prompt": STREAM_PROMPT,
            "tput_warmup_s": plan.tput_warmup_s,
            "tput_s": plan.compare_tput_s,
            "rounds": [],
        }
        self.results["before_after"] = section
        streams = {name: side.usage_stream for name, side in self.sides.items() if side.usage_stream}
        events_start = {name: int(self.r().xlen(key)) for name, key in streams.items()}
        calls_start = {name: self.side_calls[name] for name in streams}
        names = list(compare.SIDES)
        for number in range(1, plan.compare_rounds + 1):
            shift = (number - 1) % len(names)
            order = names[shift:] + names[:shift]
            for position, name in enumerate(order, 1):
                print(f"[bench]   round {number}/{plan.compare_rounds}: {name} ...", flush=True)
                row = self._measure_side(self.sides[name], number)
                row["position"] = position
                section["rounds"].append(row)
                # Summarised as it goes: a run cut short still reports the rounds it has.
                section["summary"] = compare.summarise(section["rounds"], rev=tree.short)
        if self.profile_sides:
            section["profile"] = {}
            for name in ("before", "after"):
                print(f"[bench]   profile: {name} (py-spy, governed JSON and stream at c=32) ...", flush=True)
                section["profile"][name] = self._profile_side(self.sides[name])
        section["usage_check"] = self._usage_check(streams, events_start, calls_start)

    def _usage_check(
        self, streams: dict[str, str], events_start: dict[str, int], calls_start: dict[str, int]
    ) -> dict[str, Any]:
        """Usage events of each gateway side (XLEN of its stream over before_after) against the calls its
        clients counted; for this checkout also the rows the real drain writes from them."""
        check: dict[str, Any] = {}
        for name, key in streams.items():
            events = int(self.r().xlen(key)) - events_start[name]
            calls = self.side_calls[name] - calls_start[name]
            check[name] = {"calls": calls, "usage_events": events, "equal": events == calls}
        after = check.get("after")
        if after is not None:
            before_rows = self.results.get("drain", {}).get("usage_rows_total")
            code = (
                "import json; from billing.usage import usage_drain; from billing.models import UsageRecord\n"
                "n = 0\n"
                "while True:\n"
                "    w = usage_drain(batch_size=500, max_batches=20); n += w\n"
                "    if not w: break\n"
                "print(json.dumps({'rows': n, 'total': UsageRecord.objects.count()}))"
            )
            try:
                out = json.loads(self._manage("shell", "-c", code).strip().splitlines()[-1])
            except (SetupError, ValueError, IndexError) as exc:
                after["drain_error"] = str(exc)[-300:]
            else:
                after["rows_drained"] = out["rows"]
                if before_rows is not None:
                    after["usage_rows"] = out["total"] - before_rows
                    after["equal"] = after["equal"] and after["usage_rows"] == after["calls"]
        return check

    def _profile_side(self, side: Side) -> dict[str, Any]:
        """A fresh process of one gateway side, warmed up at c=32, then profiled (governed JSON, stream)."""
        log_path = OUT_DIR / f"profile-{side.name}.log"
        managed, side.url = self._launch(
            f"gateway-{side.name}", side.command(procs.free_port()), side.cwd, side.env, log_path
        )
        target = f"{side.name}/governed"
        try:
            if self.plan.tput_warmup_s:
                self._run_load(target, 32, self.plan.tput_warmup_s)
            return self._profile_process(managed.proc.pid, target, side.name)
        finally:
            self.groups.stop(managed)

    @contextlib.contextmanager
    def redis_rtt(self) -> Iterator[dict[str, Any]]:
        """Redis round-trip times while the block runs (bench/redisrtt.py, a child pinned to core 1)."""
        argv = [PYTHON, str(BENCH_DIR / "redisrtt.py"), "--url", REDIS_URL, "--duration", "600"]
        out: dict[str, Any] = {}
        probe = self.groups.start(
            "redis-rtt", procs.pinned(argv, self.core(LOAD_CORE)), env=os.environ, cwd=ROOT,
            log_path=OUT_DIR / "redisrtt.log", stdout_pipe=True,
        )  # fmt: skip
        try:
            if procs.read_line(probe.proc, timeout_s=15) != "ready":
                out["error"] = f"the Redis probe did not start: {procs.tail(probe.log_path, 5)}"
            yield out
        finally:
            if "error" not in out and probe.proc.poll() is None:
                probe.proc.send_signal(signal.SIGTERM)
                line = procs.read_line(probe.proc, timeout_s=15)
                try:
                    out.update(json.loads(line or ""))
                except ValueError:
                    out["error"] = f"the Redis probe printed {line!r}"
            self.groups.stop(probe)

    def _c32(self, target: str, pid: int, warmup_s: float, *, probe: bool) -> dict[str, Any]:
        """c=32 on one before/after side after a warm-up: req/s, latency, the server's CPU per call,
        Redis's CPU per call, and (probe) Redis round-trip times taken during the run."""
        if warmup_s:
            self._run_load(target, 32, warmup_s)
        cpu_a, redis_a = procs.cpu_seconds(pid), self._redis_cpu()
        probing: contextlib.AbstractContextManager[dict[str, Any]] = (
            self.redis_rtt() if probe else contextlib.nullcontext({})
        )
        with probing as rtt:
            tput = self._run_load(target, 32, self.plan.compare_tput_s)
        cpu_s, redis_s = procs.cpu_seconds(pid) - cpu_a, self._redis_cpu() - redis_a
        done = tput["completed"]
        return {
            **tput,
            "cpu_ms_per_request": round(cpu_s * 1000 / done, 3) if done else None,
            "cores": round(cpu_s / tput["elapsed_s"], 3) if tput["elapsed_s"] else None,
            "redis_cpu_us_per_request": round(redis_s * 1e6 / done, 1) if done else None,
            "redis_rtt": rtt,
        }

    def _redis_cpu(self) -> float:
        cpu = self.r().info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def _measure_side(self, side: Side, number: int) -> dict[str, Any]:
        """One round of one side, a fresh process: c=1 governed JSON against the mock (overhead), c=1
        governed streams against the mock (TTFT overhead), c=32 governed JSON (req/s, CPU per call,
        Redis round trips) and, for a gateway, c=32 bare JSON (governed / bare)."""
        plan = self.plan
        body, stream_body = self.body(stream=False), self.body(stream=True)
        log_path = OUT_DIR / f"compare-{side.name}-{number}.log"
        managed, side.url = self._launch(
            f"gateway-{side.name}", side.command(procs.free_port()), side.cwd, side.env, log_path
        )
        gateway = side.kind == "gateway"
        governed = f"{side.name}/governed" if gateway else side.name
        pid = managed.proc.pid
        try:
            counts = {"requests": plan.latency_requests, "warmup_requests": plan.latency_warmup}
            direct = self.load("mock", body=body, **counts).summary()
            c1 = self.load(governed, body=body, expect_headers=RATELIMIT_HEADERS, **counts).summary()
            scounts = {"requests": plan.ba_stream_requests, "warmup_requests": plan.ba_stream_warmup}
            sdirect = self.load("mock", body=stream_body, stream=True, **scounts).summary()
            sgw = self.load(governed, body=stream_body, stream=True, **scounts).summary()
            runs: dict[str, dict[str, Any]] = {}
            # The governed and the bare c=32 runs alternate their order from round to round; the
            # first one warms the process up, the second needs only its key's first calls.
            paths = ("governed", "bare") if number % 2 else ("bare", "governed")
            for i, path in enumerate(paths if gateway else ("governed",)):
                warmup = plan.tput_warmup_s if i == 0 else 1
                target = governed if path == "governed" else side.name
                runs[path] = self._c32(target, pid, warmup, probe=path == "governed")
            rss_mb = round(procs.rss_kb(pid) / 1024, 1)
            exited = managed.proc.poll() is not None
        finally:
            self.groups.stop(managed)
        if exited:
            raise RuntimeError(
                f"the {side.name} server exited during round {number}:\n{procs.tail(log_path)}"
            )
        gov, bare = runs["governed"], runs.get("bare")
        rtt = gov["redis_rtt"]
        row: dict[str, Any] = {
            "round": number,
            "side": side.name,
            **c1_overheads(direct, c1, sdirect, sgw),
            "rps": gov["rps"],
            "completed": gov["completed"],
            "p50_ms": gov["latency_ms"].get("p50"),
            "p99_ms": gov["latency_ms"].get("p99"),
            "cpu_ms_per_request": gov["cpu_ms_per_request"],
            "cores": gov["cores"],
            "redis_cpu_us_per_request": gov["redis_cpu_us_per_request"],
            "redis_ping_p50_us": rtt.get("ping_us", {}).get("p50"),
            "redis_ping_p99_us": rtt.get("ping_us", {}).get("p99"),
            "redis_evalsha_p50_us": rtt.get("evalsha_us", {}).get("p50"),
            "redis_evalsha_p99_us": rtt.get("evalsha_us", {}).get("p99"),
            "redis_rtt_samples": rtt.get("samples"),
            "redis_rtt_error": rtt.get("error"),
            "errors": gov["errors"] + c1["errors"] + sgw["errors"] + (bare["errors"] if bare else 0),
            "direct_errors": direct["errors"] + sdirect["errors"],
            "tool": gov["tool"],
            "rss_mb": rss_mb,
            "log": f"out/{log_path.name}",
            "log_error_lines": self.gateway_log(log_path)["error_lines"],
        }
        if gateway and bare is not None:
            # Governed answers that were not 200 with every x-ratelimit-* header (c=1 and c=32).
            c1_ok = c1["completed"] - c1["errors"]
            row["governed_bad_answers"] = (
                c1["errors"]
                + (c1_ok - c1["with_headers"])
                + gov["errors"]
                + (gov["ok"] - gov["with_ratelimit_headers"])
            )
            row["bare_rps"] = bare["rps"]
            row["bare_cpu_ms_per_request"] = bare["cpu_ms_per_request"]
            row["governed_bare_ratio"] = round(gov["rps"] / bare["rps"], 3) if bare["rps"] else None
            row["c32_order"] = list(paths)
        return row

    def gateway_log(self, path: Path = OUT_DIR / "gateway.log") -> dict[str, Any]:
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        errors = [ln for ln in lines if re.search(r"ERROR|Traceback|Exception", ln)]
        return {"lines": len(lines), "error_lines": len(errors), "tail": lines[-15:]}


def c1_overheads(
    direct: dict[str, Any], through: dict[str, Any], sdirect: dict[str, Any], sthrough: dict[str, Any]
) -> dict[str, float | None]:
    """What a path adds at c=1, from load summaries of the same calls straight to the mock and
    through the path (JSON, then streams): each percentile of the path minus the same one direct."""
    d, g = direct["latency_ms"], through["latency_ms"]
    sd, sg = sdirect.get("ttft_ms", {}), sthrough.get("ttft_ms", {})

    def shift(a: dict[str, float], b: dict[str, float], p: str) -> float | None:
        return round(b[p] - a[p], 3) if p in a and p in b else None

    return {
        "direct_p50_ms": d.get("p50"),
        "gateway_p50_ms": g.get("p50"),
        **{f"overhead_{p}_ms": shift(d, g, p) for p in ("p50", "p90", "p99")},
        "direct_ttft_p50_ms": sd.get("p50"),
        "gateway_ttft_p50_ms": sg.get("p50"),
        **{f"ttft_overhead_{p}_ms": shift(sd, sg, p) for p in ("p50", "p99")},
    }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def _rps(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} req/s"


# --- machine description --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    versions = {}
    for package in ("django", "uvicorn", "uvloop", "httptools", "asgiref", "adrf", "djangorestframework",
                    "httpx", "httpx-aiohttp", "aiohttp", "orjson", "redis", "psycopg", "py-spy"):  # fmt: skip
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    wrk = shutil.which("wrk")
    wrk_version = None
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True)
        wrk_version = (
            (out.stdout or out.stderr).splitlines()[0].split(" [")[0] if (out.stdout or out.stderr) else "?"
        )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else "unknown",
        "memory_gb": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "wrk": wrk_version,
        "git_commit": commit.stdout.strip() or None,
    }


# --- main -----------------------------------------------------------------------------------------


def keep_notes(rendered: str, previous: str) -> str:
    """The hand-written reading of the dialect figures (between the dialects-notes markers) stays in
    its place, after the Dialects section, until someone rewrites it; the slot vanishes without one."""
    start, end = "<!-- dialects-notes:start -->", "<!-- dialects-notes:end -->"
    kept = ""
    if start in previous and end in previous:
        kept = start + previous.split(start, 1)[1].split(end, 1)[0] + end
    return rendered.replace(report.NOTES_SLOT + "\n", kept + "\n" if kept else "", 1)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tollhouse benchmark (writes bench/REPORT.md).")
    parser.add_argument("--quick", action="store_true", help="about 10x smaller: a smoke run")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy even if a target is missed")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile with py-spy even if every target passes (always done with --baseline, on both sides)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure the gateway as it was at git revision REV (e.g. c269c92), interleaved "
        "with this checkout, and add a before/after section",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="rounds of the interleaved comparisons, governed vs bare path and --baseline before vs after "
        "(default 3, --quick 2; min 2)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.rounds is not None:
        if args.rounds < 2:
            parser.error("--rounds must be at least 2: one round has no spread to judge noise by")
        plan = replace(plan, compare_rounds=args.rounds)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a killed harness still stops its servers
    # Started as a background job of a non-interactive shell, SIGINT arrives ignored; restore it so
    # Ctrl-C / kill -INT always stops the run (and its servers).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    pin = procs.pinning_available()
    if pin:
        # The harness itself is the load generator: it (and wrk/py-spy it spawns) runs on core 1.
        os.sched_setaffinity(0, {LOAD_CORE})
    started, started_at = time.monotonic(), datetime.now(tz=UTC)
    # The box may be shared: the load average says whether something else ran alongside.
    loadavg_start = Path("/proc/loadavg").read_text().split()[:3]
    phases: dict[str, float] = {}
    errors: list[str] = []
    status = 0
    busy: list[tuple[float, float, float]] = []  # after setup, and after the main gateway's phases

    with procs.ProcessGroups() as groups:
        bench = Bench(plan=plan, groups=groups, pin=pin, baseline_rev=args.baseline)
        # --baseline profiles the before and after sides (in before_after) unless --no-profile.
        bench.profile_sides = bool(args.baseline) and not args.no_profile

        def phase(name: str, fn: Callable[[], None]) -> None:
            t = time.monotonic()
            print(f"[bench] {name} ...", flush=True)
            fn()
            phases[name] = round(time.monotonic() - t, 1)

        try:
            phase("setup", bench.setup)
            busy.append(bench.busy_sample())
            bench.memory("start")  # before any API request
            phase("sanity", bench.sanity)
            phase("latency c=1", bench.latency)
            bench.check_gateway_alive()
            phase("streaming c=1", bench.streaming)
            bench.check_gateway_alive()
            phase("throughput", bench.throughput)
            bench.check_gateway_alive()
            bench.results["redis"] = bench.redis_ops()
            phase("soak", bench.soak)
            phase("governed vs bare path", bench.governed_vs_bare)
            bench.check_gateway_alive()
            phase("dialects", bench.dialect_paths)
            bench.check_gateway_alive()
            phase("response cache", bench.cache_hits)
            bench.check_gateway_alive()
            bench.results["usage_stream_len"] = bench.r().xlen(USAGE_STREAM)
            bench.results["gateway_requests_before_drain"] = bench.gateway_requests
            phase("usage drain", bench.drain)
            bench.governed_ledger()
            bench.results["targets"] = bench.evaluate()
            missed = any(t["passed"] is False for t in bench.results["targets"])
            if not args.baseline and ((missed and not args.no_profile) or args.profile):
                phase("profile", bench.profile)
            busy.append(bench.busy_sample())
            if args.baseline:
                phase(f"before/after ({args.baseline} vs this checkout)", bench.before_after)
        except SetupError as exc:
            print(f"[bench] setup failed: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("[bench] interrupted; stopping servers", file=sys.stderr)
            return 130
        except Exception as exc:  # a phase broke: report what was measured, exit 1
            errors.append(f"{type(exc).__name__}: {exc}")
            print(f"[bench] phase failed: {exc}", file=sys.stderr)
            status = 1
        finally:
            # Stop the servers before writing the report, also on failure (the with-block is a backstop).
            log_summary = bench.gateway_log() if bench.gateway else {}
            groups.stop_all()
            if args.baseline:
                baseline.cleanup(BASELINE_DIR)  # the exported tree; its venv stays cached

        results = bench.results
        results["targets"] = bench.evaluate()  # with everything measured (profiles, before/after)
        results["capacity"] = bench.capacity()
        results["errors"] = errors
        results["gateway_log"] = log_summary
        results["gateway_requests_client_count"] = bench.gateway_requests
        results["phases_s"] = phases
        results["meta"] = {
            **results.get("meta", {}),
            "generated_at": started_at.isoformat(timespec="seconds"),
            "mode": plan.name,
            "plan": plan.__dict__,
            "run_seconds": round(time.monotonic() - started, 1),
            "pinned": pin,
            "loadavg_start": loadavg_start,
            "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
            # Other work on the box from setup to the end of the main gateway's phases, in cores.
            "other_work_cores": bench.other_cores(busy[0], busy[1]) if len(busy) == 2 else None,
            "command": " ".join(["bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
            "throughput_tool": "wrk" if bench.wrk else "bundled",
            "machine": machine(),
            "prompt": PROMPT,
            "stream_prompt": STREAM_PROMPT,
            "model": MODEL,
        }
        (OUT_DIR / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        rendered = report.render(results)
        # Keep the sections other scripts write (the usage pipeline's, bench/usage.py; the console
        # pages', bench/pages.py; the routing strategies', bench/routing.py) across hot-path runs.
        previous = REPORT_PATH.read_text() if REPORT_PATH.exists() else ""
        if "cache" in results:  # measured in this run: its section, fresh
            import cache

            rendered = (
                rendered.rstrip("\n")
                + "\n\n"
                + cache.section(
                    results["cache"]["summary"],
                    {
                        "mode": plan.name,
                        "rounds": plan.compare_rounds,
                        "generated_at": results["meta"]["generated_at"],
                        "loadavg_start": results["meta"]["loadavg_start"],
                        "loadavg_end": results["meta"]["loadavg_end"],
                        "tput_s": results["cache"]["tput_s"],
                    },
                )
                + "\n"
            )
        for start, end in (
            ("<!-- usage:start -->", "<!-- usage:end -->"),
            ("<!-- pages:start -->", "<!-- pages:end -->"),
            *(() if "cache" in results else (("<!-- cache:start -->", "<!-- cache:end -->"),)),
            ("<!-- routing:start -->", "<!-- routing:end -->"),
        ):
            if start in previous and end in previous:
                kept = start + previous.split(start, 1)[1].split(end, 1)[0] + end
                rendered = rendered.rstrip("\n") + "\n\n" + kept + "\n"
        rendered = keep_notes(rendered, previous)
        REPORT_PATH.write_text(rendered)
        print(f"[bench] done in {results['meta']['run_seconds']} s: {REPORT_PATH}", flush=True)
        for t in results["targets"]:
            verdict = "PASS" if t["passed"] else "MISS" if t["passed"] is False else "n/a"
            print(f"  {verdict:4}  {t['name']}: {t['measured']} {t['unit']} ({t['op']} {t['limit']})")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""CI: follow the README's "Running in production" section as written, against a fresh database.

It takes the section's ```sh blocks (skipping any whose fence says `no-ci`: the real-provider
variant, which needs an account and the internet), and runs their commands in order in ONE bash
(`set -euo pipefail`, so `export`, `. file` and `KEY=$(...)` carry on from step to step, as they
would for a person), with only these substitutions, each of which must match or the run fails:

    postgres://tollhouse:change-me@db.internal:5432/tollhouse -> postgres://postgres@127.0.0.1:5432/tollhouse_readme_ci
    redis://redis.internal:6379/0                             -> redis://127.0.0.1:6379/9
    var/tollhouse.env                                         -> <temporary dir>/tollhouse.env
    port 8000 (gateway), port 8001 (mock provider)            -> 18000, 18001

(the secrets file goes to a temporary directory so the checkout stays clean and the run can be
repeated; README_CI_POSTGRES, README_CI_REDIS, README_CI_GATEWAY_PORT and README_CI_MOCK_PORT
override the CI side). The bash starts from this process's environment minus every Tollhouse, Django,
Celery and provider variable (a fresh machine), plus TOLLHOUSE_VAR_DIR=<temporary dir>/var so beat's
schedule file stays out of the checkout too.

The long-running lines (serve, celery worker, celery beat, mockprovider) are started in the
background with their output captured; the next step waits until each is up (listening on its port,
or at least still alive). After the last step, one call with the official `openai` SDK
(max_retries=0) uses the key that `key_issue` printed, and the script waits until that call's usage
row is in the database, written by the real Celery worker. Everything started is killed (process
group) on exit, the database is dropped and Redis db 9 flushed; on any failure the step log and the
processes' logs are printed and the exit status is non-zero.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import openai
import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Running in production"
DATABASE = "tollhouse_readme_ci"
POSTGRES = os.environ.get("README_CI_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("README_CI_REDIS", "redis://127.0.0.1:6379/9")
GATEWAY_PORT = int(os.environ.get("README_CI_GATEWAY_PORT", "18000"))
MOCK_PORT = int(os.environ.get("README_CI_MOCK_PORT", "18001"))
# Commands that do not return: started in the background, with a log of their own.
LONG_RUNNING = {
    "serve": re.compile(r"manage\.py serve\b"),
    "celery-worker": re.compile(r"celery -A config worker\b"),
    "celery-beat": re.compile(r"celery -A config beat\b"),
    "mockprovider": re.compile(r"manage\.py mockprovider\b"),
}
SCRIPT_TIMEOUT = 900  # seconds, for the whole section (make install may have to build the venv)
USAGE_TIMEOUT = 90  # seconds for the SDK call's usage row to reach the database
CLEAN_ENV_PREFIXES = ("DATABASE_URL", "REDIS_URL", "CELERY_", "TOLLHOUSE_", "DJANGO_", "OPENAI_", "DEEPSEEK_")
CLEAN_ENV_NAMES = {"PORT", "VIRTUAL_ENV"}

# Shown (and checked) before anything runs.
BASH_PRELUDE = r"""
set -euo pipefail
# up NAME PID [PORT]: the background process NAME is still running and, given a PORT, accepts
# connections on it. Called by the CI after each long-running line, never written in the README.
up() {
  local name=$1 pid=$2 port=${3:-}
  for _ in $(seq 240); do
    if ! kill -0 "$pid" 2>/dev/null; then echo "README-CI: $name exited" >&2; return 1; fi
    if [ -z "$port" ]; then
      sleep 2
      kill -0 "$pid" 2>/dev/null && return 0
      echo "README-CI: $name exited" >&2; return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "README-CI: $name is not listening on port $port after 120 s" >&2
  return 1
}
# healthy PORT: the gateway on PORT answers /healthz (all its startup done, not just the socket bound).
healthy() {
  for _ in $(seq 120); do
    curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null && return 0
    sleep 0.5
  done
  echo "README-CI: the gateway on port $1 does not answer /healthz after 60 s" >&2
  return 1
}
"""


class Failed(Exception):
    pass


def section_blocks(readme: str) -> list[str]:
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else len(readme)]
    blocks = []
    for info, body in re.findall(r"^```sh([^\n]*)\n(.*?)^```", section, flags=re.M | re.S):
        if "no-ci" not in info.split():
            blocks.append(body)
    if not blocks:
        raise Failed(f"no ```sh block in the README's {SECTION!r} section")
    return blocks


def commands(block: str) -> list[str]:
    """Logical command lines: continuation lines joined, comment-only and blank lines dropped."""
    result: list[str] = []
    pending = ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        result.append((pending + line).strip())
        pending = ""
    if pending:
        result.append(pending.strip())
    return result


def strip_comment(line: str) -> str:
    """The command without a trailing `# comment` (a # outside quotes, after whitespace)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line


def substitutions(work: Path) -> list[tuple[re.Pattern[str], str]]:
    return [
        (
            re.compile(re.escape("postgres://tollhouse:change-me@db.internal:5432/tollhouse")),
            f"{POSTGRES}/{DATABASE}",
        ),
        (re.compile(re.escape("redis://redis.internal:6379/0")), REDIS),
        (re.compile(re.escape("var/tollhouse.env")), str(work / "tollhouse.env")),
        (re.compile(r"\b8000\b"), str(GATEWAY_PORT)),
        (re.compile(r"\b8001\b"), str(MOCK_PORT)),
    ]


def build_script(lines: list[str], work: Path, logs: Path) -> tuple[str, dict[str, Path]]:
    rules = substitutions(work)
    used = [False] * len(rules)
    background: dict[str, Path] = {}
    out = [BASH_PRELUDE, f"cd {shlex.quote(str(ROOT))}"]
    for number, line in enumerate(lines, start=1):
        for index, (pattern, replacement) in enumerate(rules):
            line, count = pattern.subn(replacement, line)
            used[index] = used[index] or count > 0
        out.append(f"printf '\\n== README step %d: %s\\n' {number} {shlex.quote(line)}")
        name = next((name for name, pattern in LONG_RUNNING.items() if pattern.search(line)), None)
        if name is None:
            out.append(line)
            continue
        log = logs / f"{name}.log"
        background[name] = log
        port = re.search(r"--port\s+(\d+)", line)
        out.append(f"{strip_comment(line)} > {shlex.quote(str(log))} 2>&1 < /dev/null &")
        out.append(f"up {name} $! {port.group(1) if port else ''}")
        if name == "serve" and port:
            out.append(f"healthy {port.group(1)}")
    missing = [str(pattern.pattern) for (pattern, _), hit in zip(rules, used, strict=True) if not hit]
    if missing:
        raise Failed(f"these README examples were not found, so the substitutions are stale: {missing}")
    absent = sorted(set(LONG_RUNNING) - set(background))
    if absent:
        raise Failed(f"the README section no longer starts: {', '.join(absent)}")
    return "\n".join(out) + "\n", background


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def fresh_state() -> None:
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    redis.Redis.from_url(REDIS).flushdb()


def drop_state() -> None:
    try:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        redis.Redis.from_url(REDIS).flushdb()
    except Exception as exc:  # cleanup must not hide the run's own result
        print(f"readme-ci: cleanup of {DATABASE} / {REDIS} failed: {exc}", file=sys.stderr)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the bash's process group (every background process is in it), then SIGKILL."""
    group = process.pid
    for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process.poll() is None:
                time.sleep(0.2)
                continue
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        if sig == signal.SIGTERM:
            print("readme-ci: processes still running 30 s after SIGTERM; killing them", file=sys.stderr)


def sdk_call_is_billed(key: str) -> str:
    request_id = f"readme-ci-{uuid.uuid4().hex}"
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{GATEWAY_PORT}/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "Hello from the README's CI!"}],
        extra_headers={"X-Request-ID": request_id},
    )
    if not reply.choices or not reply.choices[0].message.content or reply.usage is None:
        raise Failed(f"the SDK call got an empty answer: {reply}")
    deadline = time.monotonic() + USAGE_TIMEOUT
    with psycopg.connect(f"{POSTGRES}/{DATABASE}", autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT status, prompt_tokens, completion_tokens, cost FROM billing_usagerecord "
                "WHERE client_request_id = %s",
                (request_id,),
            ).fetchone()
            if row is not None:
                break
            if time.monotonic() > deadline:
                raise Failed(f"the SDK call's usage row did not reach the database within {USAGE_TIMEOUT} s")
            time.sleep(0.5)
    status, prompt, completion, cost = row
    if (status, prompt, completion) != (200, reply.usage.prompt_tokens, reply.usage.completion_tokens):
        raise Failed(f"usage row {row} does not match the reply's usage {reply.usage}")
    if Decimal(cost) <= 0:
        raise Failed(f"usage row {row} has no cost: gpt-4.1 should have been priced by provider_add")
    return f"{completion} tokens, ${cost}"


def main() -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tollhouse-readme-ci-"))
    logs = work / "logs"
    logs.mkdir()
    steps_log = logs / "steps.log"
    background: dict[str, Path] = {}
    process: subprocess.Popen[bytes] | None = None
    ok = False
    try:
        lines = [
            line for block in section_blocks((ROOT / "README.md").read_text()) for line in commands(block)
        ]
        script, background = build_script(lines, work, logs)
        (work / "readme.sh").write_text(script)
        for port in (GATEWAY_PORT, MOCK_PORT):
            if not port_free(port):
                raise Failed(f"port {port} is in use; set README_CI_GATEWAY_PORT / README_CI_MOCK_PORT")
        fresh_state()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(CLEAN_ENV_PREFIXES) and k not in CLEAN_ENV_NAMES
        }
        env["TOLLHOUSE_VAR_DIR"] = str(work / "var")
        print(f"readme-ci: {len(lines)} steps from README.md")
        with steps_log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", str(work / "readme.sh")],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            code = process.wait(SCRIPT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Failed(f"the README's steps did not finish within {SCRIPT_TIMEOUT} s") from None
        if code != 0:
            raise Failed(f"a README step failed (bash exit {code}); see the step log")
        steps_done = time.monotonic()
        keys = re.findall(r"^(th-[A-Za-z0-9]{20,})$", steps_log.read_text(), flags=re.M)
        if not keys:
            raise Failed("key_issue printed no key")
        billed = sdk_call_is_billed(keys[-1])
        for name, log in background.items():
            if "Traceback" in log.read_text(errors="replace"):
                raise Failed(f"{name} logged a traceback")
        if list(ROOT.glob("celerybeat-schedule*")) or (ROOT / "var" / "tollhouse.env").exists():
            raise Failed("the run left files in the checkout")
        print(
            f"readme-ci: README steps ran in {steps_done - started:.0f} s; SDK call answered and billed "
            f"({billed}) by the Celery worker; total {time.monotonic() - started:.0f} s"
        )
        ok = True
    except (Failed, openai.OpenAIError, psycopg.Error, redis.RedisError, OSError) as exc:
        print(f"README CI FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        if process is not None:
            stop(process)
        if not ok:
            for path in [steps_log, *background.values()]:
                if path.exists():
                    print(
                        f"\n--- {path.name} ---\n{path.read_text(errors='replace')[-8000:]}", file=sys.stderr
                    )
        drop_state()
        shutil.rmtree(work, ignore_errors=True)  # it holds the run's secrets file
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

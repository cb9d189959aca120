"""Subprocesses and /proc readings for the benchmark harness (Linux only).

Every long-lived server is started in its own session, hence its own process group, so that
cleanup can signal the whole group (the server and anything it forked) and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port that was free a moment ago (the tiny race with other programs is acceptable here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinning_available() -> bool:
    """Cores 0 and 1 both usable and taskset installed: the layout the harness is designed for."""
    return shutil.which("taskset") is not None and {0, 1} <= os.sched_getaffinity(0)


def pinned(argv: Sequence[str], core: int | None) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if core is not None else list(argv)


@dataclass
class Managed:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path | None


class ProcessGroups:
    """Starts servers in their own process groups and always stops them (use as a context manager)."""

    def __init__(self) -> None:
        self.running: list[Managed] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path | None = None,
        stdout_pipe: bool = False,
    ) -> Managed:
        log: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            log = log_path.open("wb")
        try:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                start_new_session=True,  # own process group: killpg reaches its children too
            )
        finally:
            if log_path is not None and not isinstance(log, int):
                log.close()  # the child holds its own copy of the descriptor
        managed = Managed(name, proc, log_path)
        self.running.append(managed)
        return managed

    def stop(self, managed: Managed, timeout_s: float = 5.0) -> None:
        proc = managed.proc
        if proc.poll() is None:
            # SIGTERM first: uvicorn and the mock shut down cleanly (lifespan, flushed logs).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout_s)
        else:
            # The leader is gone, but a forked child could still hold the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()
        if managed in self.running:
            self.running.remove(managed)

    def stop_all(self) -> None:
        for managed in reversed(list(self.running)):
            self.stop(managed)

    def __enter__(self) -> ProcessGroups:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()


def read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> str | None:
    """The next line of a child's stdout, or None on timeout/EOF (never blocks past the timeout)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                continue
            byte = os.read(proc.stdout.fileno(), 1)  # unbuffered: leave the rest for later reads
            if not byte:
                return None
            if byte == b"\n":
                return buffer.decode(errors="replace")
            buffer += byte
    return None


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll ``url`` until it answers 200; False if the process died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- /proc ----------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """pid and every live descendant (uvicorn forks workers when --workers > 1)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _status_kb(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kb(pid: int) -> int:
    """VmRSS of the process tree rooted at pid, in KiB."""
    return sum(_status_kb(p, "VmRSS") for p in descendants(pid))


def hwm_kb(pid: int) -> int:
    """Peak RSS (VmHWM) of the process tree rooted at pid, in KiB (sum of each process's peak)."""
    return sum(_status_kb(p, "VmHWM") for p in descendants(pid))


def thread_count(pid: int) -> int:
    return sum(_status_kb(p, "Threads") for p in descendants(pid))


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process tree rooted at pid (all threads included), in seconds."""
    ticks = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLOCK_TICKS


def core_ticks() -> dict[int, tuple[int, int]]:
    """Per core: (busy ticks, total ticks) from /proc/stat; busy excludes idle and iowait."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values]
            total = sum(numbers[:8])  # user..steal; guest time is already inside user
            out[int(name[3:])] = (total - numbers[3] - numbers[4], total)
    return out

"""What must never appear in a log line, and a scanner for captured logs.

A `SecretRegistry` holds exact values (API keys issued, JWTs minted, provider credentials, prompt
markers) and, so that a value nobody registered is caught too, the shapes of a Tollhouse API key
and of a JWT. `scan(text)` returns one `Finding` per line that holds any of them; a finding shows
only the first characters of what it found, so a failing test does not print the secret whole.

`registry` is the session's shared one: fixtures that issue keys or mint tokens may add to it, and
a session-wide check can scan everything logged at the end of the run.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# th- + 12-character prefix + 40-character secret (accounts/keys.py); a JWT's header and payload.
SHAPES = {
    "API key (shape)": re.compile(r"th-[a-z0-9]{12}[A-Za-z0-9]{40}"),
    "JWT (shape)": re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"),
}


@dataclass(frozen=True)
class Finding:
    kind: str
    shown: str  # the first characters of what was found
    line_number: int
    source: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line_number}: {self.kind} {self.shown}…"


class SecretRegistry:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}  # value -> kind

    def add(self, value: str, kind: str) -> str:
        if len(value) < 8:
            raise ValueError("a registered secret must be at least 8 characters (it would match by chance)")
        self.values[value] = kind
        return value

    def api_key(self, raw: str) -> str:
        return self.add(raw, "API key")

    def jwt(self, token: str) -> str:
        return self.add(token, "JWT")

    def credential(self, value: str) -> str:
        return self.add(value, "provider credential")

    def prompt_marker(self, label: str = "") -> str:
        """A unique word to put in a prompt: if a log line holds it, that line logged prompt text."""
        return self.add(f"pm{label}{uuid.uuid4().hex[:16]}", "prompt text")

    def scan(self, text: str, *, source: str = "log", shapes: bool = True) -> list[Finding]:
        findings = []
        for number, line in enumerate(text.splitlines(), start=1):
            for value, kind in self.values.items():
                if value in line:
                    findings.append(Finding(kind, value[:6], number, source))
            if shapes:
                for kind, shape in SHAPES.items():
                    match = shape.search(line)
                    if match and match.group() not in self.values:
                        findings.append(Finding(kind, match.group()[:6], number, source))
        return findings

    def scan_files(self, paths: Iterable[Path]) -> list[Finding]:
        findings = []
        for path in paths:
            if path.exists():
                findings += self.scan(path.read_text(errors="replace"), source=str(path))
        return findings


registry = SecretRegistry()


# -- a whole-run check (wired from tests/conftest.py) ----------------------------------------------
_session_log: dict[str, Path] = {}
_append_lock = threading.Lock()


def session_log_start(path: Path) -> logging.Handler:
    """Write every record the test process logs, at DEBUG and up, to `path` as JSON lines (with
    their extra fields), from now until the end of the session. The root logger's own level is left
    as configured (TOLLHOUSE_LOG_LEVEL): set it to debug to scan debug lines as well."""
    from config.logs import JsonFormatter, RequestIdFilter

    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(handler)
    _session_log["path"] = path
    return handler


def session_log_append(text: str, *, source: str) -> None:
    """Add a subprocess's captured output (a gateway, a worker) to the session's log file."""
    path = _session_log.get("path")
    if path is None or not text:
        return
    with _append_lock, path.open("a", encoding="utf-8") as file:
        file.write(f"--- output of {source} ---\n{text}\n")


def session_log_findings() -> list[Finding]:
    """Everything the registry (and the key and JWT shapes) finds in the session's log file."""
    path = _session_log.get("path")
    if path is None:
        return []
    for handler in logging.getLogger().handlers:
        handler.flush()
    return registry.scan_files([path])

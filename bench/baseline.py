"""The gateway as it was at an earlier commit, built beside this checkout for `run.py --baseline REV`.

The tree is exported with `git archive` (read-only: no worktree, no branch, index or working-file
change in the main checkout) into bench/out/baseline/src and removed at the end of the run. It gets
its own virtualenv, because its dependencies differ (an older tree may need packages this checkout
dropped). The venv is cached in bench/out/baseline/venv-<hash> and reused while the hash holds; the
hash covers the tree's pyproject.toml, the interpreter, and the current venv's package versions,
which are passed to pip as constraints so both gateways run on the same library versions wherever
they share a dependency: the comparison then measures our code, not a newer uvicorn or Django.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Lists the distributions of whichever interpreter runs it, as {name: version}.
_LIST_PACKAGES = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions() if d.metadata['Name']}))"
)
# Neither is a library the gateway runs on; the project itself is installed editable.
_NOT_CONSTRAINED = {"tollhouse", "pip", "setuptools", "wheel"}


class BaselineError(Exception):
    """The baseline tree or its venv could not be prepared."""


@dataclass
class BaselineTree:
    rev: str  # as given on the command line
    sha: str
    short: str
    subject: str
    src: Path
    python: Path
    venv: Path
    venv_reused: bool
    install_s: float
    constrained: bool  # False when pip could not satisfy the current venv's versions
    packages: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        return {
            "rev": self.rev,
            "sha": self.sha,
            "short": self.short,
            "subject": self.subject,
            "venv": str(self.venv),
            "venv_reused": self.venv_reused,
            "install_s": round(self.install_s, 1),
            "constrained": self.constrained,
        }


def _git(root: Path, *args: str) -> bytes:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=120)
    if done.returncode != 0:
        raise BaselineError(f"git {args[0]} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def installed_packages(python: Path | str) -> dict[str, str]:
    done = subprocess.run([str(python), "-c", _LIST_PACKAGES], capture_output=True, timeout=60)
    if done.returncode != 0:
        raise BaselineError(f"cannot list the packages of {python}: {done.stderr.decode()[-500:]}")
    return dict(sorted(json.loads(done.stdout).items()))


def _base_interpreter(python: Path | str) -> tuple[str, str]:
    """The interpreter a venv was made from (so the baseline runs on the very same Python)."""
    code = "import sys, platform; print(sys._base_executable); print(platform.python_version())"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, check=True)
    executable, version = out.stdout.split()
    return executable, version


def prepare(*, root: Path, rev: str, work_dir: Path, current_python: Path | str, log: Path) -> BaselineTree:
    """Export REV into work_dir/src and return it with a ready venv (built or reused)."""
    try:
        sha = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except BaselineError:
        raise BaselineError(f"{rev!r} is not a commit of this repository") from None
    short = _git(root, "rev-parse", "--short", sha).decode().strip()
    subject = _git(root, "log", "-1", "--format=%s", sha).decode(errors="replace").strip()

    src = work_dir / "src"
    shutil.rmtree(src, ignore_errors=True)  # a crashed earlier run may have left one
    src.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(_git(root, "archive", "--format=tar", sha))) as tar:
        tar.extractall(src, filter="data")
    pyproject = src / "pyproject.toml"
    if not pyproject.exists():
        raise BaselineError(f"{short} has no pyproject.toml: cannot build its environment")

    base_python, base_version = _base_interpreter(current_python)
    current = installed_packages(current_python)
    constraints = "".join(
        f"{name}=={version}\n" for name, version in current.items() if name not in _NOT_CONSTRAINED
    )
    digest = hashlib.sha256()
    for part in (pyproject.read_bytes(), base_python.encode(), base_version.encode(), constraints.encode()):
        digest.update(part + b"\0")
    venv = work_dir / f"venv-{digest.hexdigest()[:12]}"
    python = venv / "bin" / "python"
    marker = venv / ".tollhouse-bench-ready"  # written last: a half-built venv is rebuilt

    reused, constrained, started = marker.exists(), True, time.monotonic()
    if reused:
        constrained = json.loads(marker.read_text()).get("constrained", True)
    else:
        shutil.rmtree(venv, ignore_errors=True)
        _run([base_python, "-m", "venv", str(venv)], log, "python -m venv")
        constraints_path = work_dir / "constraints.txt"
        constraints_path.write_text(constraints)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        try:
            _run([*pip, "-c", str(constraints_path), "-e", str(src)], log, "pip install (constrained)")
        except BaselineError:
            # The old tree wants a version range the current venv does not have: let pip choose,
            # and say so in the report (library versions then differ between the two sides).
            constrained = False
            _run([*pip, "-e", str(src)], log, "pip install")
        marker.write_text(json.dumps({"constrained": constrained, "sha": sha}))
    return BaselineTree(
        rev=rev,
        sha=sha,
        short=short,
        subject=subject,
        src=src,
        python=python,
        venv=venv,
        venv_reused=reused,
        install_s=time.monotonic() - started,
        constrained=constrained,
        packages=installed_packages(python),
    )


def _run(argv: list[str], log: Path, what: str) -> None:
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(argv, stdout=out, stderr=out, timeout=900)
        except subprocess.TimeoutExpired as exc:
            raise BaselineError(f"{what} timed out (log: {log})") from exc
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise BaselineError(f"{what} failed ({done.returncode}); last lines of {log}:\n{tail}")


def package_diff(current: dict[str, str], baseline: dict[str, str]) -> dict[str, Any]:
    """What differs between the two venvs: shared packages at other versions, and who has what alone.

    The current venv also holds the dev and test tools (the baseline's has runtime packages only),
    so its extra packages are only counted.
    """
    shared = (set(current) & set(baseline)) - _NOT_CONSTRAINED
    return {
        "versions": {
            name: f"{baseline[name]} -> {current[name]}"
            for name in sorted(shared)
            if current[name] != baseline[name]
        },
        "only_before": {
            name: baseline[name] for name in sorted(set(baseline) - set(current) - _NOT_CONSTRAINED)
        },
        "only_after_count": len(set(current) - set(baseline) - _NOT_CONSTRAINED),
    }


def cleanup(work_dir: Path) -> None:
    """Remove the exported tree (the venvs stay cached for the next run)."""
    with contextlib.suppress(OSError):
        shutil.rmtree(work_dir / "src")

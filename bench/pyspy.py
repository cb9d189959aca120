"""Summarise ``py-spy record --format raw`` output (collapsed stacks: ``f1;f2;...;leaf count``).

Own time of a function = samples in which it is the innermost (leaf) frame; inclusive time =
samples in which it appears anywhere in the stack (counted once per stack even if recursive).
Frames are keyed by function and file, ignoring the line number, so a function's lines add up.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_key(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip() or "<unknown>"
    return f"{match['func']} ({match['file']})"


def package_of(key: str) -> str:
    """'Foo.bar (django/core/handlers/asgi.py)' -> 'django'; stdlib modules are marked as such."""
    match = re.search(r"\(([^()]*)\)$", key)
    if match is None:
        return "<unknown>"
    path = match.group(1).lstrip("<").rstrip(">")
    top = path.split("/", 1)[0].removesuffix(".py")
    if top in sys.stdlib_module_names:
        return f"{top} (stdlib)"
    return top or "<unknown>"


def parse(raw: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append(([frame_key(f) for f in stack.split(";")], int(count)))
    return stacks


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    stacks = parse(raw)
    total = sum(count for _, count in stacks)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        packages[package_of(frames[-1])] += count
        for key in set(frames):
            inclusive[key] += count

    def rows(counter: Counter[str], n: int, skip_above: float = 1.01) -> list[dict[str, Any]]:
        out = []
        for key, count in counter.most_common():
            share = count / total if total else 0.0
            if share >= skip_above:
                continue
            out.append({"frame": key, "samples": count, "share": round(share, 4)})
            if len(out) == n:
                break
        return out

    return {
        "samples": total,
        "own": rows(own, top),
        # Frames on (nearly) every stack are the event loop's and uvicorn's roots: not informative.
        "inclusive": rows(inclusive, 12, skip_above=0.9),
        "packages": rows(packages, 10),
    }


def within(raw: str, file: str, top: int = 6) -> dict[str, Any]:
    """The samples with a frame of `file` anywhere on the stack (e.g. gateway/governor.py: the
    admission and settlement steps), their share of all samples, and their own time by package."""
    stacks = parse(raw)
    total = sum(count for _, count in stacks)
    packages: Counter[str] = Counter()
    for frames, count in stacks:
        if any(f"({file})" in frame for frame in frames):
            packages[package_of(frames[-1])] += count
    inside = sum(packages.values())
    return {
        "file": file,
        "samples": inside,
        "share": round(inside / total, 4) if total else 0.0,
        "packages": [
            {"frame": name, "samples": n, "share": round(n / inside, 4)}
            for name, n in packages.most_common(top)
        ],
    }

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


# --- categories (issue 17) ---------------------------------------------------------------------------
#
# Each collapsed stack goes to ONE category: the one of the deepest frame (closest to the leaf) that
# matches a rule. A frame matches a rule when its file starts with one of the rule's paths and, if the
# rule names functions, its function is one of them ("Class.method" or a bare name). Rules are tried
# in order for each frame, so a function-specific rule placed before its file's generic one wins.
#
# Generic helpers have deliberately no rule — django/http/request.py, asyncio, orjson, hmac,
# ipaddress, dataclass-generated __init__ ("<string>"), yarl, multidict, billing/pricing.py,
# django/utils — so their time goes to whoever called them (orjson.loads of a request body is request
# parsing because codec/fields code called it; hmac is auth because accounts/keys.py did).
#
# The Redis client (config/resp.py, redis-py) has no rule either, for the same reason: its time is
# the caller's, i.e. admission when Governor.admit sent the script, settlement when Governor.settle
# did. Only a stack with Redis client frames and no categorised caller (the config-change listener,
# say) lands in "Redis client"; the share of all stacks that pass through the client is given apart
# (`redis_client_inclusive`), so its total cost stays visible.
#
# Frames at or above the event loop's entry (manage.py, the serve command, uvicorn's Server.run,
# asyncio's Runner.run) are never matched: they are on every stack.

CATEGORIES = (
    "ASGI/HTTP parsing",
    "view dispatch (Django/DRF)",
    "request parsing and validation",
    "auth",
    "admission",
    "upstream client",
    "response writing",
    "settlement",
    "usage event",
    "metrics",
    "logging",
    "Redis client",
    "event loop",
    "other",
)

# The governor's admission side (its settlement side is listed under "settlement"; LuaScript.__call__
# runs both scripts, so it has no rule and goes to its caller).
_GOVERNOR_ADMISSION = frozenset(
    {
        "Governor.admit", "RedisBackend.admit", "LocalBackend.admit", "_ticket", "_headers", "_refusal",
        "rate_subjects", "budget_pots", "deployment_counters", "busy_key", "Governor.deployment_wait",
        "RedisBackend.deployment_wait", "Governor.busy_move", "RedisBackend.busy_move", "duration",
        "RedisBackend._create_pot", "Governor._remote", "Governor._failed", "Governor._recovered",
    }
)  # fmt: skip

# (category, file prefixes, functions or None for the whole file)
RULES: tuple[tuple[str, tuple[str, ...], frozenset[str] | None], ...] = (
    # -- response writing: uvicorn's send, the handler's _respond, Django's response objects
    ("response writing", ("uvicorn/protocols/http/",), frozenset({"RequestResponseCycle.send"})),
    (
        "response writing",
        ("gateway/asgi.py",),
        frozenset({"GatewayHandler._respond", "GatewayHandler._send_error"}),
    ),
    ("response writing", ("gateway/proxy.py",), frozenset({"_respond"})),
    ("response writing", ("django/http/response.py",), None),
    # -- ASGI/HTTP parsing: uvicorn, httptools, the ASGI entry and body reading, ASGIRequest
    ("event loop", ("uvicorn/server.py", "uvicorn/main.py"), None),  # the server's own tick
    ("ASGI/HTTP parsing", ("uvicorn/", "httptools/", "config/server.py", "config/asgi.py"), None),
    ("ASGI/HTTP parsing", ("gateway/asgi.py",), None),
    ("ASGI/HTTP parsing", ("django/core/handlers/",), None),
    # -- metrics and logging (before the files that call them)
    ("metrics", ("gateway/metrics.py", "config/metrics.py", "prometheus_client/"), None),
    ("logging", ("logging/", "gateway/calllog.py", "config/logs.py", "gateway/bodylog.py"), None),
    # -- usage event: building the event, the sink
    ("usage event", ("gateway/calls.py",), frozenset({"Call.event", "Call.cost_nanos"})),
    ("usage event", ("billing/events.py", "billing/usage.py"), None),
    ("usage event", ("gateway/runtime.py",), frozenset({"Runtime.sink", "sink"})),
    # -- settlement
    ("settlement", ("gateway/calls.py",), frozenset({"Call.settle"})),
    (
        "settlement",
        ("gateway/governor.py",),
        frozenset(
            {"Governor.settle", "RedisBackend.settle", "LocalBackend.settle", "_stream_key", "_stream_field"}
        ),
    ),
    ("settlement", ("gateway/executor.py",), frozenset({"_close_and_settle", "Relay._account"})),
    # -- auth
    (
        "auth",
        ("gateway/auth.py", "gateway/endusers.py", "config/clientip.py", "accounts/", "gateway/strangers.py"),
        None,
    ),
    ("auth", ("gateway/proxy.py",), frozenset({"_identify"})),
    # -- admission: the proxy's steps, the governor's admit paths, routing, budget periods, breaker
    (
        "admission",
        ("gateway/proxy.py",),
        frozenset({"_admit", "_route", "_max_cost", "_prices", "_output_tokens"}),
    ),
    (
        "admission",
        ("gateway/executor.py",),
        frozenset(
            {
                "candidates",
                "Executor._ordered",
                "Executor._deployments",
                "Executor._adapter",
                "Executor._wait",
            }
        ),
    ),
    ("admission", ("gateway/governor.py",), _GOVERNOR_ADMISSION),
    (
        "admission",
        (
            "gateway/routing.py",
            "gateway/breaker.py",
            "billing/periods.py",
            "billing/pots.py",
            "billing/budgets.py",
        ),
        None,
    ),
    ("admission", ("gateway/catalog.py", "gateway/ttlcache.py", "gateway/selectors.py"), None),
    # -- upstream client: the executor's call and reading, the adapters, httpx / aiohttp
    ("upstream client", ("gateway/executor.py", "gateway/providers/", "gateway/connection.py"), None),
    ("upstream client", ("httpx/", "httpx_aiohttp/", "aiohttp/", "httpcore/", "h11/"), None),
    # -- request parsing and validation: the dialect codecs, the canonical request, the call's setup
    ("request parsing and validation", ("gateway/dialects/", "gateway/canonical.py"), None),
    (
        "request parsing and validation",
        ("gateway/calls.py",),
        frozenset({"Call.__init__", "estimate_tokens"}),
    ),
    ("request parsing and validation", ("gateway/cache.py",), frozenset({"read_headers", "policy"})),
    # -- view dispatch: Django's view wrapper, DRF / adrf, the gateway's views, the proxy's handle
    ("view dispatch (Django/DRF)", ("django/views/", "rest_framework/", "adrf/", "gateway/views.py"), None),
    ("view dispatch (Django/DRF)", ("gateway/proxy.py",), frozenset({"handle", "_handle"})),
)

_LOOP_ENTRY = (
    "Runner.run (asyncio/runners.py)",
    "run (asyncio/runners.py)",
    "asyncio_run (uvicorn/_compat.py)",
)
_REDIS_CLIENT = ("config/resp.py", "redis/")
_EVENT_LOOP = ("asyncio/", "uvloop/", "contextvars", "selectors.py", "<frozen _collections_abc>")


def _split(key: str) -> tuple[str, str]:
    """'Foo.bar (django/x.py)' -> ('Foo.bar', 'django/x.py')."""
    func, _, rest = key.rpartition(" (")
    return func, rest.removesuffix(")")


def _rule_of(key: str) -> str | None:
    func, file = _split(key)
    for category, prefixes, functions in RULES:
        if file.startswith(prefixes) and (functions is None or func in functions):
            return category
    return None


def below_loop(frames: list[str]) -> list[str]:
    """The frames below the event loop's entry (all of them for a thread that is not the loop's)."""
    cut = 0
    for i, key in enumerate(frames):
        if key in _LOOP_ENTRY:
            cut = i + 1
    return frames[cut:]


def categorise_stack(frames: list[str]) -> str:
    mine = below_loop(frames)
    for key in reversed(mine):  # deepest first
        category = _rule_of(key)
        if category is not None:
            return category
    files = [_split(key)[1] for key in mine]
    if any(f.startswith(_REDIS_CLIENT) for f in files):
        return "Redis client"
    if all(f.startswith(_EVENT_LOOP) for f in files):  # also: nothing below the loop's entry
        return "event loop"
    return "other"


def categorise(raw: str, top_each: int = 3, top: int = 25) -> dict[str, Any]:
    """Samples per category (by the deepest matching frame), each category's top self-time frames,
    and the top frames by self time overall with the category of their stacks."""
    stacks = parse(raw)
    total = sum(count for _, count in stacks)
    per: Counter[str] = Counter()
    own_in: dict[str, Counter[str]] = {name: Counter() for name in CATEGORIES}
    own: Counter[str] = Counter()
    own_category: dict[str, Counter[str]] = {}
    redis_inclusive = 0
    for frames, count in stacks:
        category = categorise_stack(frames)
        per[category] += count
        own_in[category][frames[-1]] += count
        own[frames[-1]] += count
        own_category.setdefault(frames[-1], Counter())[category] += count
        if any(_split(key)[1].startswith(_REDIS_CLIENT) for key in frames):
            redis_inclusive += count

    def share(n: int) -> float:
        return round(n / total, 4) if total else 0.0

    return {
        "samples": total,
        "categories": [
            {
                "category": name,
                "samples": per[name],
                "share": share(per[name]),
                "top": [
                    {"frame": key, "samples": n, "share": share(n)}
                    for key, n in own_in[name].most_common(top_each)
                ],
            }
            for name in CATEGORIES
        ],
        "top_self": [
            {
                "frame": key,
                "samples": n,
                "share": share(n),
                "category": own_category[key].most_common(1)[0][0],
            }
            for key, n in own.most_common(top)
        ],
        "redis_client_inclusive": {"samples": redis_inclusive, "share": share(redis_inclusive)},
    }


def category_share(summary: dict[str, Any], category: str) -> float | None:
    for row in summary.get("categories", []):
        if row["category"] == category:
            return float(row["share"])
    return None


if __name__ == "__main__":  # python bench/pyspy.py bench/out/pyspy.raw: the categories of a raw file
    import json
    from pathlib import Path

    print(json.dumps(categorise(Path(sys.argv[1]).read_text()), indent=1))

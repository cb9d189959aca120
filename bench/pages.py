"""Console page benchmarks (issues 13 and 15): server time of every billing page, each JSON endpoint
and the CSV export's first byte, for 24 h / 7 d / 30 d ranges over a tenant with millions of usage
rows, and the CSV of a million rows with its peak memory; then every operator page (/ops/) of
accounts.context.OPS_NAV that exists (found by reversing its URL names). Writes the "console pages"
section of REPORT.md.

    .venv/bin/python bench/pages.py [--database th_billui_bench] [--seed ROWS] [--csv-rows 1000000]

The database must exist; with --seed it is dropped, created, migrated and seeded: the demo catalog
(the mock provider's routes and deployments, so usage names real deployments), tenant `bench`
(America/Los_Angeles) with ROWS rows by `manage.py usage_seed` (35 days, 20 keys, 6 models; 10 M rows
take about 6 minutes here), and OTHER_TENANTS smaller tenants for the operator overview's split by
tenant. The operator pages run over an audit log of AUDIT_ROWS entries across the tenants. Requests go through Django's test client in this process (the whole middleware
stack, the view, the template; no network): the time is the server's. Each figure is the median
(and the worst) of 7 warm runs. The CSV runs in a child process that reads the streamed response
chunk by chunk and samples its own RSS every 100,000 rows.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "bench" / "REPORT.md"
START, END = "<!-- pages:start -->", "<!-- pages:end -->"
RUNS = 7
OTHER_TENANTS = 8  # besides `bench`, for the operator overview's top tenants and "others"
OTHER_ROWS = 100_000  # usage rows of each
AUDIT_ROWS = 200_000  # audit entries across the tenants, for /ops/audit/


def setup_django(database: str) -> None:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["TOLLHOUSE_SSL_REDIRECT"] = "false"  # the test client speaks plain http
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's response.context (no other effect on timing)


def seed(database: str, rows: int) -> None:
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}"}
    psql = ["-h", "127.0.0.1", "-U", "postgres"]
    subprocess.run(["dropdb", *psql, "--if-exists", database], check=True)
    subprocess.run(["createdb", *psql, database], check=True)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], check=True, env=env)
    # The demo catalog: usage_seed then names the routes' real deployments (the operator overview's
    # provider and deployment figures); the mock's address is never called here.
    catalog = (
        "from gateway.services import demo_models_install, provider_upsert; "
        "demo_models_install(provider=provider_upsert(name='mock', kind='mock', base_url='http://127.0.0.1:9/v1'))"
    )
    subprocess.run([*manage, "shell", "-c", catalog], check=True, env=env)
    subprocess.run(
        [*manage, "tenant_create", "bench", "--timezone", "America/Los_Angeles"], check=True, env=env
    )
    subprocess.run(
        [*manage, "usage_seed", "--tenant", "bench", "--rows", str(rows), "--days", "35", "--keys", "20",
         "--models", "6"],
        check=True,
        env=env,
    )  # fmt: skip
    for number in range(1, OTHER_TENANTS + 1):
        slug = f"bench-{number}"
        subprocess.run([*manage, "tenant_create", slug], check=True, env=env)
        subprocess.run(
            [*manage, "usage_seed", "--tenant", slug, "--rows", str(OTHER_ROWS), "--days", "35", "--keys", "3",
             "--models", "4"],
            check=True,
            env=env,
        )  # fmt: skip
    subprocess.run(["psql", *psql, database, "-c", "VACUUM ANALYZE"], check=True)


def prepare() -> tuple[object, object]:
    """The bench tenant's owner (created once) and a monthly budget, as a real tenant has."""
    from decimal import Decimal

    from django.contrib.auth import get_user_model

    from accounts.models import Membership, Tenant
    from billing.models import Budget

    tenant = Tenant.objects.get(slug="bench")
    user, _ = get_user_model().objects.get_or_create(
        username="bench-owner", defaults={"email": "owner@bench.test"}
    )
    Membership.objects.get_or_create(tenant=tenant, user=user, defaults={"role": "owner"})
    Budget.objects.get_or_create(
        tenant=tenant,
        scope="tenant",
        period="month",
        defaults={"amount": Decimal(5000), "emails": ["f@bench.test"]},
    )
    return tenant, user


def timed(call) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    call()  # warm
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - began) * 1000)
        status = getattr(response, "status_code", 200)
        assert status == 200, f"HTTP {status}"
    return statistics.median(times), min(times), max(times)


def csv_first_byte(user, query: str) -> list[tuple[float, float, float]]:  # type: ignore[no-untyped-def]
    """(median, best, worst) time to the first chunk (the header), and to the first chunk of rows."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    async def once() -> tuple[float, float]:
        client = AsyncClient()
        await client.aforce_login(user)
        began = time.perf_counter()
        response = await client.get(f"/t/bench/usage.csv?{query}")
        chunks = aiter(response.streaming_content)
        await anext(chunks)
        header = (time.perf_counter() - began) * 1000
        await anext(chunks)
        rows = (time.perf_counter() - began) * 1000
        await response.aclose() if hasattr(response, "aclose") else None
        return header, rows

    results = [async_to_sync(once)() for _ in range(RUNS + 1)][1:]
    headers, rows = [r[0] for r in results], [r[1] for r in results]
    return [(statistics.median(t), min(t), max(t)) for t in (headers, rows)]


def pages(tenant, user) -> list[tuple[str, str, float, float, float]]:  # type: ignore[no-untyped-def]
    from django.test import Client

    from accounts.models import ApiKey
    from billing.models import UsageRecord

    client = Client()
    client.force_login(user)
    key = ApiKey.objects.filter(tenant=tenant).order_by("pk").first()
    record = UsageRecord.objects.filter(tenant_id=tenant.pk).order_by("-created_at").first()
    assert key is not None and record is not None
    first = client.get("/t/bench/usage/?range=30d").context["next_url"]
    results = []
    for preset in ("24h", "7d", "30d"):
        q = f"range={preset}"
        for name, path in (
            ("overview", f"/t/bench/?{q}"),
            ("latency.json (model gpt-4.1-mini)", f"/t/bench/latency.json?{q}&model=gpt-4.1-mini"),
            ("latency.json (heaviest key)", f"/t/bench/latency.json?{q}&key={key.pk}"),
            ("latency.json (model and key)", f"/t/bench/latency.json?{q}&model=gpt-4.1&key={key.pk}"),
            ("usage explorer", f"/t/bench/usage/?{q}"),
            ("usage explorer, model + 5xx", f"/t/bench/usage/?{q}&model=gpt-4.1&status=5xx"),
            ("usage explorer, end user", f"/t/bench/usage/?{q}&end_user=user-003"),
        ):
            results.append((preset, name, *timed(lambda path=path: client.get(path))))
        header, rows = csv_first_byte(user, q)
        results.append((preset, "usage.csv first byte (header)", *header))
        results.append((preset, "usage.csv first 2,000 rows", *rows))
    for name, path in (
        ("budgets", "/t/bench/budgets/"),
        ("credits", "/t/bench/credits/"),
        ("usage explorer, page 2 (keyset)", f"/t/bench/usage/{first}"),
        ("one call", f"/t/bench/usage/{record.pk}/"),
    ):
        results.append(("-", name, *timed(lambda path=path: client.get(path))))
    return results


def prepare_operator() -> object:
    """A superuser, and an audit log of AUDIT_ROWS entries spread over the tenants and a month (made
    once; bulk-inserted: only the page's reads are measured)."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from accounts.models import AuditEntry, Tenant

    user = get_user_model().objects.filter(username="bench-operator").first()
    if user is None:
        user = get_user_model().objects.create_superuser("bench-operator", "operator@bench.test", None)
    missing = AUDIT_ROWS - AuditEntry.objects.count()
    if missing > 0:
        tenants = list(Tenant.objects.order_by("pk"))
        now = timezone.now()
        actors = ["console:owner@bench.test", "api:ci@bench.test", "command:key_issue", "admin:operator"]
        rows = [
            AuditEntry(
                tenant=tenants[n % len(tenants)],
                actor=actors[n % len(actors)],
                action=("key.issue", "budget.update", "member.role", "key.revoke")[n % 4],
                object_type=("accounts.apikey", "billing.budget", "accounts.membership", "accounts.apikey")[
                    n % 4
                ],
                object_id=str(n % 5000),
                object_repr=f"bench object {n % 5000}",
                before={"status": "active"},
                after={"status": "revoked"},
                created_at=now - timedelta(seconds=n * 13),
            )
            for n in range(missing)
        ]
        AuditEntry.objects.bulk_create(rows, batch_size=5000)
    return user


def ops_pages(user) -> list[tuple[str, str, float, float, float]]:  # type: ignore[no-untyped-def]
    """Every operator page of OPS_NAV that is registered (the overview for each range, the audit log
    with its filters and its second page too)."""
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    from accounts.context import OPS_NAV

    client = Client()
    client.force_login(user)
    results = []
    for label, name in OPS_NAV:
        try:
            url = reverse(name)
        except NoReverseMatch:
            print(f"(operator page {name} is not registered: skipped)")
            continue
        if name == "billing_ops:overview":
            for preset in ("24h", "7d", "30d"):
                results.append(
                    (
                        preset,
                        f"ops {label.lower()} {url}",
                        *timed(lambda p=preset, u=url: client.get(f"{u}?range={p}")),
                    )
                )
            continue
        results.append(("-", f"ops {label.lower()} {url}", *timed(lambda url=url: client.get(url))))
        if name == "accounts_ops:audit":
            second = client.get(url).context["next_url"]
            for what, query in (
                ("tenant", "?tenant=bench"),
                ("actor", "?actor=api:"),
                ("object", "?type=accounts.apikey&object_id=42"),
                ("7 days of one tenant", "?tenant=bench-1&first=" + _days_ago(7)),
                ("page 2 (keyset)", second),
            ):
                results.append(
                    ("-", f"ops {label.lower()}, {what}", *timed(lambda q=query, u=url: client.get(u + q)))
                )
    return results


def _days_ago(days: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(days=days)).date().isoformat()


CHILD = r"""
import json, os, sys, time, resource
sys.path.insert(0, {root!r})
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django; django.setup()
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import AsyncClient

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
user = get_user_model().objects.get(username="bench-owner")

async def run():
    client = AsyncClient()
    await client.aforce_login(user)
    began = time.perf_counter()
    response = await client.get("/t/bench/usage.csv?{query}")
    rows, size, samples, next_sample = -1, 0, [], 100_000
    first = None
    async for chunk in response.streaming_content:
        if first is None:
            first = time.perf_counter() - began
        size += len(chunk)
        rows += chunk.count(b"\n")
        if rows >= next_sample:
            samples.append((rows, round(rss_mb(), 1)))
            next_sample += 100_000
    return rows, size, first, time.perf_counter() - began, samples

before = rss_mb()
rows, size, first, total, samples = async_to_sync(run)()
print(json.dumps(dict(rows=rows, mb=round(size / 1e6, 1), first_ms=round(first * 1000, 1), seconds=round(total, 1),
                rss_start=round(before, 1), samples=samples,
                peak=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))))
"""


def csv_million(database: str, target: int) -> dict[str, object]:
    """The last whole local days holding at least `target` rows, as CSV streamed in a child."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from django.db.models import Sum
    from django.utils import timezone

    from accounts.models import Tenant
    from billing.models import UsageHourlyTenant
    from billing.overview import overview_range

    tenant = Tenant.objects.get(slug="bench")
    last_day = timezone.now().astimezone(ZoneInfo(tenant.timezone)).date() - timedelta(days=1)
    first_day, count = last_day, 0
    while count < target:
        span = overview_range(tenant=tenant, preset="custom", first_day=first_day, last_day=last_day)
        hours = UsageHourlyTenant.objects.filter(tenant_id=tenant.pk, hour__gte=span.start, hour__lt=span.end)
        count = int(hours.aggregate(n=Sum("requests"))["n"] or 0)
        if count < target:
            first_day -= timedelta(days=1)
    query = f"range=custom&first={first_day}&last={last_day}"
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
           "TOLLHOUSE_SSL_REDIRECT": "false"}  # fmt: skip
    child = [sys.executable, "-c", CHILD.format(root=str(ROOT), query=query)]
    out = subprocess.run(child, check=True, env=env, capture_output=True, text=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    result["expected"] = count
    result["query"] = query
    return result


def write_report(results, big, rows_total: int, load: str) -> str:  # type: ignore[no-untyped-def]
    lines = [
        START,
        "## Console pages (issues 13 and 15)",
        "",
        f"`bench/pages.py` on {rows_total:,} usage rows: tenant `bench` (`usage_seed`, 35 days, 20 keys, 6 models,",
        f"America/Los_Angeles) and {OTHER_TENANTS} tenants of {OTHER_ROWS:,} rows each; the operator pages (`ops ...`)",
        f"over every tenant, with an audit log of {AUDIT_ROWS:,} entries. PostgreSQL 15 on the shared 2-core box of this report. Server time through",
        f"Django's test client (middleware, view, template): median, best and worst of {RUNS} warm runs.",
        f"Load average while it ran: {load} (other work shared the 2 cores; the best run is closer to an",
        "idle box). Pages read the hourly rollups (tenant, model and key hours; the cells only for a model x",
        "key pick and the top end users) and keyset pages of the raw rows; the CSV streams one keyset query",
        "per 2,000 rows; the operator overview reads the tenant, model and provider x deployment hours of",
        "every tenant. Target: every page < 300 ms, CSV first byte < 500 ms.",
        "",
        "| range | page / endpoint | median ms | best ms | worst ms |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {preset} | {name} | {median:.1f} | {best:.1f} | {worst:.1f} |"
        for preset, name, median, best, worst in results
    ]
    samples = ", ".join(f"{rows // 1000}k: {rss} MB" for rows, rss in big["samples"])
    lines += [
        "",
        f"CSV of {big['rows']:,} rows (`{big['query']}`, {big['expected']:,} calls in the rollups): "
        f"{big['mb']} MB in {big['seconds']} s; first byte after {big['first_ms']} ms in a fresh process (its",
        "first request: imports, URL and template loading); the streaming process's RSS",
        f"{big['rss_start']} MB before the request, then by rows streamed: {samples}; peak RSS {big['peak']} MB",
        "(flat: each 2,000-row chunk is written and dropped).",
        "",
        END,
    ]
    return "\n".join(lines)


def report_from_log(log: str, rows_total: int, load: str) -> str:
    """Rebuild the section from a run's printed figures (when only the writing failed)."""
    results, big = [], {}
    for line in open(log):  # noqa: SIM115
        if line.startswith("{'rows'"):
            big = ast.literal_eval(line)
        elif line[:4].strip() in ("24h", "7d", "30d", "-") and not line.startswith("{"):
            *name, median, best, worst = line[5:].split()
            results.append((line[:4].strip(), " ".join(name), float(median), float(best), float(worst)))
    return write_report(results, big, rows_total, load)


def main() -> None:
    global OTHER_TENANTS, OTHER_ROWS, AUDIT_ROWS
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="th_billui_bench")
    parser.add_argument("--seed", type=int, default=0, help="drop, create and seed this many rows first")
    parser.add_argument("--csv-rows", type=int, default=1_000_000)
    parser.add_argument("--other-tenants", type=int, default=OTHER_TENANTS)
    parser.add_argument("--other-rows", type=int, default=OTHER_ROWS)
    parser.add_argument("--audit-rows", type=int, default=AUDIT_ROWS)
    args = parser.parse_args()
    OTHER_TENANTS, OTHER_ROWS, AUDIT_ROWS = args.other_tenants, args.other_rows, args.audit_rows
    if args.seed:
        seed(args.database, args.seed)
    setup_django(args.database)
    from billing.models import UsageRecord

    tenant, user = prepare()
    operator = prepare_operator()
    load_before = os.getloadavg()
    results = pages(tenant, user)
    for preset, name, median, best, worst in results:
        print(f"{preset:4} {name:40} {median:8.1f} {best:8.1f} {worst:8.1f}", flush=True)
    operator_results = ops_pages(operator)
    for preset, name, median, best, worst in operator_results:
        print(f"{preset:4} {name:40} {median:8.1f} {best:8.1f} {worst:8.1f}", flush=True)
    results += operator_results
    big = csv_million(args.database, args.csv_rows)
    print(big)
    load = "{:.2f}, {:.2f}, {:.2f} (1, 5, 15 min) at the start; {:.2f}, {:.2f}, {:.2f} at the end".format(
        *load_before, *os.getloadavg()
    )
    section = write_report(results, big, UsageRecord.objects.count(), load)
    text = REPORT.read_text() if REPORT.exists() else "# Benchmark report\n"
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    REPORT.write_text(text)


if __name__ == "__main__":
    main()

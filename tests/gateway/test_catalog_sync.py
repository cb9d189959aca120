"""`manage.py catalog_sync FILE [--dry-run] [--prune]` and the default catalog (gateway/catalog.toml)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management.base import CommandError
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import AuditEntry
from billing.models import ModelPrice
from gateway.catalogfile import catalog_load
from gateway.catalogsync import DEFAULT_CATALOG, catalog_sync, demo_catalog_install
from gateway.models import Deployment, ModelRoute, Provider
from tests.support.manage import call
from tests.support.snapshot import db_snapshot

pytestmark = pytest.mark.django_db

BASE = """\
[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1"
credential_env = "OPENAI_API_KEY"

[providers.local]
kind = "openai-compatible"
base_url = "http://vllm:8000/v1"
read_timeout = 30.5

[routes."gpt-4.1"]
aliases = ["gpt4"]
context_window = 1047576
max_output_tokens = 32768
fallbacks = ["small"]
[[routes."gpt-4.1".deployments]]
provider = "openai"
model = "gpt-4.1"
rpm = 500
[[routes."gpt-4.1".deployments]]
provider = "local"
model = "llama"
priority = 1
weight = 3

[routes.small]
strategy = "cheapest"
[[routes.small.deployments]]
provider = "local"
model = "llama"

[prices."gpt-4.1"]
input = 2.00
cached_input = 0.50
output = 8.00
effective_from = 2025-04-14
"""


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "catalog.toml") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


def sync(*args: str):
    return call("catalog_sync", *args)


def refused(*args: str) -> str:
    before = db_snapshot()
    with pytest.raises(CommandError) as raised:
        sync(*args)
    assert db_snapshot() == before
    return str(raised.value)


def test_it_loads_a_catalog_and_a_second_run_changes_nothing(write):
    path = write(BASE)
    first = sync(path)
    assert "+ provider openai" in first.stdout and "+ route gpt-4.1" in first.stdout
    assert (
        "+ deployment gpt-4.1 → local" in first.stdout and "+ price gpt-4.1 from 2025-04-14" in first.stdout
    )
    assert first.stdout.strip().endswith("Applied: 8 added, 0 changed, 0 removed or disabled.")

    route = ModelRoute.objects.get(name="gpt-4.1")
    assert (route.aliases, route.fallbacks, route.context_window, route.max_output_tokens) == (
        ["gpt4"], ["small"], 1047576, 32768,
    )  # fmt: skip
    assert ModelRoute.objects.get(name="small").strategy == "cheapest"
    local = Deployment.objects.get(route=route, provider__name="local")
    assert (local.upstream_model, local.priority, local.weight, local.rpm_limit) == ("llama", 1, 3, None)
    assert Deployment.objects.get(route=route, provider__name="openai").rpm_limit == 500
    assert Provider.objects.get(name="local").read_timeout == Decimal("30.5")
    price = ModelPrice.objects.get(model="gpt-4.1")
    assert price.effective_from == datetime(2025, 4, 14, tzinfo=UTC) and price.output_per_mtok == Decimal(8)

    before = db_snapshot()
    again = sync(path)
    assert again.stdout.strip() == f"No changes: the catalog already matches {path}."
    assert db_snapshot() == before


def test_it_writes_every_change_to_the_audit_log_as_the_command(write):
    sync(write(BASE))
    entries = AuditEntry.objects.filter(actor="command:catalog_sync")
    assert sorted(entries.values_list("action", flat=True)) == sorted(
        ["provider.create"] * 2 + ["route.create"] * 2 + ["deployment.create"] * 3 + ["price.create"]
    )
    assert all(entry.tenant_id is None for entry in entries)
    sync(write(BASE.replace("context_window = 1047576", "context_window = 400000")))
    update = AuditEntry.objects.get(action="route.update")
    assert (update.before["context_window"], update.after["context_window"]) == (1047576, 400000)
    assert update.actor == "command:catalog_sync"


def test_a_dry_run_prints_the_diff_and_changes_nothing(write):
    sync(write(BASE))
    before = db_snapshot()
    changed = BASE.replace('strategy = "cheapest"', 'strategy = "least_busy"').replace(
        "weight = 3", "weight = 5"
    )
    output = sync(write(changed), "--dry-run")
    assert "~ route small: strategy: cheapest → least_busy" in output.stdout
    assert "~ deployment gpt-4.1 → local: weight: 3 → 5" in output.stdout
    assert (
        "Dry run: 0 added, 2 changed, 0 removed or disabled would be applied; nothing changed."
        in output.stdout
    )
    assert db_snapshot() == before
    sync(write(changed))
    assert ModelRoute.objects.get(name="small").strategy == "least_busy"


def test_credentials_are_environment_references_only(write, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    output = sync(write(BASE))
    assert (
        "Warning: provider openai: the environment variable OPENAI_API_KEY is not set here" in output.stderr
    )
    provider = Provider.objects.get(name="openai")
    assert provider.credential_env == "OPENAI_API_KEY" and provider.credential_encrypted == ""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    assert provider.get_credential() == "sk-from-the-environment"

    literal = BASE.replace('credential_env = "OPENAI_API_KEY"', 'api_key = "sk-live-123456789"')
    message = refused(write(literal))
    assert re.search(r"catalog\.toml:4: providers\.openai\.api_key: a credential does not belong", message)
    assert "sk-live-123456789" not in message
    not_a_name = BASE.replace('credential_env = "OPENAI_API_KEY"', 'credential_env = "sk-live-123456789"')
    message = refused(write(not_a_name))
    assert "catalog.toml:4: providers.openai.credential_env: Enter an environment variable's name" in message
    assert "sk-live-123456789" not in message


def line_of(text: str, needle: str, nth: int = 0) -> int:
    """The 1-based line of the `nth` line of `text` that holds `needle`."""
    return [n for n, line in enumerate(text.splitlines(), start=1) if needle in line][nth]


UNKNOWN_PROVIDER = BASE.replace(
    'provider = "local"\nmodel = "llama"\npriority', 'provider = "ghost"\nmodel = "llama"\npriority'
)
TWICE = BASE.replace(
    'provider = "local"\nmodel = "llama"\npriority', 'provider = "openai"\nmodel = "llama"\npriority'
)
RENAMED = BASE.replace("[routes.small]", '[routes."small model"]').replace(
    "routes.small.", 'routes."small model".'
)
MALFORMED = [
    # (case, file, the text on the line it must name (or it and which of its lines), the reason)
    ("bad TOML", BASE.replace("[routes.small]", "[routes.small"), "[routes.small", "not valid TOML"),
    ("unknown kind", BASE.replace('kind = "openai-compatible"', 'kind = "vllm"'), 'kind = "vllm"',
     "providers.local.kind: unknown provider kind 'vllm'"),
    ("negative price", BASE.replace("output = 8.00", "output = -8.00"), "output = -8.00",
     'prices."gpt-4.1".output: cannot be negative'),
    ("price without date", BASE.replace("effective_from = 2025-04-14\n", ""), '[prices."gpt-4.1"]',
     'prices."gpt-4.1": a price needs the date it takes effect'),
    ("duplicate alias across routes", BASE.replace('strategy = "cheapest"', 'aliases = ["gpt4"]'),
     ('aliases = ["gpt4"]', 1), "routes.small.aliases[0]: duplicate alias 'gpt4': already a name or alias of route 'gpt-4.1'"),
    ("alias is another route's name", BASE.replace('strategy = "cheapest"', 'aliases = ["gpt-4.1"]'),
     'aliases = ["gpt-4.1"]', "duplicate alias 'gpt-4.1'"),
    ("duplicate alias in one route", BASE.replace('aliases = ["gpt4"]', 'aliases = ["gpt4", "gpt4"]'), "aliases =",
     "duplicate alias 'gpt4': already a name or alias of this route"),
    ("unknown provider", UNKNOWN_PROVIDER, 'provider = "ghost"', "unknown provider 'ghost'"),
    ("fallback to an unknown route", BASE.replace('fallbacks = ["small"]', 'fallbacks = ["nowhere"]'),
     "fallbacks =", "falls back to an unknown route 'nowhere'"),
    ("model name breaking the rule", RENAMED, '[routes."small model"]', "'small model' is not a model name"),
    ("price with too many places", BASE.replace("input = 2.00", "input = 2.0000000001"), "input = 2.0000000001",
     "more than 9 decimal places"),
    ("unknown key", BASE.replace("rpm = 500", "rpm_limit = 500"), "rpm_limit", "unknown key"),
    ("two deployments on one provider", TWICE, ("provider =", 1), "serves this route twice"),
    ("retroactive price change", BASE.replace("output = 8.00", "output = 9.00"), '[prices."gpt-4.1"]',
     "has been in force since then and cannot be changed"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "needle", "reason"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_a_malformed_file_is_refused_with_the_line_and_the_reason(write, case, text, needle, reason):
    sync(write(BASE))
    message = refused(write(text))
    assert message.startswith("Refused, nothing changed:"), message
    needle, nth = needle if isinstance(needle, tuple) else (needle, 0)
    entry = next(entry for entry in message.splitlines() if reason in entry)
    assert entry.split(": ", 1)[0].endswith(f"catalog.toml:{line_of(text, needle, nth)}"), (message, needle)


def test_a_malformed_yaml_file_is_refused_with_the_line_and_the_reason(write):
    good = """\
providers:
  local:
    kind: openai-compatible
    base_url: http://vllm:8000/v1
routes:
  small:
    deployments:
      - provider: local
        model: llama
prices:
  llama:
    input: 0.10
    output: 0.20
    effective_from: 2025-01-01
"""
    sync(write(good, "catalog.yaml"))
    assert (
        refused(write(good.replace("output: 0.20", "output: -0.20"), "catalog.yaml")).count(
            "catalog.yaml:13: "
        )
        == 1
    )
    broken = refused(write(good.replace("model: llama", "model: llama\n  bad: ["), "catalog.yaml"))
    assert re.search(r"catalog\.yaml:1[12]: not valid YAML: ", broken), broken
    twice = good.replace("    kind: openai-compatible\n", "    kind: openai-compatible\n    kind: mock\n")
    assert "catalog.yaml:4: providers.local.kind is set twice" in refused(write(twice, "catalog.yaml"))
    assert "No changes" in sync(write(good, "catalog.yaml")).stdout


def test_yaml_and_toml_describe_the_same_catalog(write):
    sync(write(BASE))
    as_yaml = """\
providers:
  openai: {kind: openai, base_url: "https://api.openai.com/v1", credential_env: OPENAI_API_KEY}
  local: {kind: openai-compatible, base_url: "http://vllm:8000/v1", read_timeout: 30.5}
routes:
  gpt-4.1:
    aliases: [gpt4]
    context_window: 1047576
    max_output_tokens: 32768
    fallbacks: [small]
    deployments:
      - {provider: openai, model: gpt-4.1, rpm: 500}
      - {provider: local, model: llama, priority: 1, weight: 3}
  small:
    strategy: cheapest
    deployments: [{provider: local, model: llama}]
prices:
  gpt-4.1: {input: 2.00, cached_input: 0.50, output: 8.00, effective_from: 2025-04-14}
"""
    assert "No changes" in sync(write(as_yaml, "catalog.yml")).stdout


def test_prices_are_history(write):
    sync(write(BASE))
    # A price in force is never changed...
    message = refused(write(BASE.replace("output = 8.00", "output = 9.00")))
    assert 'prices."gpt-4.1": the price from 2025-04-14 has been in force' in message
    # ...nor a different one slipped in before now...
    backdated = BASE + '\n[[prices."gpt-4.1-b"]]\ninput = 1\noutput = 1\neffective_from = 2025-01-01\n'
    sync(write(backdated))
    retro = backdated.replace("effective_from = 2025-01-01\n", "effective_from = 2025-01-01\n") + (
        '[[prices."gpt-4.1-b"]]\ninput = 2\noutput = 2\neffective_from = 2025-06-01\n'
    )
    message = refused(write(retro))
    line = line_of(retro, '[[prices."gpt-4.1-b"]]', 1)
    assert f"catalog.toml:{line}: " in message and "would be retroactive" in message, message
    # ...but the same price from an earlier date changes nothing, and a future one is scheduled.
    same = backdated + '[[prices."gpt-4.1-b"]]\ninput = 1\noutput = 1\neffective_from = 2025-06-01\n'
    assert "No changes" in sync(write(same)).stdout
    future = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    scheduled = backdated + f'[[prices."gpt-4.1-b"]]\ninput = 3\noutput = 3\neffective_from = {future}\n'
    assert f"+ price gpt-4.1-b from {future}" in sync(write(scheduled)).stdout
    # A scheduled price can still change, or be withdrawn by --prune.
    assert "~ price gpt-4.1-b from" in sync(write(scheduled.replace("input = 3", "input = 4"))).stdout
    output = sync(write(backdated), "--prune")
    assert f"- price gpt-4.1-b from {future}: scheduled, not in the file" in output.stdout
    assert list(ModelPrice.objects.filter(model="gpt-4.1-b").values_list("input_per_mtok", flat=True)) == [1]


def test_prune_disables_what_the_file_does_not_list(write):
    sync(write(BASE))
    extra = Provider.objects.create(name="old", kind="mock", base_url="http://old:1/v1")
    legacy = ModelRoute.objects.create(name="legacy")
    Deployment.objects.create(route=legacy, provider=extra, upstream_model="x")
    without_local = BASE.replace(
        '[[routes."gpt-4.1".deployments]]\nprovider = "local"\nmodel = "llama"\npriority = 1\nweight = 3\n',
        "",
    )
    kept = sync(write(without_local))
    assert "- " not in kept.stdout  # without --prune nothing is removed
    assert Deployment.objects.filter(route__name="gpt-4.1", provider__name="local").exists()

    output = sync(write(without_local), "--dry-run", "--prune")
    assert "- deployment gpt-4.1 → local (llama): not in the file" in output.stdout
    assert "- provider old: not in the file, disabled" in output.stdout
    assert "- route legacy: not in the file, disabled" in output.stdout
    sync(write(without_local), "--prune")
    assert not Deployment.objects.filter(route__name="gpt-4.1", provider__name="local").exists()
    assert not Provider.objects.get(name="old").enabled and not ModelRoute.objects.get(name="legacy").enabled
    # `local` still serves `small`: kept, and enabled. The price in force is untouched.
    assert Provider.objects.get(name="local").enabled and ModelPrice.objects.filter(model="gpt-4.1").exists()
    assert "No changes" in sync(write(without_local), "--prune").stdout


def test_an_unreadable_file_is_refused(tmp_path):
    assert "cannot read the file" in refused(str(tmp_path / "missing.toml"))
    other = tmp_path / "catalog.json"
    other.write_text("{}")
    assert "must end in .toml, .yaml or .yml" in refused(str(other))


def test_the_default_catalog_loads_and_every_price_cites_its_source():
    spec = catalog_load(DEFAULT_CATALOG)
    for route in ("gpt-4.1", "gpt-4.1-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "claude-sonnet-4.5",
                  "claude-haiku-4.5", "claude-opus-4.5", "claude-opus-4.1", "gemini-2.5-flash", "gemini-2.5-pro",
                  "deepseek-v3.2"):  # fmt: skip
        assert spec.routes[route].context_window and spec.routes[route].max_output_tokens > 4096 - 1, route
    upstreams = {d.model for route in spec.routes.values() for d in route.deployments}
    priced = {price.model for price in spec.prices}
    assert upstreams <= priced
    lines = DEFAULT_CATALOG.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.startswith("[prices."):
            comment = []
            for above in reversed(lines[:number]):
                if not above.startswith("#"):
                    break
                comment.insert(0, above)
            text = " ".join(comment)
            assert re.search(r"Source: https://\S+", text) and re.search(r"read 20\d\d-\d\d-\d\d", text), line
    sonnet = next(p for p in spec.prices if p.model == "claude-sonnet-4-5")
    assert (sonnet.input, sonnet.cached_input, sonnet.cache_write, sonnet.cache_write_1h, sonnet.output) == (
        Decimal("3.00"), Decimal("0.30"), Decimal("3.75"), Decimal("6.00"), Decimal("15.00"),
    )  # fmt: skip


def test_the_default_catalog_syncs_cleanly_onto_the_test_world(world):
    first = sync(str(DEFAULT_CATALOG))
    assert "Applied:" in first.stdout
    assert "No changes" in sync(str(DEFAULT_CATALOG)).stdout


def test_the_demo_serves_every_catalog_route_from_the_mock_at_list_prices(mock_upstream, settings):
    from accounts.audit import Actor

    settings.PROVIDER_KEYS = {"openai": "", "anthropic": "", "gemini": "", "deepseek": ""}
    assert demo_catalog_install(mock_url=mock_upstream.url, actor=Actor.command("demo")) == []
    spec = catalog_load(DEFAULT_CATALOG)
    for route in spec.routes.values():
        [deployment] = Deployment.objects.filter(route__name=route.name, enabled=True).select_related(
            "provider"
        )
        assert deployment.provider.name.startswith("mock") and deployment.provider.base_url.startswith(
            mock_upstream.url
        )
        assert ModelPrice.objects.filter(model=deployment.upstream_model).exists()
    assert Provider.objects.get(name="mock-anthropic").kind == "anthropic"
    before = db_snapshot()
    demo_catalog_install(mock_url=mock_upstream.url, actor=Actor.command("demo"))
    assert db_snapshot() == before

    # A real provider whose key is in the environment takes its routes over (by reference only).
    settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "anthropic": "sk-ant-test"}
    assert demo_catalog_install(mock_url=mock_upstream.url, actor=Actor.command("demo")) == ["anthropic"]
    served = Deployment.objects.filter(route__name="claude-sonnet-4.5", enabled=True).select_related(
        "provider"
    )
    assert [(d.provider.name, d.upstream_model) for d in served] == [("anthropic", "claude-sonnet-4-5")]
    anthropic = Provider.objects.get(name="anthropic")
    assert anthropic.credential_env == "ANTHROPIC_API_KEY" and anthropic.credential_encrypted == ""


# --- generated catalogs ------------------------------------------------------------------------------

NAMES = st.from_regex(r"\A[a-z][a-z0-9.\-]{0,12}\Z")
PRICES = st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False)


@st.composite
def catalogs(draw) -> str:
    providers = draw(
        st.lists(st.from_regex(r"\A[a-z][a-z0-9_-]{0,8}\Z"), min_size=1, max_size=3, unique=True)
    )
    names = draw(st.lists(NAMES, min_size=1, max_size=8, unique=True))
    routes, aliases = names[: max(1, len(names) // 2)], names[max(1, len(names) // 2) :]
    out = []
    for provider in providers:
        kind = draw(st.sampled_from(["openai", "openai-compatible", "anthropic", "gemini", "mock"]))
        out += [
            f"[providers.{json.dumps(provider)}]",
            f'kind = "{kind}"',
            f'base_url = "http://{provider}:8000/v1"',
        ]
        if draw(st.booleans()):
            out.append(f"read_timeout = {draw(st.decimals(min_value=1, max_value=999, places=2))}")
    for index, route in enumerate(routes):
        out.append(f"[routes.{json.dumps(route)}]")
        mine = aliases[index :: len(routes)]
        if mine:
            out.append(f"aliases = {json.dumps(mine)}")
        out.append(
            f'strategy = "{draw(st.sampled_from(["priority", "least_latency", "least_busy", "cheapest"]))}"'
        )
        if draw(st.booleans()):
            out.append(f"context_window = {draw(st.integers(1, 2_000_000))}")
        if index and draw(st.booleans()):
            out.append(f"fallbacks = {json.dumps([routes[0]])}")
        for provider in draw(st.lists(st.sampled_from(providers), unique=True, max_size=len(providers))):
            out += [f"[[routes.{json.dumps(route)}.deployments]]", f"provider = {json.dumps(provider)}",
                    f"model = {json.dumps(route + '-up')}", f"weight = {draw(st.integers(0, 100))}"]  # fmt: skip
    for route in routes:
        out += [f"[prices.{json.dumps(route + '-up')}]", f"input = {draw(PRICES)}", f"output = {draw(PRICES)}",
                f"effective_from = {draw(st.dates(min_value=datetime(2020, 1, 1).date(), max_value=datetime(2025, 1, 1).date()))}"]  # fmt: skip
    return "\n".join(out) + "\n"


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=catalogs())
def test_any_valid_catalog_synced_twice_changes_nothing_the_second_time(tmp_path, text):
    from accounts.audit import Actor

    path = tmp_path / "generated.toml"
    path.write_text(text)
    actor = Actor.command("catalog_sync")
    with transaction.atomic():
        first = catalog_sync(path=path, actor=actor)
        assert first.applied and first.plan.changes
        before = db_snapshot()
        second = catalog_sync(path=path, actor=actor)
        assert not second.plan.changes and not second.applied, second.plan.render()
        assert db_snapshot() == before
        transaction.set_rollback(True)


@pytest.mark.django_db(transaction=True)
def test_as_a_process_it_exits_1_with_each_line_on_stderr_and_no_traceback(write):
    from tests.support.manage import run

    bad = BASE.replace("output = 8.00", "output = -8.00").replace(
        'kind = "openai-compatible"', 'kind = "vllm"'
    )
    result = run("catalog_sync", write(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "CommandError: Refused, nothing changed:"
    assert [line.split(": ", 1)[0].rsplit(":", 1)[1] for line in lines[1:]] == [
        str(line_of(bad, 'kind = "vllm"')),
        str(line_of(bad, "output = -8.00")),
    ]
    ok = run("catalog_sync", write(BASE), "--dry-run")
    assert ok.returncode == 0 and "Dry run: 8 added" in ok.stdout
    assert not Provider.objects.exists()

"""A redemption code cannot be redeemed twice, even by 20 concurrent attempts from 20 separate OS
processes running `manage.py credits_redeem` against real PostgreSQL and real Redis."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction

from accounts.services import tenant_create
from billing.credits import credit_balance, redeem_codes_create
from billing.models import CreditEntry, RedemptionCode
from billing.pots import credit_pot
from config.redis import sync_client
from tests.support.process import ROOT, subprocess_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
    ),
]
ATTEMPTS = 20

# One process starts Django (once: twenty start-ups would take most of a minute on a small CI
# machine), then forks the racers, each with a database connection of its own, running the command
# as the command line does (exit status, "CommandError: ..." on stderr) with its stdout and stderr
# in files of its own.
RACER = r"""
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
from django.core import checks
from django.core.management import execute_from_command_line
from django.db import connections
import billing.management.commands.credits_redeem

checks.run_checks()  # each racer runs them too: have what they import loaded once, here
connections.close_all()  # a racer never shares its parent's connection

attempts, code, outdir, tenants = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].split(",")
pids = []
for i in range(attempts):
    pid = os.fork()
    if pid == 0:
        for name, fd in (("out", 1), ("err", 2)):
            os.dup2(os.open(f"{outdir}/{i}.{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        status = 0
        try:
            execute_from_command_line(["manage.py", "credits_redeem", "--tenant", tenants[i % len(tenants)], code])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    pids.append(pid)
for i, pid in enumerate(pids):
    _, status = os.waitpid(pid, 0)
    print(i, pid, os.waitstatus_to_exitcode(status), flush=True)
"""


def backends_waiting_for_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def test_twenty_processes_at_once_redeem_one_code_exactly_once(tmp_path: Path):
    acme = tenant_create(name="Acme", slug="acme")
    globex = tenant_create(name="Globex", slug="globex")
    (code,) = redeem_codes_create(usd=Decimal("42.5"), count=1)
    for tenant in (acme, globex):  # the gateways' counters, as admission would have made them
        sync_client().hset(credit_pot(tenant.pk), mapping={"credit": 0, "spent": 0})

    racers = subprocess.Popen(
        [sys.executable, "-c", RACER, str(ATTEMPTS), code, str(tmp_path), "acme,globex"],
        cwd=ROOT,
        env=subprocess_env(settings_dict=connection.settings_dict, redis_url=str(settings.REDIS_URL)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Hold the code's row while the racers start, so that all twenty are in flight at once
        # (on a small machine they would otherwise tend to run one after another): each one that
        # touches the row queues behind this lock, and all are let go together. A racer that reads
        # the code before locking it (check-then-set) reads it unredeemed here, as in a real race.
        with transaction.atomic():
            RedemptionCode.objects.select_for_update().get()
            deadline = time.monotonic() + 60
            while backends_waiting_for_a_lock() < ATTEMPTS and racers.poll() is None:
                assert time.monotonic() < deadline, "the racers never all reached the code"
                time.sleep(0.02)
        stdout, stderr = racers.communicate(timeout=60)
    finally:
        if racers.poll() is None:
            racers.kill()
            racers.wait()
    assert racers.returncode == 0, stderr
    lines = [line.split() for line in stdout.splitlines()]
    assert len({pid for _, pid, _ in lines}) == ATTEMPTS  # twenty separate OS processes
    outcomes = {
        int(i): (int(status), (tmp_path / f"{i}.out").read_text(), (tmp_path / f"{i}.err").read_text())
        for i, _, status in lines
    }
    winners = [out for status, out, _ in outcomes.values() if status == 0]
    losers = [(status, out, err) for status, out, err in outcomes.values() if status != 0]
    assert len(winners) == 1, outcomes
    assert set(losers) == {(1, "", "CommandError: That redemption code has already been redeemed.\n")}, losers

    entry = CreditEntry.objects.get()
    assert (entry.kind, entry.amount) == ("redemption", Decimal("42.5"))
    assert entry.redemption_code == RedemptionCode.objects.get()
    winner, loser = (acme, globex) if entry.tenant == acme else (globex, acme)
    assert winners == [f"Redeemed a code worth 42.50 USD for {winner.slug}; balance 42.50 USD.\n"]
    assert (credit_balance(winner), credit_balance(loser)) == (Decimal("42.5"), Decimal(0))
    assert RedemptionCode.objects.get().redeemed_by == winner
    # The winner's counter was told once, after commit; the other tenant's not at all.
    assert int(sync_client().hget(credit_pot(winner.pk), "credit")) == 42_500_000_000
    assert int(sync_client().hget(credit_pot(loser.pk), "credit")) == 0

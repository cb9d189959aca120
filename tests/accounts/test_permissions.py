"""The permission table: one dict (accounts/permissions.py), mirrored in the README."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from accounts.access import tenant_page
from accounts.permissions import PERMISSIONS

README = Path(__file__).resolve().parents[2] / "README.md"
ROLES = ("owner", "admin", "member", "viewer")


def readme_table() -> dict[str, frozenset[str]]:
    table = {}
    for line in README.read_text().splitlines():
        match = re.match(r"\| `([a-z_]+\.[a-z_]+)` \| [^|]+ \| (.+) \|$", line)
        if match:
            marks = [cell.strip() for cell in match.group(2).split("|")]
            table[match.group(1)] = frozenset(
                role for role, mark in zip(ROLES, marks, strict=True) if mark == "✓"
            )
    return table


def test_the_readme_shows_the_table_the_code_uses():
    assert readme_table() == PERMISSIONS


def test_every_role_may_do_what_a_lesser_role_may():
    for action, roles in PERMISSIONS.items():
        for higher, lower in itertools.pairwise(ROLES):
            assert lower not in roles or higher in roles, action


def test_a_page_cannot_name_an_action_that_is_not_in_the_table():
    with pytest.raises(ValueError):
        tenant_page("keys.delete_everything")

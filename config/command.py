"""`OperatorCommand`: the base of every Tollhouse management command.

An operator's mistake ends in one sentence on stderr and exit status 1, never a traceback, and
changes nothing. Most of that is each command's own checks and the services' ValidationError; what
no command can check one by one is text that is not text at all. A shell hands Python bytes that
are not UTF-8 (`--name $'\\xff'`) as lone surrogates (PEP 383), which fail only later, when they are
written to the database or printed, with a `UnicodeEncodeError` traceback. So every argument is
checked here, before `handle()` runs: no lone surrogate, and no NUL (PostgreSQL text cannot hold
it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.management.base import BaseCommand, CommandError


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def unusable_text_sentence(text: str) -> str | None:
    """Why `text` cannot be stored or printed (one clause), or None if it can."""
    if "\x00" in text:
        return "cannot contain a NUL character"
    if any("\ud800" <= char <= "\udfff" for char in text):
        return "is not valid UTF-8 text (check the shell's quoting and the terminal's encoding)"
    return None


def refuse_unusable_text(
    args: Iterable[object], options: Mapping[str, object], labels: Mapping[str, str] | None = None
) -> None:
    """CommandError naming the first argument that is not storable text (see the module's docstring).
    `labels` maps an option's name to how the operator wrote it (`credential_env` -> `--credential-env`,
    a positional `name` -> `NAME`)."""
    labels = labels or {}
    named = [(labels.get(name, f"--{name.replace('_', '-')}"), value) for name, value in options.items()]
    for label, value in [("An argument", arg) for arg in args] + named:
        for text in _strings(value):
            problem = unusable_text_sentence(text)
            if problem is not None:
                raise CommandError(f"{label} {problem}.")


class OperatorCommand(BaseCommand):
    """BaseCommand that refuses unusable text in any argument with one sentence (exit status 1)."""

    def execute(self, *args: Any, **options: Any) -> Any:
        # Django's own options (verbosity, settings, ...) are plain ASCII or None; checking them too
        # costs nothing and keeps this to one rule.
        refuse_unusable_text(args, options, self._labels())
        return super().execute(*args, **options)

    def _labels(self) -> dict[str, str]:
        parser = self.create_parser("manage.py", self.__module__.rsplit(".", 1)[-1])
        labels = {}
        for action in parser._actions:
            longest = max(action.option_strings, key=len, default=None)
            labels[action.dest] = (
                longest
                or (action.metavar if isinstance(action.metavar, str) else None)
                or action.dest.upper()
            )
        return labels

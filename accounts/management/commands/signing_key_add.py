"""`manage.py signing_key_add --tenant SLUG --issuer ISS --algorithm HS256|RS256|ES256
(--secret-file PATH | --public-key-file PATH) [--name NAME] [--kid KID]`: let a tenant's backend sign
end-user tokens (JWTs) the gateway accepts instead of an API key.

The secret or public key is read from a file, never from the command line (where `ps` and shell
history would keep it); one trailing newline of a secret file is dropped, as `echo` adds it. Nothing
secret is printed. Bad input exits 1 with one sentence and adds nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from accounts.audit import Actor
from accounts.management.commands._cli import command_error, tenant_named
from accounts.models import SigningKey
from accounts.signing import MAX_PUBLIC_KEY_CHARS, MAX_SECRET_BYTES, signing_key_add
from config.command import OperatorCommand

MAX_FILE_BYTES = max(MAX_PUBLIC_KEY_CHARS, MAX_SECRET_BYTES) + 2


def read_text_file(option: str, path: str | None) -> str:
    """The file's text, or a CommandError naming the option (never the content)."""
    if path is None:
        return ""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"{option}: cannot read {path!r} ({exc.strerror or exc}).") from None
    if len(data) > MAX_FILE_BYTES:
        raise CommandError(f"{option}: {path!r} is too large for a key ({MAX_FILE_BYTES} bytes at most).")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"{option}: {path!r} is not UTF-8 text.") from None


class Command(OperatorCommand):
    help = (
        "Add a key a tenant signs end-user tokens (JWTs) with: an HS256 secret or an RS256/ES256 public key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="The tenant's slug.")
        parser.add_argument(
            "--issuer", required=True, metavar="ISS", help="The `iss` claim the tenant's tokens carry."
        )
        parser.add_argument("--algorithm", required=True, metavar="ALG", help="HS256, RS256 or ES256.")
        parser.add_argument("--secret-file", metavar="PATH", help="HS256: a file holding the shared secret.")
        parser.add_argument(
            "--public-key-file", metavar="PATH", help="RS256 / ES256: a file holding the PEM public key."
        )
        parser.add_argument("--name", default="default", help="A name to recognise the key by.")
        parser.add_argument(
            "--kid", default="", metavar="KID", help="The `kid` header the signer sends, if any."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        algorithm: str = options["algorithm"]
        if algorithm not in SigningKey.Algorithm.values:
            raise CommandError(f"--algorithm must be HS256, RS256 or ES256, not {algorithm!r}.")
        secret_file, public_key_file = options["secret_file"], options["public_key_file"]
        if algorithm == SigningKey.Algorithm.HS256:
            if public_key_file is not None or secret_file is None:
                raise CommandError("HS256 takes --secret-file (and no --public-key-file).")
        elif secret_file is not None or public_key_file is None:
            raise CommandError(f"{algorithm} takes --public-key-file (and no --secret-file).")
        secret = read_text_file("--secret-file", secret_file)
        secret = secret.removesuffix("\n").removesuffix("\r")
        public_key = read_text_file("--public-key-file", public_key_file)
        tenant = tenant_named(options["tenant"])

        try:
            signing_key = signing_key_add(
                tenant=tenant,
                name=options["name"],
                issuer=options["issuer"],
                algorithm=algorithm,
                secret=secret,
                public_key=public_key,
                key_id=options["kid"],
                actor=Actor.command("signing_key_add"),
            )
        except ValidationError as exc:
            raise command_error(exc) from None
        kid = f", kid {signing_key.key_id!r}" if signing_key.key_id else ""
        self.stdout.write(
            f"Added signing key {signing_key.name!r} ({signing_key.algorithm}{kid}) for tenant {tenant.slug}, "
            f"issuer {signing_key.issuer!r}: its end-user tokens are accepted from now on."
        )

"""Signing keys for end-user tokens (accounts/signing.py), `manage.py signing_key_add` and the admin:
HS256 takes a long secret (stored encrypted, never shown), RS256/ES256 a public key of the right
type and size; an issuer belongs to one tenant; bad input is refused with one sentence and stores
nothing."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from accounts.models import SigningKey, Tenant
from accounts.signing import MAX_ACTIVE_KEYS_PER_ISSUER, signing_key_add, signing_key_deactivate
from tests.support.manage import call, one_sentence_error, run
from tests.support.tokens import ISSUER, SECRET, ec_key, private_pem, public_pem, rsa_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():
    return Tenant.objects.create(name="Acme", slug="acme")


@pytest.fixture
def globex():
    return Tenant.objects.create(name="Globex", slug="globex")


def add(tenant, **overrides):
    arguments = {
        "tenant": tenant,
        "name": "backend",
        "issuer": ISSUER,
        "algorithm": "HS256",
        "secret": SECRET,
    }
    return signing_key_add(**{**arguments, **overrides})


def test_it_stores_an_hs256_secret_encrypted(acme):
    key = add(acme, key_id="2025-01")
    stored = SigningKey.objects.get()
    assert (stored.tenant, stored.issuer, stored.algorithm, stored.key_id) == (
        acme,
        ISSUER,
        "HS256",
        "2025-01",
    )
    assert stored.active and stored.public_key == ""
    assert SECRET not in stored.secret_encrypted and stored.get_secret() == SECRET
    assert key.pk == stored.pk


@pytest.mark.parametrize(("algorithm", "private_key"), [("RS256", rsa_key), ("ES256", ec_key)])
def test_it_stores_a_public_key_in_normal_form(acme, algorithm, private_key):
    # PKCS#1 "RSA PUBLIC KEY" / padded input is normalised to SubjectPublicKeyInfo PEM.
    public = private_key().public_key()
    fmt = (
        serialization.PublicFormat.PKCS1
        if algorithm == "RS256"
        else serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = "\n  " + public.public_bytes(serialization.Encoding.PEM, fmt).decode() + "\n\n"
    add(acme, algorithm=algorithm, secret="", public_key=pem)
    stored = SigningKey.objects.get()
    assert stored.public_key == public_pem(private_key()) and stored.secret_encrypted == ""


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"secret": "s" * 31}, "secret", "An HS256 secret must be at least 32 bytes long."),
        ({"secret": ""}, "secret", "An HS256 secret must be at least 32 bytes long."),
        ({"public_key": "pem"}, "public_key", "An HS256 key takes a secret, not a public key."),
        ({"secret": public_pem(ec_key())}, "secret", "not a PEM or SSH key"),
        ({"algorithm": "RS256"}, "secret", "An RS256 key takes a public key, not a secret."),
        ({"algorithm": "RS256", "secret": ""}, "public_key", "An RS256 key needs a PEM public key."),
        ({"algorithm": "none", "secret": ""}, "algorithm", "The algorithm must be HS256, RS256 or ES256"),
        (
            {"algorithm": "RS256", "secret": "", "public_key": public_pem(ec_key())},
            "public_key",
            "RS256 needs an RSA public key.",
        ),
        (
            {"algorithm": "RS256", "secret": "", "public_key": public_pem(rsa_key(1024))},
            "public_key",
            "RS256 needs an RSA key of at least 2048 bits, not 1024.",
        ),
        (
            {"algorithm": "ES256", "secret": "", "public_key": public_pem(rsa_key())},
            "public_key",
            "ES256 needs an EC public key on the P-256 curve.",
        ),
        (
            {"algorithm": "ES256", "secret": "", "public_key": public_pem(ec_key("P-384"))},
            "public_key",
            "ES256 needs an EC public key on the P-256 curve.",
        ),
        (
            {"algorithm": "ES256", "secret": "", "public_key": private_pem(ec_key())},
            "public_key",
            "This is a private key: give the public key only",
        ),
        (
            {
                "algorithm": "ES256",
                "secret": "",
                "public_key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----",
            },
            "public_key",
            "Not a PEM public key",
        ),
        ({"issuer": ""}, "issuer", "This field cannot be blank."),
        ({"issuer": " padded "}, "issuer", "Must be printable, without leading or trailing spaces."),
        ({"name": ""}, "name", "This field cannot be blank."),
        ({"key_id": "k\tid"}, "key_id", "Must be printable"),
    ],
)
def test_it_refuses_bad_keys_and_stores_nothing(acme, overrides, field, message):
    with pytest.raises(ValidationError) as failure:
        add(acme, **overrides)
    assert any(message in text for text in failure.value.message_dict[field]), failure.value.message_dict
    assert not SigningKey.objects.exists()
    # The key material is never quoted back.
    material = [overrides.get("secret", SECRET), overrides.get("public_key", "")]
    assert not any(len(m) > 10 and m.strip() in str(failure.value) for m in material)


def test_an_issuer_belongs_to_one_tenant(acme, globex):
    first = add(acme)
    signing_key_deactivate(signing_key=first)  # even a deactivated key keeps the issuer its tenant's
    with pytest.raises(ValidationError) as failure:
        add(globex, secret="globex-secret-globex-secret-globex-secret")
    assert failure.value.message_dict == {"issuer": [f"The issuer {ISSUER!r} belongs to another tenant."]}
    assert SigningKey.objects.filter(tenant=globex).count() == 0


def test_a_tenant_rotates_with_several_active_keys_of_one_issuer(acme):
    add(acme, key_id="k1")
    add(acme, key_id="k2", algorithm="ES256", secret="", public_key=public_pem(ec_key()))
    assert SigningKey.objects.filter(issuer=ISSUER, active=True).count() == 2
    with pytest.raises(ValidationError) as failure:
        add(acme, key_id="k1")
    assert "already has the key id 'k1'" in failure.value.message_dict["key_id"][0]


def test_it_bounds_the_active_keys_of_an_issuer(acme):
    for i in range(MAX_ACTIVE_KEYS_PER_ISSUER):
        add(acme, name=f"k{i}")
    with pytest.raises(ValidationError) as failure:
        add(acme, name="one too many")
    assert "deactivate one first" in failure.value.message_dict["active"][0]
    signing_key_deactivate(signing_key=SigningKey.objects.first())
    add(acme, name="now it fits")


def test_deactivate_keeps_the_row(acme):
    key = signing_key_deactivate(signing_key=add(acme))
    assert not SigningKey.objects.get(pk=key.pk).active


# -- manage.py signing_key_add ---------------------------------------------------------------------


def test_the_command_adds_an_hs256_key_from_a_secret_file(acme, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")  # as `echo` writes it
    output = call(
        "signing_key_add", "--tenant", "acme", "--issuer", ISSUER, "--algorithm", "HS256",
        "--secret-file", str(secret_file), "--name", "backend", "--kid", "2025-01",
    )  # fmt: skip
    stored = SigningKey.objects.get()
    assert stored.get_secret() == SECRET and (stored.name, stored.key_id) == ("backend", "2025-01")
    assert SECRET not in output.stdout + output.stderr
    assert "Added signing key 'backend' (HS256, kid '2025-01') for tenant acme" in output.stdout


def test_the_command_adds_a_public_key_from_a_file(acme, tmp_path):
    pem_file = tmp_path / "key.pem"
    pem_file.write_text(public_pem(rsa_key()))
    call(
        "signing_key_add",
        "--tenant",
        "acme",
        "--issuer",
        ISSUER,
        "--algorithm",
        "RS256",
        "--public-key-file",
        str(pem_file),
    )
    stored = SigningKey.objects.get()
    assert (stored.algorithm, stored.name, stored.public_key) == ("RS256", "default", public_pem(rsa_key()))


@pytest.fixture
def files(tmp_path):
    (tmp_path / "secret").write_text(SECRET)
    (tmp_path / "short").write_text("too short")
    (tmp_path / "pem").write_text(public_pem(ec_key()))
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00secret")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--tenant", "nope", "--algorithm", "HS256", "--secret-file", "secret"], "There is no tenant with the slug 'nope'."),
        (["--tenant", "acme", "--algorithm", "PS256", "--secret-file", "secret"], "--algorithm must be HS256, RS256 or ES256, not 'PS256'."),
        (["--tenant", "acme", "--algorithm", "HS256"], "HS256 takes --secret-file (and no --public-key-file)."),
        (["--tenant", "acme", "--algorithm", "HS256", "--secret-file", "secret", "--public-key-file", "pem"], "HS256 takes --secret-file"),
        (["--tenant", "acme", "--algorithm", "ES256", "--secret-file", "secret"], "ES256 takes --public-key-file (and no --secret-file)."),
        (["--tenant", "acme", "--algorithm", "HS256", "--secret-file", "missing"], "--secret-file: cannot read"),
        (["--tenant", "acme", "--algorithm", "HS256", "--secret-file", "binary"], "is not UTF-8 text."),
        (["--tenant", "acme", "--algorithm", "HS256", "--secret-file", "short"], "secret: An HS256 secret must be at least 32 bytes long."),
        (["--tenant", "acme", "--algorithm", "RS256", "--public-key-file", "pem"], "public_key: RS256 needs an RSA public key."),
        (["--tenant", "globex", "--algorithm", "HS256", "--secret-file", "secret"], "belongs to another tenant."),
    ],
)  # fmt: skip
def test_the_command_refuses_bad_arguments_and_adds_nothing(acme, globex, files, args, sentence):
    add(acme)  # the issuer is acme's
    before = SigningKey.objects.count()
    args = [
        str(files / arg) if arg in {"secret", "short", "pem", "binary", "missing"} else arg for arg in args
    ]
    with pytest.raises(CommandError) as failure:
        call("signing_key_add", "--issuer", ISSUER, *args)
    assert sentence in str(failure.value)
    assert "\n" not in str(failure.value) and SECRET not in str(failure.value)
    assert SigningKey.objects.count() == before


def test_the_command_exits_1_with_one_sentence_on_stderr(transactional_db, tmp_path):
    Tenant.objects.create(name="Acme", slug="acme")
    (tmp_path / "secret").write_text("short secret")
    result = run(
        "signing_key_add", "--tenant", "acme", "--issuer", ISSUER, "--algorithm", "HS256",
        "--secret-file", str(tmp_path / "secret"),
    )  # fmt: skip
    assert one_sentence_error(result) == "secret: An HS256 secret must be at least 32 bytes long."
    assert result.stdout == "" and not SigningKey.objects.exists()


# -- admin ----------------------------------------------------------------------------------------


@pytest.fixture
def operator_client(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1"))
    return client


def add_form(tenant, **overrides):
    data = {
        "tenant": tenant.pk,
        "name": "backend",
        "issuer": ISSUER,
        "algorithm": "HS256",
        "key_id": "",
        "secret": SECRET,
        "public_key": "",
    }
    return {**data, **overrides}


def test_the_admin_adds_a_key_and_never_shows_its_secret(operator_client, acme):
    response = operator_client.post("/admin/accounts/signingkey/add/", add_form(acme))
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = SigningKey.objects.get()
    assert stored.get_secret() == SECRET
    page = operator_client.get(f"/admin/accounts/signingkey/{stored.pk}/change/").content.decode()
    assert ISSUER in page and SECRET not in page and stored.secret_encrypted not in page
    assert 'name="secret"' not in page  # material is set once; rotate by adding a key


def test_the_admin_shows_refusals_next_to_the_field_without_echoing_the_secret(operator_client, acme, globex):
    add(globex, issuer="https://globex.test")
    response = operator_client.post(
        "/admin/accounts/signingkey/add/", add_form(acme, issuer="https://globex.test")
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "belongs to another tenant" in page
    assert SECRET not in page  # the password box comes back empty
    response = operator_client.post("/admin/accounts/signingkey/add/", add_form(acme, secret="short"))
    assert "at least 32 bytes long" in response.content.decode()
    assert SigningKey.objects.filter(tenant=acme).count() == 0


def test_the_admin_deactivates_and_edits_through_the_services(operator_client, acme):
    key = add(acme, key_id="k1")
    add(acme, name="second", key_id="k2")
    response = operator_client.post(
        f"/admin/accounts/signingkey/{key.pk}/change/", {"name": "renamed", "key_id": "k2", "active": "on"}
    )
    assert "already has the key id" in response.content.decode()
    response = operator_client.post(
        "/admin/accounts/signingkey/", {"action": "deactivate", "_selected_action": [key.pk]}
    )
    assert response.status_code == 302
    assert not SigningKey.objects.get(pk=key.pk).active


def test_issue_generates_an_hs256_secret_shown_once(acme):
    from accounts.signing import GENERATED_SECRET_BYTES, signing_key_issue

    issued = signing_key_issue(tenant=acme, name="backend", issuer=ISSUER, algorithm="HS256")
    stored = SigningKey.objects.get()
    assert len(issued.secret) >= GENERATED_SECRET_BYTES and stored.get_secret() == issued.secret
    assert issued.secret not in stored.secret_encrypted
    # A secret the tenant brings, or a public key, is not echoed back.
    own = signing_key_issue(
        tenant=acme, name="own", issuer=ISSUER, algorithm="HS256", secret=SECRET, key_id="k2"
    )
    public = signing_key_issue(
        tenant=acme, name="rsa", issuer=ISSUER, algorithm="RS256", public_key=public_pem(rsa_key())
    )
    assert own.secret == public.secret == ""
    assert SigningKey.objects.get(pk=own.signing_key.pk).get_secret() == SECRET

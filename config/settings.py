"""Tollhouse settings: one code path, two profiles.

- Embedded default (nothing set): SQLite in ./var, in-process counters and usage buffer, Celery
  tasks run eagerly, the mock provider started inside the gateway. One process only.
- Production (DATABASE_URL set): PostgreSQL, Redis (REDIS_URL), a real Celery broker; secrets
  must come from the environment.

Every variable is documented in the README's configuration table.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

from config.env import EnvReader
from config.logs import FORMATS, LEVELS, logging_config
from config.sso import read_oidc

BASE_DIR = Path(__file__).resolve().parent.parent
env = EnvReader()

# --- profile ----------------------------------------------------------------------------------------
_database = env.database("DATABASE_URL")
TOLLHOUSE_PRODUCTION = env.raw("DATABASE_URL") is not None
TESTING = "pytest" in sys.modules or env.boolean("TOLLHOUSE_TESTING", False)
VAR_DIR = Path(env.string("TOLLHOUSE_VAR_DIR", str(BASE_DIR / "var")))


# ./var holds the embedded database and generated secrets: owner-only (0700 directory, 0600 files).
# New ones are created with those modes, whatever the umask (a chmod after creating them would leave
# a window); files an older version left readable are tightened.
def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _owner_only(path: Path) -> None:
    """Take group and other permissions away from a file this user owns (older installs)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return
    if status.st_mode & 0o077 and status.st_uid == os.getuid():
        path.chmod(status.st_mode & 0o700)


def _private_file(path: Path) -> None:
    """Create `path` empty and owner-only if missing (SQLite then gives its -wal and -shm files the
    same mode), or make an existing one owner-only."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        _owner_only(path)


def _embedded_secret(filename: str, make: Callable[[], str]) -> str:
    """A secret generated once and kept in ./var, so the embedded demo survives restarts."""
    path = VAR_DIR / filename
    if path.exists():
        _owner_only(path)
        return path.read_text().strip()
    _private_dir(VAR_DIR)
    # Written to a private temporary file (mkstemp: 0600) and linked into place: never readable by
    # others, never seen half-written, and two processes starting at once agree on one value.
    fd, temporary = tempfile.mkstemp(dir=VAR_DIR, prefix=f".{filename}.")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(make() + "\n")
        with contextlib.suppress(FileExistsError):  # another process was first: its value wins
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return path.read_text().strip()


# --- secrets ----------------------------------------------------------------------------------------
_secret_key = env.raw("TOLLHOUSE_SECRET_KEY")
if _secret_key is None:
    if TOLLHOUSE_PRODUCTION:
        env.errors.append("TOLLHOUSE_SECRET_KEY must be set in production (DATABASE_URL is set).")
        _secret_key = "unset-" + secrets.token_urlsafe(32)
    else:
        _secret_key = _embedded_secret("secret_key", lambda: secrets.token_urlsafe(50))
elif len(_secret_key) < 32:
    env.errors.append("TOLLHOUSE_SECRET_KEY must be at least 32 characters long.")
SECRET_KEY = _secret_key

ENCRYPTION_KEYS = env.fernet_keys("TOLLHOUSE_ENCRYPTION_KEY")
if not ENCRYPTION_KEYS and env.raw("TOLLHOUSE_ENCRYPTION_KEY") is None:
    if TOLLHOUSE_PRODUCTION:
        env.errors.append(
            "TOLLHOUSE_ENCRYPTION_KEY must be set in production (it encrypts provider credentials)."
        )
    else:
        ENCRYPTION_KEYS = [_embedded_secret("encryption_key", lambda: Fernet.generate_key().decode())]

# API keys are stored as HMAC-SHA256(pepper, secret). The pepper defaults to one derived from the
# secret key; set it separately to be able to rotate TOLLHOUSE_SECRET_KEY without voiding keys.
API_KEY_PEPPER = (
    env.raw("TOLLHOUSE_KEY_PEPPER")
    or hmac.new(SECRET_KEY.encode(), b"tollhouse api key pepper", hashlib.sha256).hexdigest()
)

DEBUG = env.boolean("TOLLHOUSE_DEBUG", False)
ALLOWED_HOSTS = env.strings("TOLLHOUSE_ALLOWED_HOSTS", ["*"])
CSRF_TRUSTED_ORIGINS = env.strings("TOLLHOUSE_CSRF_TRUSTED_ORIGINS", [])

# --- security ---------------------------------------------------------------------------------------
# Production (DATABASE_URL set) is served over HTTPS, so cookies are secure, HSTS is sent and plain
# http is redirected, and `manage.py check --deploy` is clean. The embedded default is plain http on
# localhost, so all of it is off there. Each can be set either way; tests run on plain http.
_https = TOLLHOUSE_PRODUCTION
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.boolean("TOLLHOUSE_SECURE_COOKIES", _https)
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env.boolean("TOLLHOUSE_SSL_REDIRECT", _https and not TESTING)
# Load balancers and monitoring probe these over plain http on the private network.
# /v1 is an API for SDKs, which do not follow a redirect to https (and a redirect of a 60 kB path
# failed as an HTML 400): every /v1 path, known or not, is answered where it was asked.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$", r"^v1(?:/|$)"]
SECURE_HSTS_SECONDS = env.integer("TOLLHOUSE_HSTS_SECONDS", 31_536_000 if _https else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.boolean("TOLLHOUSE_HSTS_INCLUDE_SUBDOMAINS", _https)
SECURE_HSTS_PRELOAD = env.boolean("TOLLHOUSE_HSTS_PRELOAD", _https)
# Django believes X-Forwarded-Proto from whoever sends it: a client on plain http could send
# `X-Forwarded-Proto: https` and be taken for https (no redirect, CSRF's https-only Referer check
# skipped). So Django reads a key that config.clientip.ForwardedSchemeMiddleware sets only when the
# socket peer is in TOLLHOUSE_TRUSTED_PROXIES (the rule of the client IP); that proxy must set the
# header. Behind a TLS-terminating proxy, set TOLLHOUSE_TRUSTED_PROXIES (or the redirect would loop).
_proxied = env.raw("TOLLHOUSE_TRUSTED_PROXIES") is not None
SECURE_PROXY_SSL_HEADER = ("TOLLHOUSE_FORWARDED_SCHEME", "https") if _proxied else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content Security Policy (django-csp): scripts, styles, images and fetches from our own origin only;
# no inline script anywhere, no inline style in our templates (the console passes data with
# json_script, which is JSON, not script). The one inline <style> of Django's admin change list is
# allowed by its hash, so the admin needs no 'unsafe-inline' either.
_ADMIN_CHANGELIST_STYLE = "'sha256-blvLUW3UscWqsXGByNOqdBboM+ShWAuugp2mC/wbafU='"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", _ADMIN_CHANGELIST_STYLE],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# --- end of security --------------------------------------------------------------------------------

# --- apps -------------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files for /api/docs/, from our static files (no CDN)
    "csp",
    "config",
    "accounts",
    "billing",
    "gateway",
]

# All of these are async-capable, so an async view runs without a thread hop per request.
MIDDLEWARE = [
    "config.clientip.ForwardedSchemeMiddleware",  # before anything asks request.is_secure()
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context.console",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------------------
if _database is not None:
    _database["CONN_MAX_AGE"] = env.integer("TOLLHOUSE_DB_CONN_MAX_AGE", 0)
    _database["CONN_HEALTH_CHECKS"] = True
    DATABASES = {"default": _database}
else:
    _private_dir(VAR_DIR)
    _sqlite = VAR_DIR / "tollhouse.sqlite3"
    for _path in (
        _sqlite,
        _sqlite.with_name(_sqlite.name + "-wal"),
        _sqlite.with_name(_sqlite.name + "-shm"),
    ):
        _owner_only(_path)
    _private_file(_sqlite)  # before Django opens it: sqlite3 would create it 0644
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(_sqlite),
            # The usage flusher and the request path share one file: wait for the lock, don't fail.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL;",
            },
        }
    }
    # SQLite has no INCLUDE columns: the rollups' covering indexes and constraints are made there
    # without them (billing migration 0012 adds the plain unique indexes the upserts arbitrate on),
    # which is all the embedded default needs; the warnings would only repeat that at every start.
    SILENCED_SYSTEM_CHECKS = ["models.W039", "models.W040"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis, celery, email -----------------------------------------------------------------------------
REDIS_URL = env.redis_url("REDIS_URL")
if TOLLHOUSE_PRODUCTION and REDIS_URL is None:
    # Without it every gateway process would count rate limits and budgets on its own: N processes
    # would let N times each limit through.
    env.errors.append(
        "REDIS_URL must be set in production (DATABASE_URL is set): rate limits, concurrency and "
        "budgets are shared by all gateway processes through it."
    )
TOLLHOUSE_REDIS_PREFIX = env.string("TOLLHOUSE_REDIS_PREFIX", "th:")


def _redis_seconds(name: str, default: float) -> float:
    return env.seconds(name, default, maximum=60)


# How long any Redis call on the request path may wait (to connect, then for each reply): a Redis
# that hangs must cost a call a fraction of a second, not seconds (config/redis.py).
TOLLHOUSE_REDIS_TIMEOUT = _redis_seconds("TOLLHOUSE_REDIS_TIMEOUT", 0.25)
# Admission and settlement (rate limits, budgets): a hung Redis costs the first call this long, then
# the gateway treats Redis as down (TOLLHOUSE_REDIS_FAILURE) and probes it in the background.
TOLLHOUSE_GOVERNOR_REDIS_TIMEOUT = _redis_seconds("TOLLHOUSE_GOVERNOR_REDIS_TIMEOUT", 1.0)
# The usage drain runs in Celery, off the request path: it may wait longer for a busy Redis.
TOLLHOUSE_REDIS_WORKER_TIMEOUT = _redis_seconds("TOLLHOUSE_REDIS_WORKER_TIMEOUT", 5.0)
# Usage events waiting in-process (embedded mode, or while Redis is unreachable). When full, a
# call's event is written through to the database before the call completes: never dropped.
TOLLHOUSE_USAGE_BUFFER_MAX = env.integer("TOLLHOUSE_USAGE_BUFFER_MAX", 10_000, minimum=1)

# Django's cache, shared between processes when Redis is there (nothing on the request path uses it).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Bounded like every other Redis client (config/redis.py): a hung Redis must not hang a page.
            "OPTIONS": {
                "socket_connect_timeout": TOLLHOUSE_REDIS_TIMEOUT,
                "socket_timeout": TOLLHOUSE_REDIS_TIMEOUT,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
TOLLHOUSE_LOGIN_RATE = env.rate("TOLLHOUSE_LOGIN_RATE", "10/m")
# Failed opens of invitation links (/invitations/<token>/) allowed per client IP per window; beyond it, 429.
TOLLHOUSE_INVITATION_RATE = env.rate("TOLLHOUSE_INVITATION_RATE", "20/m")
# The management API (/api/v1/): calls per personal access token per window, and failed token checks
# per client IP per window; beyond either, 429 with Retry-After.
TOLLHOUSE_API_RATE = env.rate("TOLLHOUSE_API_RATE", "600/m")
TOLLHOUSE_API_AUTH_FAILURE_RATE = env.rate("TOLLHOUSE_API_AUTH_FAILURE_RATE", "20/m")

CELERY_BROKER_URL = env.raw("CELERY_BROKER_URL") or REDIS_URL
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
TOLLHOUSE_USAGE_DRAIN_SECONDS = env.integer("TOLLHOUSE_USAGE_DRAIN_SECONDS", 2, minimum=1)
# A usage entry read but not acknowledged for this long (its worker crashed, or the database was
# down) is claimed by the next drain (billing/usage.py).
TOLLHOUSE_USAGE_CLAIM_IDLE_SECONDS = env.integer("TOLLHOUSE_USAGE_CLAIM_IDLE_SECONDS", 60, minimum=1)
# Raw usage rows are kept this many days, then purged (billing/retention.py); hourly rollups are kept.
TOLLHOUSE_USAGE_RETENTION_DAYS = env.integer("TOLLHOUSE_USAGE_RETENTION_DAYS", 90, minimum=1)
if TOLLHOUSE_USAGE_RETENTION_DAYS < 62:
    env.warnings.append(
        f"TOLLHOUSE_USAGE_RETENTION_DAYS is {TOLLHOUSE_USAGE_RETENTION_DAYS}: raw usage rows are still kept back to "
        "the start of the previous month (up to 62 days), because budget counters are re-derived from them."
    )
CELERY_BEAT_SCHEDULE = {
    "usage-drain": {"task": "billing.tasks.usage_drain", "schedule": float(TOLLHOUSE_USAGE_DRAIN_SECONDS)},
    # Budget alerts are checked after each drained batch; this catches forecasts and missed triggers.
    "budget-alerts": {"task": "billing.tasks.budget_alerts_check_all", "schedule": 300.0},
    # Budget and credit counters re-derived from the ledger, so drift cannot accumulate.
    "counters-reconcile": {
        "task": "billing.tasks.counters_reconcile",
        "schedule": float(env.integer("TOLLHOUSE_RECONCILE_SECONDS", 300, minimum=10)),
    },
    # Raw usage rows older than TOLLHOUSE_USAGE_RETENTION_DAYS, in bounded batches (rollups are kept).
    "usage-purge": {"task": "billing.tasks.usage_purge", "schedule": 3600.0},
    # Raw rows vs rollups vs budget counters vs credit ledger, over the last two days; logs each difference.
    "usage-reconcile": {"task": "billing.tasks.usage_reconcile", "schedule": 86_400.0},
    # Body logs older than TOLLHOUSE_BODY_LOG_RETENTION_DAYS are deleted.
    "body-logs-purge": {"task": "gateway.tasks.body_logs_purge", "schedule": 3600.0},
}
# Beat's own state (when each entry last ran) is runtime data: it lives in TOLLHOUSE_VAR_DIR, never in
# the checkout; config.celery.VarDirScheduler creates the directory when beat starts.
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULER = "config.celery:VarDirScheduler"

if env.raw("EMAIL_URL"):
    import environ as _environ

    try:
        vars().update(_environ.Env.email_url_config(env.raw("EMAIL_URL")))
    except Exception:
        env.errors.append("EMAIL_URL must look like smtp://user:password@host:587 or smtp+tls://...")
else:
    EMAIL_BACKEND = (
        "django.core.mail.backends.smtp.EmailBackend"
        if TOLLHOUSE_PRODUCTION
        else "django.core.mail.backends.console.EmailBackend"
    )
DEFAULT_FROM_EMAIL = env.string("TOLLHOUSE_FROM_EMAIL", "Tollhouse <tollhouse@localhost>")
# Where people reach this Tollhouse: the links in alert emails start with it.
TOLLHOUSE_PUBLIC_URL = env.string("TOLLHOUSE_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
_public_url = urlsplit(TOLLHOUSE_PUBLIC_URL)
if _public_url.scheme not in {"http", "https"} or not _public_url.netloc:
    env.errors.append(f"TOLLHOUSE_PUBLIC_URL must be an http(s) URL, not {TOLLHOUSE_PUBLIC_URL!r}.")
# Budget alert emails and webhooks that fail are tried again after this many seconds, doubling each time.
TOLLHOUSE_ALERT_RETRY_SECONDS = env.integer("TOLLHOUSE_ALERT_RETRY_SECONDS", 30)
# An invitation to join a tenant (accounts/members.py) can be accepted for this many days.
TOLLHOUSE_INVITATION_DAYS = env.integer("TOLLHOUSE_INVITATION_DAYS", 7, minimum=1)

# --- the gateway ------------------------------------------------------------------------------------
TOLLHOUSE_MAX_BODY_BYTES = env.integer("TOLLHOUSE_MAX_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = TOLLHOUSE_MAX_BODY_BYTES
# The request line and headers together; a larger head is answered 431 (config/server.py).
TOLLHOUSE_MAX_HEADER_BYTES = env.integer("TOLLHOUSE_MAX_HEADER_BYTES", 64 * 1024, minimum=4096)
# Reading a request (config/server.py): its head must be complete this long after its first byte,
# its body this long after the head, or the client gets 408 and the connection is closed. Slow
# clients (slowloris, a body shorter than its Content-Length) held connections for as long as they
# liked. Answers, streams included, have no such limit.
TOLLHOUSE_HEADER_TIMEOUT_SECONDS = env.seconds("TOLLHOUSE_HEADER_TIMEOUT_SECONDS", 5.0, maximum=600)
TOLLHOUSE_BODY_TIMEOUT_SECONDS = env.seconds("TOLLHOUSE_BODY_TIMEOUT_SECONDS", 30.0, maximum=3600)
# Open connections per socket peer address, per gateway process (trusted proxies not counted); a
# connection over it is answered 429 and closed. 0 turns the limit off.
TOLLHOUSE_MAX_CONNECTIONS_PER_ADDRESS = env.integer("TOLLHOUSE_MAX_CONNECTIONS_PER_ADDRESS", 256, minimum=0)
# How long a worker trusts its in-process copy of keys, routes and prices.
TOLLHOUSE_CACHE_TTL = env.integer("TOLLHOUSE_CACHE_TTL", 5, minimum=0)
TOLLHOUSE_TRUSTED_PROXIES = env.networks("TOLLHOUSE_TRUSTED_PROXIES")
# Addresses (IPs or CIDR ranges) budget webhooks may reach although they are not public: loopback,
# private, link-local, ... are refused otherwise, when a webhook is set and when it is sent
# (config/egress.py).
TOLLHOUSE_WEBHOOK_ALLOW = env.networks("TOLLHOUSE_WEBHOOK_ALLOW")
# Failed authentications per client IP per minute (per process) before the gateway answers 429
# without looking the key up; 0 turns the limit off.
TOLLHOUSE_AUTH_FAILURES_PER_MINUTE = env.integer("TOLLHOUSE_AUTH_FAILURES_PER_MINUTE", 60, minimum=0)
TOLLHOUSE_UPSTREAM_MAX_CONNECTIONS = env.integer("TOLLHOUSE_UPSTREAM_MAX_CONNECTIONS", 512, minimum=1)
# An upstream's Retry-After is passed on capped at this many seconds (gateway/providers/base.py).
TOLLHOUSE_UPSTREAM_RETRY_AFTER_MAX_SECONDS = env.integer(
    "TOLLHOUSE_UPSTREAM_RETRY_AFTER_MAX_SECONDS", 60, minimum=1
)
# The executor (gateway/executor.py): retries of one deployment after a connect error, 408, 429 or
# 5xx, with exponential backoff and full jitter from the base to the cap (a Retry-After is honoured
# up to TOLLHOUSE_UPSTREAM_RETRY_AFTER_MAX_SECONDS), and no wait may run past the call's deadline.
TOLLHOUSE_UPSTREAM_RETRIES = env.integer("TOLLHOUSE_UPSTREAM_RETRIES", 2, minimum=0)
TOLLHOUSE_UPSTREAM_BACKOFF_SECONDS = env.seconds("TOLLHOUSE_UPSTREAM_BACKOFF_SECONDS", 0.25, maximum=60)
TOLLHOUSE_UPSTREAM_BACKOFF_MAX_SECONDS = env.seconds(
    "TOLLHOUSE_UPSTREAM_BACKOFF_MAX_SECONDS", 8.0, maximum=600
)
# A Retry-After longer than this is not waited out by the gateway: the call moves on to the next
# deployment, or the client gets the 429 with the Retry-After and waits itself (holding its
# connection open that long would look like a hang to it).
TOLLHOUSE_UPSTREAM_RETRY_WAIT_MAX_SECONDS = env.seconds(
    "TOLLHOUSE_UPSTREAM_RETRY_WAIT_MAX_SECONDS", 5.0, maximum=600
)
TOLLHOUSE_CALL_DEADLINE_SECONDS = env.seconds("TOLLHOUSE_CALL_DEADLINE_SECONDS", 900.0, maximum=86400)
# A stream that waits this long for its upstream gets its dialect's keep-alive (Anthropic's `ping`).
TOLLHOUSE_STREAM_KEEPALIVE_SECONDS = env.seconds("TOLLHOUSE_STREAM_KEEPALIVE_SECONDS", 10.0, maximum=600)
TOLLHOUSE_USAGE_FLUSH_SECONDS = env.integer("TOLLHOUSE_USAGE_FLUSH_SECONDS", 1, minimum=1)
# Governance (gateway/governor.py). A call in flight holds its concurrency slot and its budget
# reservation for at most this long, so a process that dies cannot hold them for ever.
TOLLHOUSE_LEASE_SECONDS = env.integer("TOLLHOUSE_LEASE_SECONDS", 900, minimum=10)
# When Redis is configured but unreachable: "closed" refuses calls (503) so no limit or hard budget
# can be overrun; "open" lets each process govern on its own (limits become per process) until
# Redis answers again.
TOLLHOUSE_REDIS_FAILURE = env.choice("TOLLHOUSE_REDIS_FAILURE", "closed", ("closed", "open"))
# The circuit breaker of each deployment (gateway/breaker.py): this many failed attempts in a row (no
# success between them) within the window open it; it stays open for the cooldown, then lets one
# probe through (across all processes).
TOLLHOUSE_BREAKER_FAILURES = env.integer("TOLLHOUSE_BREAKER_FAILURES", 5, minimum=1)
TOLLHOUSE_BREAKER_WINDOW_SECONDS = env.seconds("TOLLHOUSE_BREAKER_WINDOW_SECONDS", 30.0, maximum=3600)
TOLLHOUSE_BREAKER_COOLDOWN_SECONDS = env.seconds("TOLLHOUSE_BREAKER_COOLDOWN_SECONDS", 30.0, maximum=3600)
# Routing (gateway/routing.py): the share of a least_latency route's calls sent to another deployment
# than the fastest, so one that was slow and recovered is measured again.
TOLLHOUSE_ROUTING_EXPLORE = env.fraction("TOLLHOUSE_ROUTING_EXPLORE", 0.05)
# Who may read /metrics (config/metrics.py): a bearer token, an IP allow-list, or both (both are then
# required). With neither, loopback only. The token is never logged or shown, not even in an error.
TOLLHOUSE_METRICS_TOKEN = env.raw("TOLLHOUSE_METRICS_TOKEN")
if TOLLHOUSE_METRICS_TOKEN is not None and (
    len(TOLLHOUSE_METRICS_TOKEN) < 32 or not all("!" <= c <= "~" for c in TOLLHOUSE_METRICS_TOKEN)
):
    env.errors.append(
        "TOLLHOUSE_METRICS_TOKEN must be at least 32 printable ASCII characters without spaces "
        '(make one with `python -c "import secrets; print(secrets.token_urlsafe(32))"`).'
    )
    TOLLHOUSE_METRICS_TOKEN = None
TOLLHOUSE_METRICS_ALLOW = env.networks("TOLLHOUSE_METRICS_ALLOW")

TOLLHOUSE_MOCK_PORT = env.integer("TOLLHOUSE_MOCK_PORT", 8001, minimum=0)
TOLLHOUSE_MOCK_URL = env.string("TOLLHOUSE_MOCK_URL", f"http://127.0.0.1:{TOLLHOUSE_MOCK_PORT}")
# In the embedded default the gateway serves the mock provider itself, so the demo needs nothing else.
TOLLHOUSE_EMBEDDED_MOCK = env.boolean("TOLLHOUSE_EMBEDDED_MOCK", not TOLLHOUSE_PRODUCTION and not TESTING)

# Real providers registered by `manage.py demo` when their key is present.
PROVIDER_KEYS = {
    "openai": env.raw("OPENAI_API_KEY"),
    "deepseek": env.raw("DEEPSEEK_API_KEY"),
    "anthropic": env.raw("ANTHROPIC_API_KEY"),
    "gemini": env.raw("GEMINI_API_KEY"),
}

# --- auth, i18n, static -----------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# The console's sign-in (accounts/urls.py); after it, `accounts.views.home` picks the user's tenant.
LOGIN_URL = "accounts:login"
AUTHENTICATION_BACKENDS = ["accounts.backends.EmailOrUsernameBackend"]
LOGIN_REDIRECT_URL = "accounts:home"
LOGOUT_REDIRECT_URL = "accounts:login"
# Single sign-on with OpenID Connect (accounts/sso.py): off unless TOLLHOUSE_OIDC_* are set
# (config/sso.py). Its backend signs in only through /oidc/callback/, and only while it is on.
TOLLHOUSE_OIDC = read_oidc(env)
AUTHENTICATION_BACKENDS += ["accounts.sso.OidcBackend"]
STATIC_ROOT = BASE_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_PARSER_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "gateway.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# The management API (/api/v1/, accounts/api/): these defaults are the gateway's (/v1); the API's views
# set their own (accounts.api.base.ApiView). Its OpenAPI schema is /api/schema/, its docs /api/docs/.
SPECTACULAR_SETTINGS = {
    "TITLE": "Tollhouse management API",
    "DESCRIPTION": "Manage tenants' keys, budgets, members, credits, signing keys and usage with a "
    "personal access token (`Authorization: Bearer thp_...`, created at /account/tokens/). Errors are "
    '`{"error": {"code", "message", "field"}}`; lists are paginated by cursor (follow `next`).',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Two models have a `status` with different choices: name each set (else the names collide).
    "ENUM_NAME_OVERRIDES": {
        "Role": "accounts.models.Membership.Role",
        "TenantStatusEnum": "accounts.models.Tenant.Status",
        "ApiKeyStatusEnum": "accounts.models.ApiKey.Status",
    },
    "PREPROCESSING_HOOKS": ["accounts.api.schema.only_management_api"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "accounts.api.schema.add_error_responses",
    ],
}

# --- logs -------------------------------------------------------------------------------------------
# One JSON object per line in production (a log shipper reads it), readable lines in the embedded
# default; TOLLHOUSE_LOG_FORMAT says which either way. See config/logs.py.
LOG_LEVEL = env.choice("TOLLHOUSE_LOG_LEVEL", "info", LEVELS).upper()
TOLLHOUSE_LOG_FORMAT = env.choice("TOLLHOUSE_LOG_FORMAT", "json" if TOLLHOUSE_PRODUCTION else "text", FORMATS)
LOGGING = logging_config(
    fmt=TOLLHOUSE_LOG_FORMAT,
    level=LOG_LEVEL,
    loggers={
        # httpx logs every request URL at INFO; that is noise on the hot path.
        "httpx": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
        # Celery logs every task received and succeeded (worker) and every task sent (beat) at INFO:
        # with the usage drain every 2 s, an idle system would log a line a second. Failures are still
        # logged at ERROR; a task that did something worth saying logs it itself.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING"},
    },
)
# Per-tenant body logging (Tenant.body_logging, off by default; gateway/bodylog.py): each body is
# cut at this many bytes, and the rows are deleted after this many days.
TOLLHOUSE_BODY_LOG_MAX_BYTES = env.integer("TOLLHOUSE_BODY_LOG_MAX_BYTES", 64 * 1024, minimum=1024)
TOLLHOUSE_BODY_LOG_RETENTION_DAYS = env.integer("TOLLHOUSE_BODY_LOG_RETENTION_DAYS", 7, minimum=1)
# The response cache (gateway/cache.py), opted in per key (ApiKey.cache) or per call
# (`x-tollhouse-cache: on`): how long an answer is kept unless the key or the call says otherwise,
# the longest a key or a call may ask for (`x-tollhouse-cache-ttl`), and the largest answer stored
# (bigger ones are answered, not stored). In Redis when REDIS_URL is set, else in this process (the
# last TOLLHOUSE_CACHE_LOCAL_ENTRIES answers).
TOLLHOUSE_CACHE_TTL_SECONDS = env.integer("TOLLHOUSE_CACHE_TTL_SECONDS", 3600, minimum=1)
TOLLHOUSE_CACHE_MAX_TTL_SECONDS = env.integer("TOLLHOUSE_CACHE_MAX_TTL_SECONDS", 7 * 86400, minimum=1)
TOLLHOUSE_CACHE_MAX_BYTES = env.integer("TOLLHOUSE_CACHE_MAX_BYTES", 256 * 1024, minimum=1)
TOLLHOUSE_CACHE_LOCAL_ENTRIES = env.integer("TOLLHOUSE_CACHE_LOCAL_ENTRIES", 1000, minimum=1)

TOLLHOUSE_CONFIG_ERRORS = env.errors
TOLLHOUSE_CONFIG_WARNINGS = env.warnings
TOLLHOUSE_SINGLE_PROCESS = REDIS_URL is None

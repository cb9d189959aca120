"""Tollhouse settings: one code path, two profiles.

- Embedded default (nothing set): SQLite in ./var, in-process counters and usage buffer, Celery
  tasks run eagerly, the mock provider started inside the gateway. One process only.
- Production (DATABASE_URL set): PostgreSQL, Redis (REDIS_URL), a real Celery broker; secrets
  must come from the environment.

Every variable is documented in the README's configuration table.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

from config.env import EnvReader

BASE_DIR = Path(__file__).resolve().parent.parent
env = EnvReader()

# --- profile ----------------------------------------------------------------------------------------
_database = env.database("DATABASE_URL")
TOLLHOUSE_PRODUCTION = env.raw("DATABASE_URL") is not None
TESTING = "pytest" in sys.modules or env.boolean("TOLLHOUSE_TESTING", False)
VAR_DIR = Path(env.string("TOLLHOUSE_VAR_DIR", str(BASE_DIR / "var")))


def _embedded_secret(filename: str, make: Callable[[], str]) -> str:
    """A secret generated once and kept in ./var, so the embedded demo survives restarts."""
    path = VAR_DIR / filename
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


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

# --- apps -------------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_ratelimit",
    "config",
    "accounts",
    "billing",
    "gateway",
]

# All of these are async-capable, so an async view runs without a thread hop per request.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "tollhouse.sqlite3"),
            # The usage flusher and the request path share one file: wait for the lock, don't fail.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis, celery, email -----------------------------------------------------------------------------
REDIS_URL = env.redis_url("REDIS_URL")
TOLLHOUSE_REDIS_PREFIX = env.string("TOLLHOUSE_REDIS_PREFIX", "th:")

# The cache backs the console's rate limits (login attempts); it must be shared between processes.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # Embedded mode is one process, so an in-process cache is shared by everything that runs.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]
TOLLHOUSE_LOGIN_RATE = env.string("TOLLHOUSE_LOGIN_RATE", "10/m")

CELERY_BROKER_URL = env.raw("CELERY_BROKER_URL") or REDIS_URL
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
TOLLHOUSE_USAGE_DRAIN_SECONDS = env.integer("TOLLHOUSE_USAGE_DRAIN_SECONDS", 2, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "usage-drain": {"task": "billing.tasks.usage_drain", "schedule": float(TOLLHOUSE_USAGE_DRAIN_SECONDS)},
}

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

# --- the gateway ------------------------------------------------------------------------------------
TOLLHOUSE_MAX_BODY_BYTES = env.integer("TOLLHOUSE_MAX_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = TOLLHOUSE_MAX_BODY_BYTES
# How long a worker trusts its in-process copy of keys, routes and prices.
TOLLHOUSE_CACHE_TTL = env.integer("TOLLHOUSE_CACHE_TTL", 5, minimum=0)
TOLLHOUSE_TRUSTED_PROXIES = env.strings("TOLLHOUSE_TRUSTED_PROXIES", [])
TOLLHOUSE_UPSTREAM_MAX_CONNECTIONS = env.integer("TOLLHOUSE_UPSTREAM_MAX_CONNECTIONS", 512, minimum=1)
TOLLHOUSE_USAGE_FLUSH_SECONDS = env.integer("TOLLHOUSE_USAGE_FLUSH_SECONDS", 1, minimum=1)

TOLLHOUSE_MOCK_PORT = env.integer("TOLLHOUSE_MOCK_PORT", 8001, minimum=0)
TOLLHOUSE_MOCK_URL = env.string("TOLLHOUSE_MOCK_URL", f"http://127.0.0.1:{TOLLHOUSE_MOCK_PORT}")
# In the embedded default the gateway serves the mock provider itself, so the demo needs nothing else.
TOLLHOUSE_EMBEDDED_MOCK = env.boolean("TOLLHOUSE_EMBEDDED_MOCK", not TOLLHOUSE_PRODUCTION and not TESTING)

# Real providers registered by `manage.py demo` when their key is present.
PROVIDER_KEYS = {
    "openai": env.raw("OPENAI_API_KEY"),
    "deepseek": env.raw("DEEPSEEK_API_KEY"),
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
# Console assets arrive with the console; until then the admin's own static files are all there is.
STATICFILES_DIRS = [path for path in [BASE_DIR / "static"] if path.is_dir()]
STATIC_ROOT = BASE_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_PARSER_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "gateway.errors.exception_handler",
}

LOG_LEVEL = env.string("TOLLHOUSE_LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # httpx logs every request URL at INFO; that is noise on the hot path.
        "httpx": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
    },
}

TOLLHOUSE_CONFIG_ERRORS = env.errors
TOLLHOUSE_CONFIG_WARNINGS = env.warnings
TOLLHOUSE_SINGLE_PROCESS = REDIS_URL is None

"""Agentry settings: one module, driven by the environment.

Every production difference is an environment variable (see DESIGN.md section 2
and the README); nothing here depends on a settings file that only production
loads. With no environment at all the project runs embedded: SQLite, LocMem
cache, in-memory channel layer and the built-in offline model.
"""

import hashlib
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# `make run` leaves a development `.env` (DEBUG and a key), so the same
# checkout's `manage.py` commands work without exporting anything. Variables
# already set win; the test suite and the processes it spawns never read it.
ENV_FILE = env.str("AGENTRY_ENV_FILE", default=str(BASE_DIR / ".env"))
if (
    ENV_FILE
    and not env.bool("AGENTRY_TESTING", default=False)
    and Path(ENV_FILE).is_file()
):
    environ.Env.read_env(ENV_FILE)

DEBUG = env.bool("DEBUG", default=False)
# pytest's configuration sets AGENTRY_TESTING (pytest-env); processes the tests
# spawn are given a production-like environment without it.
TESTING = env.bool("AGENTRY_TESTING", default=False)
# Build-time commands that never sign or verify anything (the Docker build runs
# collectstatic without secrets); serving and data commands still need a key.
_OFFLINE_COMMANDS = {
    "makemigrations",
    "collectstatic",
    "spectacular",
    "help",
    "showmigrations",
}
_OFFLINE = (
    len(sys.argv) > 1
    and Path(sys.argv[0]).name == "manage.py"
    and sys.argv[1] in _OFFLINE_COMMANDS
)

_DEV_SECRET_KEY = "django-insecure-agentry-development-key-do-not-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or TESTING or _OFFLINE):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable "
            "(or DEBUG=1 for local development with a throwaway key; `make run` "
            "writes both to a development .env that manage.py reads)."
        )
    SECRET_KEY = _DEV_SECRET_KEY
    if DEBUG and not TESTING:
        # Logging is not configured yet while settings load; one plain line.
        sys.stderr.write(
            "warning: SECRET_KEY is not set, using a development key "
            "(never do this in production)\n"
        )

# Tokens are signed with their own key, so rotating one secret does not
# silently invalidate (or forge) the other. By default it is derived from
# SECRET_KEY, which keeps a one-variable setup working.
JWT_SIGNING_KEY = env.str(
    "JWT_SIGNING_KEY",
    default=hashlib.sha256(f"agentry-jwt:{SECRET_KEY}".encode()).hexdigest(),
)

# Keys that encrypt users' stored secrets, newest first: the first encrypts and
# all decrypt, so a key rotates without downtime (`manage.py rotate_secrets`).
# Empty means derived from SECRET_KEY.
AGENTRY_SECRETS_KEY = env.list("AGENTRY_SECRETS_KEY", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS",
    default=[
        f"{scheme}://{host}{port}"
        for host in ALLOWED_HOSTS
        if host and "*" not in host
        for scheme in ("http", "https")
        for port in ("", ":8000")
    ],
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "tools",
    "agents",
    "sessions_app",
    "usage",
    "observability",
    "django_tasks",
    "django_tasks_db",
    "automation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "core.parsers.RejectInvalidQueryMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "observability.middleware.request_user_middleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

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

# --- database -----------------------------------------------------------------

# An empty DATABASE_URL (a blank line in .env, `DATABASE_URL= make run`) means
# the default, as an unset one does.
DATABASES = {
    "default": env.db_url_config(env.str("DATABASE_URL", "") or "sqlite:///db.sqlite3")
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    if not Path(_db["NAME"]).is_absolute() and _db["NAME"] != ":memory:":
        _db["NAME"] = str(BASE_DIR / _db["NAME"])
    _db["OPTIONS"] = {
        # Writers queue instead of failing with "database is locked"; WAL lets
        # readers (websocket replays, REST) proceed while a turn writes.
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Connections stay open in the threads that use them: closing a WAL
    # database checkpoints it, which cost a tenth of a turn's CPU when every
    # ORM call from async code closed its connection (docs/performance.md).
    _db["CONN_MAX_AGE"] = None
    # The test database is a file too: an in-memory shared-cache database
    # locks whole tables and ignores the busy timeout, which is not how the
    # embedded deployment behaves under concurrent turns.
    _db["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"agentry-test-{os.getpid()}.sqlite3")
    }
elif _db["ENGINE"] in (
    "django.db.backends.postgresql",
    "django.db.backends.postgresql_psycopg2",
):
    _db["ENGINE"] = "django.db.backends.postgresql"
    # Django's own psycopg 3 pool; persistent connections must stay off with it.
    _db["CONN_MAX_AGE"] = 0
    # The pool checks a connection when it is checked out: one whose backend
    # died (PostgreSQL restarted, the backend was terminated) is replaced, so
    # only requests in flight at that moment fail.
    _db["CONN_HEALTH_CHECKS"] = True
    _db["OPTIONS"] = {
        "pool": {
            "min_size": env.int("DATABASE_POOL_MIN", default=2),
            "max_size": env.int("DATABASE_POOL_MAX", default=20),
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
        },
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- cache and channel layer --------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
                # A Redis outage degrades caching and throttling to misses
                # instead of turning every request into a 500.
                "IGNORE_EXCEPTIONS": True,
            },
            "KEY_PREFIX": "agentry",
        }
    }
    DJANGO_REDIS_IGNORE_EXCEPTIONS = True
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "agentry"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- auth ---------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(
        minutes=env.int("JWT_ACCESS_MINUTES", default=30)
    ),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
}

# --- REST framework -----------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "core.filters.BoundedSearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    # JSON bodies only: a form cannot carry the API's lists and objects (DRF
    # reads a `tools` or `decisions` form field as absent). The auth views
    # also take forms, the artifact upload multipart.
    "DEFAULT_PARSER_CLASSES": ["core.parsers.StrictJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "core.openapi.ErrorAwareAutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    # Counters live in the default cache (Redis when REDIS_URL is set), so the
    # limits hold across server processes. "login" counts per account name
    # whatever the address, "login_ip" per address (accounts/api/throttles.py).
    "DEFAULT_THROTTLE_RATES": {
        "login": env.str("AGENTRY_LOGIN_RATE", default="20/min"),
        "login_ip": env.str("AGENTRY_LOGIN_IP_RATE", default="120/min"),
        "register": env.str("AGENTRY_REGISTER_RATE", default="60/min"),
        "refresh": env.str("AGENTRY_REFRESH_RATE", default="120/min"),
    },
    # Only a proxy in front of daphne may name the client address.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Agentry API",
    "DESCRIPTION": "Configure AI agents, chat with them and watch them work.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc come from this server's static files, so the docs
    # pages work offline and load nothing from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- static, media, sandbox ---------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING

MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "uploads")))
REPO_ROOT = Path(env.str("REPO_ROOT", default=str(BASE_DIR / "workspace"))).resolve()
# File tools in `workspace` scope work in AGENTRY_WORKSPACES/<session user id>/,
# one private tree per user, each capped so no user can fill the disk.
AGENTRY_WORKSPACES = Path(
    env.str("AGENTRY_WORKSPACES", default=str(BASE_DIR / "workspaces"))
).resolve()
AGENTRY_WORKSPACE_QUOTA_MB = env.int("AGENTRY_WORKSPACE_QUOTA_MB", default=1024)

MAX_UPLOAD_BYTES = env.int("AGENTRY_MAX_UPLOAD_BYTES", default=25 * 1024 * 1024)
# Total size of one user's uploaded artifacts: uploads past it are refused
# (413 quota_exceeded), so no user can fill the media volume.
AGENTRY_UPLOAD_QUOTA_MB = env.float("AGENTRY_UPLOAD_QUOTA_MB", default=1024)
# Uploads stream to a temporary file past this size instead of sitting in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES + 1024 * 1024
# Every request body but an upload (JSON, forms) is refused past this (413), so
# no agent, session or listing carries megabytes into every version and page.
AGENTRY_MAX_BODY_BYTES = env.int("AGENTRY_MAX_BODY_BYTES", default=1024 * 1024)

# --- agent runtime ------------------------------------------------------------

AGENTRY_DEFAULT_MODEL = env.str("AGENTRY_DEFAULT_MODEL", default="offline")
AGENTRY_MODEL_TIMEOUT = env.float("AGENTRY_MODEL_TIMEOUT", default=60.0)
AGENTRY_TURN_TIMEOUT = env.float("AGENTRY_TURN_TIMEOUT", default=600.0)
# A running turn whose process has not refreshed its heartbeat for this long is
# taken for dead (killed, crashed) and ended as `interrupted`.
AGENTRY_TURN_LEASE = env.float("AGENTRY_TURN_LEASE", default=20.0)
# How many times another process may take over a turn whose lease lapsed,
# continuing it from its last completed model step (sessions_app.durable);
# past that the turn ends `interrupted`.
AGENTRY_TURN_MAX_ATTEMPTS = env.int("AGENTRY_TURN_MAX_ATTEMPTS", default=3)
# How often each process looks for approvals past their deadline: a pending
# approval is acted on within this long of expiring (the contract says 10 s).
# How often a websocket's credentials (token expiry, revocation, the user's
# state) are looked at again while it is open; 0 looks on every frame.
AGENTRY_WS_AUTH_RECHECK_SECONDS = env.float(
    "AGENTRY_WS_AUTH_RECHECK_SECONDS", default=5.0
)
AGENTRY_APPROVAL_SWEEP_SECONDS = env.float(
    "AGENTRY_APPROVAL_SWEEP_SECONDS", default=5.0
)
# Where turns run: `inline` in the web process that accepted them, `task` on
# the Django Tasks queue that `manage.py worker` processes (automation.dispatch).
AGENTRY_TURN_EXECUTION = env.str("AGENTRY_TURN_EXECUTION", default="inline")
if AGENTRY_TURN_EXECUTION not in ("inline", "task"):
    raise ImproperlyConfigured("AGENTRY_TURN_EXECUTION must be `inline` or `task`.")
# How many tasks (turns, webhook deliveries) one worker process runs at once.
AGENTRY_WORKER_CONCURRENCY = env.int("AGENTRY_WORKER_CONCURRENCY", default=50)
# A failed webhook delivery is tried again after base * 2**(attempt - 1) s.
AGENTRY_WEBHOOK_RETRY_BASE = env.float("AGENTRY_WEBHOOK_RETRY_BASE", default=10.0)
# Which queue carries the tasks: `database` (the backport's database backend,
# no broker) or `rq` (django-tasks-rq on REDIS_URL, for a queue that outgrows
# the database). `manage.py worker` runs either (automation.claims).
AGENTRY_TASK_BACKEND = env.str("AGENTRY_TASK_BACKEND", default="database")
if AGENTRY_TASK_BACKEND == "database":
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
elif AGENTRY_TASK_BACKEND == "rq":
    if not REDIS_URL:
        raise ImproperlyConfigured(
            "AGENTRY_TASK_BACKEND=rq keeps its queue in Redis: set REDIS_URL."
        )
    INSTALLED_APPS.append("django_rq")
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend"}}
    # RQ's keys (`rq:*`) share REDIS_URL's database with the cache and the
    # channel layer, whose keys carry the `agentry` prefix.
    RQ_QUEUES = {"default": {"URL": REDIS_URL}}
else:
    raise ImproperlyConfigured("AGENTRY_TASK_BACKEND must be `database` or `rq`.")
# The offline model's pause between streamed words: readable in a browser,
# none under tests.
AGENTRY_OFFLINE_WORD_DELAY = env.float(
    "AGENTRY_OFFLINE_WORD_DELAY", default=0.0 if TESTING else 0.012
)
# Streamed text arriving faster than this is sent as one partial frame per
# window; slower streams get a frame per chunk (the first is never delayed).
AGENTRY_STREAM_COALESCE_MS = env.float("AGENTRY_STREAM_COALESCE_MS", default=10.0)
# The partial frames per second all turns of one process may send together;
# beyond it each turn's window widens (0 keeps the fixed window).
AGENTRY_STREAM_FRAMES_PER_SECOND = env.float(
    "AGENTRY_STREAM_FRAMES_PER_SECOND", default=100.0
)
# How many earlier turns of a session the model sees (0: all of them). The
# event log keeps everything; a bound makes a long session's turn cost what a
# short one's does (docs/performance.md, history growth).
AGENTRY_HISTORY_TURNS = env.int("AGENTRY_HISTORY_TURNS", default=0)
# How deep delegation goes: a turn's root is depth 0, its delegated children 1, ...
AGENTRY_MAX_DELEGATION_DEPTH = env.int("AGENTRY_MAX_DELEGATION_DEPTH", default=3)
# Network tools (http_endpoint, mcp_server, webhooks) refuse loopback, private
# and other non-public addresses: agent configs are written by ordinary users.
# Development and tests against local servers turn this on.
AGENTRY_ALLOW_PRIVATE_URLS = env.bool("AGENTRY_ALLOW_PRIVATE_URLS", default=False)
AGENTRY_MAX_MESSAGE_CHARS = env.int("AGENTRY_MAX_MESSAGE_CHARS", default=100_000)
# What one user may spend, so no user can run up the server's bill or starve
# others (DESIGN.md section 9). Starting turns is throttled per user (a DRF-style
# rate, counted in the shared cache); a session queues at most so many turns and
# a user has at most so many queued or running. Agents' usage limits and model
# timeouts are clamped to the maxima (a null limit means the maximum);
# AGENTRY_MAX_TOTAL_TOKENS 0 sets no token maximum (a token limit makes
# pydantic-ai re-check usage on every streamed chunk; requests still bound a turn).
AGENTRY_TURN_RATE = env.str("AGENTRY_TURN_RATE", default="30/min")
AGENTRY_MAX_QUEUED_TURNS = env.int("AGENTRY_MAX_QUEUED_TURNS", default=10)
AGENTRY_MAX_ACTIVE_TURNS = env.int("AGENTRY_MAX_ACTIVE_TURNS", default=20)
AGENTRY_MAX_REQUESTS = env.int("AGENTRY_MAX_REQUESTS", default=100)
AGENTRY_MAX_TOOL_CALLS = env.int("AGENTRY_MAX_TOOL_CALLS", default=200)
AGENTRY_MAX_TOTAL_TOKENS = env.int("AGENTRY_MAX_TOTAL_TOKENS", default=0)
AGENTRY_MAX_MODEL_TIMEOUT = env.float("AGENTRY_MAX_MODEL_TIMEOUT", default=300.0)
# Tokens a turn reserves from each `block` budget covering it (at most the
# budget's remainder); the reservation is the turn's token limit (usage/budgets.py).
AGENTRY_TURN_RESERVATION = env.int("AGENTRY_TURN_RESERVATION", default=50_000)
# Model strings agents may use: comma-separated globs (`openai:*,anthropic:claude-*`);
# empty allows every provider pydantic-ai knows. The offline model and the
# server's AGENTRY_DEFAULT_MODEL are always allowed. pydantic-ai's `test` model
# answers with canned text, so only development (DEBUG) or a test run that asks
# for it may use it; unset follows DEBUG.
AGENTRY_ALLOWED_MODELS = env.list("AGENTRY_ALLOWED_MODELS", default=[])
AGENTRY_ALLOW_TEST_MODEL = env.bool("AGENTRY_ALLOW_TEST_MODEL", default=None)
AGENTRY_MAX_WS_FRAME_BYTES = env.int("AGENTRY_MAX_WS_FRAME_BYTES", default=1024 * 1024)
AGENTRY_MARKETPLACE_MODERATION = env.bool(
    "AGENTRY_MARKETPLACE_MODERATION", default=False
)
AGENTRY_SERVICE_NAME = env.str("AGENTRY_SERVICE_NAME", default="agentry")

# --- internationalisation -----------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- security -----------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# TLS is terminated by the proxy in front of daphne; these follow the scheme
# the deployment actually serves (see docs/deployment.md).
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if env.bool("BEHIND_TLS_PROXY", default=False)
    else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Health probes reach each process directly over plain HTTP (the Dockerfile's
# HEALTHCHECK, load balancers); a redirect to HTTPS would fail them.
SECURE_REDIRECT_EXEMPT = [r"^health/?$"]
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0

# --- observability (docs/observability.md) ------------------------------------

# OpenTelemetry traces go over OTLP/HTTP to this collector when set (the
# exporter also reads the other standard OTEL_EXPORTER_OTLP_* variables).
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
# Prompts, answers and tool arguments stay out of spans unless this is on.
AGENTRY_TRACE_CONTENT = env.bool("AGENTRY_TRACE_CONTENT", default=False)
# `GET /metrics` answers 404 unless set; then it wants `Bearer <token>`.
AGENTRY_METRICS_TOKEN = env.str("AGENTRY_METRICS_TOKEN", default="")
# Shared by the processes of one deployment so their metrics add up; read by
# prometheus_client itself (observability/metrics.py).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")

# --- logging ------------------------------------------------------------------

LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be `plain` or `json`.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "observability.logs.JsonFormatter"},
    },
    # Request, user, session, execution and trace ids on every record.
    "filters": {"context": {"()": "observability.logs.ContextFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "httpx": {"level": "WARNING"},
    },
}

"""Ackly settings, read from the environment.

Defaults make a fresh checkout run (SQLite, in-memory channel layer, DEBUG on).
With DEBUG off, SECRET_KEY and ALLOWED_HOSTS must be given or start-up fails.
"""

import os
import re
import tempfile
from pathlib import Path
from typing import Any, overload
from urllib.parse import parse_qsl, unquote, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: str | None = None) -> str | None: ...
def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)

_DEV_SECRET = "django-insecure-ackly-development-only-never-in-production"
_secret_key = env_str("SECRET_KEY", _DEV_SECRET if DEBUG else None)
if _secret_key is None:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
SECRET_KEY = _secret_key
if not DEBUG and (SECRET_KEY == _DEV_SECRET or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured("SECRET_KEY must be a real secret of 50+ characters in production")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "ackly",
    "billing",
    "workspaces",
    "sources",
    "ingest",
    "django_tasks",
    "django_tasks_db",
    "alerts",
    "stats",
]

MIDDLEWARE = [
    # GET /healthz and /readyz, before the Host check, the HTTPS redirect and sessions.
    "ackly.health.HealthMiddleware",
    # Counts requests by route, executor and status; answers GET /metrics (ackly/metrics.py).
    "ackly.metrics.MetricsMiddleware",
    "ackly.requestid.RequestIdMiddleware",
    # JSON envelope for an exception in any view under /api/, DEBUG or not.
    "ackly.middleware.ApiExceptionMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every page, error pages included (ackly/csp.py).
    "ackly.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Idle timeout renewal and the absolute session age (ackly/sessions.py).
    "ackly.sessions.SessionTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# What API paths run through instead (ackly/handlers.py): request ids, the JSON envelope for
# any exception, the security headers, Content-Length (CommonMiddleware; without it servers
# answer chunked). Bearer keys and csrf_exempt views need nothing else.
API_MIDDLEWARE = [
    # GET /healthz and /readyz, before the Host check, the HTTPS redirect and sessions.
    "ackly.health.HealthMiddleware",
    # Counts requests by route, executor and status; answers GET /metrics (ackly/metrics.py).
    "ackly.metrics.MetricsMiddleware",
    "ackly.requestid.RequestIdMiddleware",
    "ackly.middleware.ApiExceptionMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ackly.urls"
WSGI_APPLICATION = "ackly.wsgi.application"
ASGI_APPLICATION = "ackly.asgi.application"

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

# --- Database -------------------------------------------------------------------------------
# SQLite by default. DATABASE_URL selects PostgreSQL through psycopg 3 and Django's connection
# pool: persistent CONN_MAX_AGE connections leak under Daphne's thread-per-request model, and a
# fresh connection per request costs ~9x in throughput, so the pool is the only sane choice.
DATABASE_URL = env_str("DATABASE_URL")
# Every SQLite database, the default file or one named by DATABASE_URL=sqlite:///path:
# IMMEDIATE takes the write lock when a transaction starts, so concurrent writers queue up
# (timeout) instead of failing with "database is locked" on lock upgrade.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
    if _db["ENGINE"] == "django.db.backends.sqlite3":
        _db["OPTIONS"] = {**SQLITE_OPTIONS, **_db.get("OPTIONS", {})}
    if _db["ENGINE"] == "django.db.backends.postgresql":
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DB_POOL_MIN", 2),
            "max_size": env_int("DB_POOL_MAX", 20),
            # Seconds a request waits for a connection. Past 3 s it is failing anyway; while
            # PostgreSQL is down a longer wait only holds a thread per request (measured in
            # tests/reliability/test_faults.py).
            "timeout": env_int("DB_POOL_TIMEOUT", 3),
        }
    DATABASES = {"default": _db}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": SQLITE_OPTIONS,
            # A file (not shared memory) so threaded tests see real locking behaviour; one per
            # process so parallel test runs never share it.
            "TEST": {"NAME": os.path.join(tempfile.gettempdir(), f"ackly-test-{os.getpid()}.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The event-type indexes carry other columns (INCLUDE) so that PostgreSQL can filter inside
# them (ingest.0008); SQLite builds them without those columns, which is what it should do,
# and Django's check would say so on every command.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# --- Cache, channel layer -------------------------------------------------------------------
# REDIS_URL makes rate limits, key look-ups and the channel layer shared across processes.
# Without it everything is per process, which is right for the one-process default.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            # A call on an unreachable Redis answers as a miss and logs (ackly/resilient_cache.py).
            "BACKEND": "ackly.resilient_cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "ackly",
            # A dead or stalled Redis costs at most this per call, not redis-py's 5 s default.
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.5},
        },
    }
    # Pub/sub: one PUBLISH per broadcast and one subscription per group per process, fanned
    # out to the process's sockets in memory. The list-based RedisChannelLayer pushed a copy
    # per socket and silently dropped them past 100 queued per socket (capacity): 38 % of
    # deliveries were lost with 50 sockets in `make bench`. A socket that was not listening
    # misses messages either way; the page catches up over HTTP (SPEC §6).
    CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "ackly:ch"},
        },
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Key and plan look-ups are cached only in a cache every process shares: an in-process cache
# could not be told by `manage.py revokekey` (another process) that a key was revoked.
CACHES["auth"] = CACHES["default"] if REDIS_URL else {
    "BACKEND": "django.core.cache.backends.dummy.DummyCache"
}
# Every change drops the entries at once; the TTL only bounds a stale entry that survived a
# Redis outage during a revocation (docs/reliability.md). A miss costs one indexed query.
AUTH_CACHE_SECONDS = env_int("AUTH_CACHE_SECONDS", 60)
# POST /api/ingest's common case on the event loop, many requests per commit
# (ingest/fastlane.py). Only under an ASGI server with PostgreSQL and REDIS_URL; 0 sends every
# request through the per-request pipeline.
INGEST_FAST_LANE = env_bool("INGEST_FAST_LANE", True)

# --- Limits (SPEC §3–§5) ----------------------------------------------------------------------
INGEST_MAX_BODY_BYTES = 1024 * 1024
INGEST_MAX_METADATA_BYTES = 64 * 1024
V1_MAX_BATCH = 500
V1_MAX_METADATA_BYTES = 16 * 1024
V1_MAX_FUTURE_SECONDS = 24 * 3600
V1_MAX_DURATION_SECONDS = 86400
V1_MAX_METRICS = 100
JSON_MAX_DEPTH = 64
IDEMPOTENCY_KEY_MAX_LENGTH = 200
IDEMPOTENCY_WINDOW_SECONDS = 10 * 60
KEY_LAST_USED_INTERVAL_SECONDS = 60
RATELIMIT_WINDOW_SECONDS = 1
PURGE_BATCH_SIZE = env_int("PURGE_BATCH_SIZE", 5000)
# The share of its time manage.py purge_expired spends deleting: after each batch it sleeps
# (100 - this) / this times as long as the batch took (ingest.retention).
# Both ranges are checked where the purge reads them (ingest.retention.Batches), naming the setting.
PURGE_DUTY_PERCENT = env_int("PURGE_DUTY_PERCENT", 25)
# How often the worker merges the search indexes' pending lists, in milliseconds (0: never, and
# ingest requests merge them when full); workspaces/search_upkeep.py.
SEARCH_MERGE_MS = env_int("SEARCH_MERGE_MS", 1000)
# Refused requests kept per source behind the rejections panel (ingest.rejections).
REJECTED_REQUESTS_PER_SOURCE = env_int("REJECTED_REQUESTS_PER_SOURCE", 100)
# GET /readyz: how long the database and Redis each get to answer before the probe says 503.
READY_TIMEOUT_SECONDS = env_int("READY_TIMEOUT_SECONDS", 2)
# Request bodies past this are refused by Django itself (the ingest guard answers first).
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES
# Public base URL for absolute links (docsUrl); taken from the request when unset.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL")

# --- Alerts (docs/alerts.md) ------------------------------------------------------------------
# The delivery queue: django-tasks with its ORM backend, worked by `manage.py worker`.
# TASKS_BACKEND=django_tasks.backends.immediate.ImmediateBackend runs a delivery in the caller
# instead (some tests); the worker needs the database backend.
TASKS = {
    "default": {
        "BACKEND": env_str("TASKS_BACKEND", "django_tasks_db.DatabaseBackend"),
        "QUEUES": ["alerts"],
    }
}
# Outbound notifications may reach loopback/private/link-local addresses only with this on
# (tests, local receivers); the check runs when a channel is saved and again on every send.
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
# Webhook and Slack channels may use plain http:// only with this on (local receivers in
# development and tests): otherwise https:// is required when saved and again on every send.
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", False)
# How often the worker looks for new events and due timers, in milliseconds.
ALERTS_POLL_MS = env_int("ALERTS_POLL_MS", 500)
# Rejections and quota rules, reminders and the sweep of lost deliveries run this often.
ALERTS_AGGREGATE_SECONDS = env_int("ALERTS_AGGREGATE_SECONDS", 5)
# Each pass re-reads events received this long before the previous pass: longer than any ingest
# transaction (and any clock skew between servers), so a late commit is still seen.
ALERTS_LOOKBACK_SECONDS = env_int("ALERTS_LOOKBACK_SECONDS", 60)
# At most this many events of each API per pass: after a long stop the worker catches up in
# steps of bounded memory instead of reading everything at once.
ALERTS_MAX_ROWS_PER_PASS = env_int("ALERTS_MAX_ROWS_PER_PASS", 5000)
# Deliveries: each attempt's timeout; retries back off exponentially from the base (with jitter)
# on a network error, a 5xx or a 429, for at most ALERTS_RETRY_FOR_SECONDS.
ALERTS_DELIVERY_TIMEOUT_SECONDS = env_int("ALERTS_DELIVERY_TIMEOUT_SECONDS", 10)
ALERTS_RETRY_BASE_SECONDS = env_int("ALERTS_RETRY_BASE_SECONDS", 20)
ALERTS_RETRY_FOR_SECONDS = env_int("ALERTS_RETRY_FOR_SECONDS", 24 * 3600)
# An attempt claimed by a worker that died is taken over after this long.
ALERTS_DELIVERY_LEASE_SECONDS = env_int(
    "ALERTS_DELIVERY_LEASE_SECONDS", ALERTS_DELIVERY_TIMEOUT_SECONDS + 20
)
if ALERTS_POLL_MS < 10 or ALERTS_DELIVERY_LEASE_SECONDS <= ALERTS_DELIVERY_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        "ALERTS_POLL_MS must be at least 10 and ALERTS_DELIVERY_LEASE_SECONDS longer than the timeout"
    )
if ALERTS_MAX_ROWS_PER_PASS < 1:
    raise ImproperlyConfigured("ALERTS_MAX_ROWS_PER_PASS must be at least 1")

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]


# Rates as django-ratelimit reads them ("10/m", "30/h", "5/15m"), checked at start-up.
_RATE = re.compile(r"[1-9][0-9]*/[0-9]*[smhd]")


def env_rates(name: str, default: list[str]) -> list[str]:
    rates = env_list(name, default)
    for rate in rates:
        if not _RATE.fullmatch(rate):
            raise ImproperlyConfigured(f"{name} must be rates like 10/m or 30/h, got {rate!r}")
    return rates


def env_rate(name: str, default: str) -> str:
    rates = env_rates(name, [default])
    if len(rates) != 1:
        raise ImproperlyConfigured(f"{name} must be one rate like 10/m, got {rates!r}")
    return rates[0]


# Password guessing (workspaces/accounts.py; docs/decisions.md, "Sign-in throttle"). Attempts
# are counted per client address, and per username only for clients without a device cookie of
# that user (the back-off steps then hold a persistent guesser off that username for the rest of
# the hour, then of the day). A device cookie, set by a successful sign-in, carries its own
# budget: strangers' failures never lock a user out of the browsers they already use.
LOGIN_RATE_LIMIT = env_rate("LOGIN_RATE_LIMIT", "10/m")
LOGIN_BACKOFF_RATE_LIMITS = env_rates("LOGIN_BACKOFF_RATE_LIMITS", ["30/h", "100/d"])
LOGIN_DEVICE_RATE_LIMIT = env_rate("LOGIN_DEVICE_RATE_LIMIT", "5/m")  # then the back-off steps
LOGIN_DEVICE_COOKIE_NAME = "ackly_device"
LOGIN_DEVICE_COOKIE_DAYS = env_int("LOGIN_DEVICE_COOKIE_DAYS", 365)
# How many reverse proxies of the operator's own append to X-Forwarded-For in front of the app
# (ackly/clientip.py). 0: no proxy, the header is ignored and the peer address is the client.
TRUSTED_PROXY_HOPS = env_int("TRUSTED_PROXY_HOPS", 0)
if TRUSTED_PROXY_HOPS < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_HOPS must be 0 or more")
# Every per-address limit (django-ratelimit's key="ip" included) reads the one rule.
RATELIMIT_IP_META_KEY = "ackly.clientip.client_ip"
# With Redis unreachable the count is unknown: let sign-ins through (passwords still checked)
# rather than lock every user out with a false "too many attempts" (docs/reliability.md).
RATELIMIT_FAIL_OPEN = True
# Key guessing: unknown (well-formed) API keys per client address, "N/s", "N/m", "N/h" or "N/d";
# past it the address is answered 429 before a key is looked up in the database (sources/auth.py).
AUTH_FAILURE_LIMIT = env_str("AUTH_FAILURE_LIMIT", "20/m")
_failures, _, _per = AUTH_FAILURE_LIMIT.partition("/")
if not (_failures.isdigit() and int(_failures) > 0 and _per in {"s", "m", "h", "d"}):
    raise ImproperlyConfigured(f"AUTH_FAILURE_LIMIT must look like 20/m, got {AUTH_FAILURE_LIMIT!r}")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Sign-up is email first (workspaces/accounts.py): the form answers "check your inbox" whether
# or not the address has an account, and only the emailed link leads to choosing a username.
SIGNUP_RATE_LIMIT = env_rate("SIGNUP_RATE_LIMIT", "5/h")  # sign-up POSTs per client address
SIGNUP_EMAIL_RATE_LIMIT = env_rate("SIGNUP_EMAIL_RATE_LIMIT", "3/h")  # emails to one address
SIGNUP_FINISH_RATE_LIMIT = env_rate("SIGNUP_FINISH_RATE_LIMIT", "20/h")  # link-page POSTs
SIGNUP_LINK_MAX_AGE_SECONDS = env_int("SIGNUP_LINK_MAX_AGE_SECONDS", 3 * 24 * 3600)
# Password reset (workspaces/accounts.py): requests per client address, emails to one address.
PASSWORD_RESET_RATE_LIMIT = env_rate("PASSWORD_RESET_RATE_LIMIT", "5/h")
PASSWORD_RESET_EMAIL_RATE_LIMIT = env_rate("PASSWORD_RESET_EMAIL_RATE_LIMIT", "3/h")
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600)  # the link's validity, seconds
# Invitations to a workspace (docs/teams.md): how long the emailed link works, and how many
# invitations one workspace may send per hour (each is an email to an address an admin typed).
INVITATION_MAX_AGE_DAYS = env_int("INVITATION_MAX_AGE_DAYS", 7)
INVITATION_RATE_LIMIT = env_rate("INVITATION_RATE_LIMIT", "30/h")
# "Send test" on an alert channel (alerts/views.py): tests one channel may be sent, whoever sends them.
CHANNEL_TEST_RATE_LIMIT = env_rate("CHANNEL_TEST_RATE_LIMIT", "5/m")


# Email (the sign-up links). EMAIL_URL sets the SMTP server; EMAIL_BACKEND any other backend.
def email_url_settings(url: str) -> dict[str, object]:
    """Django's SMTP settings from EMAIL_URL: smtp://user:pass@host:587 or smtps://…:465.

    A dozen lines of urllib instead of a package: dj-email-url, the usual one, has had no
    release since 1.0.6 (2022), and django-environ would be a second settings system here.
    `smtp://` upgrades with STARTTLS (add `?starttls=0` for a local relay without TLS);
    `smtps://` is TLS from the first byte. User and password are percent-decoded.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ImproperlyConfigured(f"EMAIL_URL must be smtp://… or smtps://…, got {url!r}")
    query = dict(parse_qsl(parts.query))
    starttls = query.pop("starttls", "1")
    if query or starttls not in ("0", "1"):
        raise ImproperlyConfigured(f"EMAIL_URL takes only ?starttls=0 or 1, got {parts.query!r}")
    implicit_tls = parts.scheme == "smtps"
    return {
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": parts.port or (465 if implicit_tls else 587),
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_SSL": implicit_tls,
        "EMAIL_USE_TLS": not implicit_tls and starttls == "1",
    }


# Without EMAIL_URL or EMAIL_BACKEND: the console when DEBUG, else Django's own default (SMTP to
# localhost:25, a local relay), so a DEBUG=0 process starts without mail configured.
EMAIL_URL = env_str("EMAIL_URL")
if EMAIL_URL:
    globals().update(email_url_settings(EMAIL_URL))
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_URL or not DEBUG
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH")  # for django.core.mail.backends.filebased
EMAIL_TIMEOUT = 10  # seconds: a stalled mail server must not hold a request thread for minutes
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Ackly <noreply@localhost>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where collectstatic writes and, with DEBUG off, where the servers read the manifest from.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Serve straight from the finders when collectstatic has not run (make run, tests).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security (production) ------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# A dashboard session ends after this long without a request (the expiry slides, renewed at
# most once a minute) and this long after sign-in whatever the activity (ackly/sessions.py).
SESSION_IDLE_TIMEOUT_SECONDS = env_int("SESSION_IDLE_TIMEOUT_SECONDS", 8 * 3600)
SESSION_MAX_AGE_SECONDS = env_int("SESSION_MAX_AGE_SECONDS", 14 * 24 * 3600)
if not 120 <= SESSION_IDLE_TIMEOUT_SECONDS <= SESSION_MAX_AGE_SECONDS:
    raise ImproperlyConfigured(
        "SESSION_IDLE_TIMEOUT_SECONDS must be at least 120 and at most SESSION_MAX_AGE_SECONDS"
    )
SESSION_COOKIE_AGE = SESSION_IDLE_TIMEOUT_SECONDS
CSRF_COOKIE_HTTPONLY = False
# A stale form's 403 in the site's layout; a stale sign-in form gets the login page again.
CSRF_FAILURE_VIEW = "workspaces.accounts.csrf_failure"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- DRF, schema ----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "ackly.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Ackly ingest API",
    "DESCRIPTION": "The ingest API (POST /api/ingest) and the developer API (/api/v1/ingest/...).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The API's paths as SPEC writes them (the routes also accept a trailing slash).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "ingest.schema.canonical_paths",
    ],
    "ENUM_NAME_OVERRIDES": {
        "ErrorCode": "ingest.schema.ERROR_CODE_CHOICES",
        "Category": "ingest.models.Category",
        "EventStatus": "ingest.models.EventStatus",
    },
    "TAGS": [
        {"name": "Ingest API", "description": "POST /api/ingest: one outcome event per call."},
        {"name": "Developer API (v1)", "description": "Batches of timeline events, snapshots."},
    ],
}

# --- Metrics (docs/deployment.md, "Metrics") ---------------------------------------------------
# GET /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, the path is a 404.
METRICS_TOKEN = env_str("METRICS_TOKEN")
if METRICS_TOKEN is not None and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be 16+ characters (e.g. openssl rand -hex 32)")
# Several processes (uvicorn --workers, Daphne) count in prometheus-client's files in this
# directory, read by the library itself when first imported; it must exist (the library would
# write into the working directory when the variable is empty).
_METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _METRICS_DIR is not None and not os.path.isdir(_METRICS_DIR):
    raise ImproperlyConfigured("PROMETHEUS_MULTIPROC_DIR must name an existing directory")

# --- Logging --------------------------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line (python-json-logger) for log shippers; plain text
# otherwise. Every line carries the request id and, once a key authenticated it, the workspace
# and source ids; keys and bearer credentials are scrubbed from every line (ackly/scrub.py).
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "ackly.requestid.RequestIdLogFilter"}},
    "formatters": {
        "plain": {
            "()": "ackly.scrub.ScrubbingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        "json": {
            "()": "ackly.scrub.ScrubbingJsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s %(request_id)s %(workspace_id)s %(source_id)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601 in UTC
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own console handler (DEBUG) would print each 4xx a second time: every
        # django.* line goes through the root handler above, once.
        "django": {"handlers": [], "level": env_str("LOG_LEVEL", "INFO"), "propagate": True},
        "django.server": {"level": "WARNING"},
        # uvicorn's own lines (an exception that escapes the application among them) go through
        # the same handler, so they are formatted and scrubbed like every other line.
        "uvicorn": {"handlers": ["console"], "propagate": False},
        "uvicorn.error": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": True},
        # Daphne's access log would print the Authorization-free request line only, but keep it quiet.
        "daphne": {"level": "WARNING"},
        # Apprise's own messages may quote a notification URL, tokens and all; an attempt's
        # outcome is logged by the alerts app instead (docs/alerts.md).
        "apprise": {"level": "CRITICAL"},
    },
}

# --- Error reporting ----------------------------------------------------------------------------
# Errors go to Sentry when SENTRY_DSN is set (ackly/sentry.py scrubs keys and credentials).
SENTRY_DSN = env_str("SENTRY_DSN")
if SENTRY_DSN:
    from ackly.sentry import init as _sentry_init

    _sentry_init(
        SENTRY_DSN,
        environment=env_str("SENTRY_ENVIRONMENT", "development" if DEBUG else "production"),
        traces_sample_rate=env_int("SENTRY_TRACES_PERCENT", 0) / 100,
    )

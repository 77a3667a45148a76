"""LeadFlow settings: one file, every value from the environment.

Defaults are chosen so that a laptop with nothing configured runs the app on an
embedded SQLite file with Celery tasks executed in-process. Production sets
``DEBUG=0`` (the default), ``SECRET_KEY``, ``DATABASE_URL`` and
``CELERY_BROKER_URL``; a missing secret stops the process at start-up.
"""

import ipaddress
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from leadflow.env import env_bool, env_int, env_list, env_str
from leadflow.logconfig import LOG_FORMATS, configure_structlog
from leadflow.metrics_files import multiprocess_dir_ensure

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Production (DEBUG=0) needs a long random secret: "
            'generate one with `python -c "import secrets; print(secrets.token_urlsafe(50))"`, '
            "or set DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-only-used-when-DEBUG-is-on"  # noqa: S105
# Former keys, still accepted (sessions, password resets, stored secrets: README, "Rotating
# SECRET_KEY"). Comma-separated.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_prometheus",
    "django_structlog",
    "corsheaders",
    "leadflow.leads",
    "scoring",
    "handoff",
    # The project package, the top layer: pages across apps and project-wide commands.
    "leadflow",
]

MIDDLEWARE = [
    # First and last (but for axes): django-prometheus times every request (/metrics).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # The request id (X-Request-ID in, or a new one; echoed out), then django-structlog binds
    # it to every log line of the request and to the tasks the request enqueues.
    "leadflow.middleware.RequestIdMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    # Before anything that answers (the body limit's 413 must reach a browser SDK too); it
    # only acts on /api/segment/ (CORS_URLS_REGEX).
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "leadflow.middleware.ApiBodyLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "leadflow.middleware.ContentSecurityPolicyMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes requires: it turns a lockout into our 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "leadflow.urls"
WSGI_APPLICATION = "leadflow.wsgi.application"

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
                "handoff.context_processors.notifications",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# No DATABASE_URL: an SQLite file in the project folder (or SQLITE_PATH).
# DB_CONN_MAX_AGE: seconds a connection is kept after its request or task for the next one.
# 0 closes it at the end of each: the only safe value where each request has a thread of its
# own (runserver), as every thread would keep its own connection until PostgreSQL runs out.
# Processes that serve on a fixed set of threads opt in: gunicorn (gunicorn.conf.py) and the
# Celery worker (docker-compose.yml). A kept connection is checked before its first use in a
# request or task, so one that a database restart broke is replaced instead of failing it.
_database_url = env_str("DATABASE_URL")
if _database_url:
    DATABASES = {
        "default": dj_database_url.parse(
            _database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0, minimum=0), conn_health_checks=True
        )
    }
    # django-prometheus's wrapper of the same backend counts queries, their time and errors.
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
else:
    DATABASES = {
        "default": {
            "ENGINE": "django_prometheus.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # Concurrent requests and the in-process tasks share the file.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Production serves hashed, compressed files after `collectstatic`.
    "staticfiles": {
        "BACKEND": env_str(
            "STATICFILES_BACKEND",
            "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG else "leadflow.storage.StaticStorage",
        )
    },
}

# The admin's address: somewhere other than the well-known /admin/ keeps it out of
# drive-by scans (it has the same lockout as /login/ either way). A path, with its slash.
ADMIN_PATH = env_str("ADMIN_PATH", "admin/").strip().lstrip("/")
if not ADMIN_PATH.endswith("/") or ADMIN_PATH.startswith(("api/", "login/", "static/")):
    raise ImproperlyConfigured(
        f"ADMIN_PATH={ADMIN_PATH!r} must be a path ending with a slash, such as 'admin/' or 'backoffice-7f3a/', "
        "and must not be under api/, login/ or static/."
    )

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# --- Security -----------------------------------------------------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_X_FORWARDED_PROTO", False) else None
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Probes and the metrics scraper talk plain HTTP to the process, inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_HTTPONLY = True
# The ingest endpoint takes up to 1000 events; give it room but keep a ceiling.
INGEST_MAX_BODY_BYTES = env_int("INGEST_MAX_BODY_BYTES", 5 * 1024 * 1024, minimum=1024)
INGEST_MAX_BATCH = 1000
# Segment-compatible ingest: how many dropped messages are kept per source for the drops page.
SEGMENT_DROPS_KEPT = env_int("SEGMENT_DROPS_KEPT", 1000, minimum=1)
# Browser SDKs (analytics.js, RudderStack's JavaScript SDK) post to /api/segment/ from the
# website: the origins allowed to, "*" for any (the write key, public in a page anyway, is
# what authenticates). Cross-origin requests are allowed nowhere else, and never with cookies.
SEGMENT_ALLOWED_ORIGINS = env_list("SEGMENT_ALLOWED_ORIGINS", ["*"])
CORS_URLS_REGEX = r"^/api/segment/"
CORS_ALLOW_ALL_ORIGINS = "*" in SEGMENT_ALLOWED_ORIGINS
CORS_ALLOWED_ORIGINS = [] if CORS_ALLOW_ALL_ORIGINS else SEGMENT_ALLOWED_ORIGINS
CORS_ALLOW_METHODS = ("POST", "OPTIONS")
# The write key (Authorization), gzip bodies, analytics.js's retry count, RudderStack's anonymous id.
CORS_ALLOW_HEADERS = ("authorization", "content-type", "content-encoding", "x-retry-count", "anonymousid")
CORS_ALLOW_CREDENTIALS = False
# A 429 (the ingest quota) says when to retry; the SDKs read it.
CORS_EXPOSE_HEADERS = ("Retry-After",)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES

# --- Lockout and rate limits ------------------------------------------------------
# Behind a reverse proxy, how many proxies append to X-Forwarded-For: the client's address
# is then that many entries from the right. 0 (the default): REMOTE_ADDR, and the header is
# ignored, since a client can write anything in it. Used by the lockout and the throttles.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
# Login lockout (django-axes, on /login/ and the admin's login): after LOGIN_FAILURE_LIMIT
# failed attempts for one username, or from one address, further attempts are refused (429)
# until LOGIN_COOLOFF_MINUTES have passed since the last of them. Attempts are records in the
# database, so every process shares them; `manage.py axes_reset` lifts every lockout.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("LOGIN_LOCKOUT_ENABLED", True)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
# Each is its own count: one account from anywhere, and one address whatever the account.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "leadflow.throttling.client_address"
AXES_LOCKOUT_CALLABLE = "leadflow.accounts.lockout_response"
# A row per successful login is personal data we have no use for.
AXES_DISABLE_ACCESS_LOG = True
# The API (DRF throttles, counted in the cache below; 0 switches one off):
# - each ingest key may send INGEST_RATE_LIMIT requests per INGEST_RATE_WINDOW_SECONDS.
#   The default, 1000 requests a second, is far above bench/ingest.py at full speed
#   (batches of 1000 events: about 20 requests a second on the development machine);
# - an address whose keys or tokens fail API_AUTH_FAILURE_LIMIT times in a window of
#   API_AUTH_FAILURE_WINDOW_SECONDS is refused until the window ends.
INGEST_RATE_LIMIT = env_int("INGEST_RATE_LIMIT", 60_000, minimum=0)
INGEST_RATE_WINDOW_SECONDS = env_int("INGEST_RATE_WINDOW_SECONDS", 60, minimum=1)
API_AUTH_FAILURE_LIMIT = env_int("API_AUTH_FAILURE_LIMIT", 30, minimum=0)
API_AUTH_FAILURE_WINDOW_SECONDS = env_int("API_AUTH_FAILURE_WINDOW_SECONDS", 300, minimum=1)
# The password-reset form: at most PASSWORD_RESET_LIMIT requests per PASSWORD_RESET_WINDOW_SECONDS
# from one address, and as many for one e-mail address (429 past either; 0 switches it off).
PASSWORD_RESET_LIMIT = env_int("PASSWORD_RESET_LIMIT", 5, minimum=0)
PASSWORD_RESET_WINDOW_SECONDS = env_int("PASSWORD_RESET_WINDOW_SECONDS", 3600, minimum=1)

# --- Privacy -------------------------------------------------------------------------
# The key of the hashes the suppression list and the erasure log keep instead of e-mail
# addresses (HMAC-SHA256). Empty: the SECRET_KEY. Set one of its own before rotating the
# SECRET_KEY: a new key lifts every suppression.
PRIVACY_HASH_KEY = env_str("PRIVACY_HASH_KEY")
# The nurture segments (and their leads) are a snapshot in the cache, shared by every
# process: at a million leads they take seconds to compute (README, "Nurture"). Older than
# this, it is refreshed in the background (and shown meanwhile). 0: computed at every request.
NURTURE_CACHE_SECONDS = env_int("NURTURE_CACHE_SECONDS", 300, minimum=0)
# Retention (manage.py apply_retention, and the beat task daily): events that occurred more
# than RETENTION_EVENTS_MONTHS months ago are deleted and their leads rescored; leads without
# an e-mail or a name, never qualified, with no activity for RETENTION_ANONYMOUS_DAYS days
# (anonymous visitors) are deleted. 0 (the default) keeps them for ever.
RETENTION_EVENTS_MONTHS = env_int("RETENTION_EVENTS_MONTHS", 0, minimum=0)
RETENTION_ANONYMOUS_DAYS = env_int("RETENTION_ANONYMOUS_DAYS", 0, minimum=0)

# --- Email and notifications ---------------------------------------------------
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
# Production never writes e-mails (addresses, lead names, notes) into the logs: Django's
# console backend, which prints each message whole, gives way to one that logs a count.
if not DEBUG and EMAIL_BACKEND == "django.core.mail.backends.console.EmailBackend":
    EMAIL_BACKEND = "leadflow.logredact.SummaryConsoleEmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "LeadFlow <leadflow@localhost>")
NOTIFY_WEBHOOK_URL = env_str("NOTIFY_WEBHOOK_URL")
NOTIFY_WEBHOOK_SECRET = env_str("NOTIFY_WEBHOOK_SECRET")

# --- Handoff -------------------------------------------------------------------
HANDOFF_SLA_HOURS = env_int("HANDOFF_SLA_HOURS", 24, minimum=1)
HANDOFF_CLAIM_TTL_HOURS = env_int("HANDOFF_CLAIM_TTL_HOURS", 4, minimum=1)
HANDOFF_MAX_OPEN_CLAIMS = env_int("HANDOFF_MAX_OPEN_CLAIMS", 10, minimum=1)
# Suggested points (handoff.suggest): the decided handoffs (accepted + rejected) a fit needs at
# least, and at least this many of each verdict.
SUGGEST_MIN_DECIDED = env_int("SUGGEST_MIN_DECIDED", 50, minimum=10)
SUGGEST_MIN_PER_CLASS = env_int("SUGGEST_MIN_PER_CLASS", 10, minimum=5)
# Score quality: a rule's lift is "not enough data" below this many decided handoffs where
# it fired, and as many where it did not.
QUALITY_MIN_COUNT = env_int("QUALITY_MIN_COUNT", 20, minimum=1)
# Prefix of the links in emails and webhooks (e.g. https://leadflow.example.com); empty: relative links.
NOTIFY_BASE_URL = env_str("NOTIFY_BASE_URL")
NOTIFY_WEBHOOK_TIMEOUT_SECONDS = env_int("NOTIFY_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
# Webhook subscriptions (handoff.webhooks): a failed delivery is retried with exponential
# backoff for WEBHOOK_RETRY_HOURS; an endpoint failing that long is disabled and its owner told.
# Subscription URLs resolving to private, loopback or link-local addresses are refused
# unless WEBHOOK_ALLOW_PRIVATE_URLS (an intranet receiver; tests).
WEBHOOK_RETRY_HOURS = env_int("WEBHOOK_RETRY_HOURS", 24, minimum=1)
WEBHOOK_DISABLE_AFTER_HOURS = env_int("WEBHOOK_DISABLE_AFTER_HOURS", 24, minimum=1)
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", False)
if NOTIFY_WEBHOOK_URL and not NOTIFY_WEBHOOK_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"NOTIFY_WEBHOOK_URL={NOTIFY_WEBHOOK_URL!r} must be an http:// or https:// URL.")
if NOTIFY_WEBHOOK_URL and not NOTIFY_WEBHOOK_SECRET:
    raise ImproperlyConfigured(
        "NOTIFY_WEBHOOK_URL is set but NOTIFY_WEBHOOK_SECRET is not: webhooks are signed, set a long random secret."
    )

# --- Celery ----------------------------------------------------------------------
# No broker configured: tasks run eagerly in the web process (embedded default).
_broker_url = env_str("CELERY_BROKER_URL")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not _broker_url)
CELERY_BROKER_URL = _broker_url or "memory://"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360, minimum=1)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# A broker outage must not hang a request: give up publishing quickly; the
# dirty flag and the sweeper make sure the work is done later.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
# The sweep finds work a lost message or a dead worker left behind: leads still
# flagged for rescoring, rescore runs left queued or whose heartbeat stopped.
SWEEP_INTERVAL_SECONDS = env_int("SWEEP_INTERVAL_SECONDS", 60, minimum=1)
SWEEP_GRACE_SECONDS = env_int("SWEEP_GRACE_SECONDS", 30, minimum=0)
# A full rescore commits its progress every RESCORE_CHUNK_SIZE leads (by id); a
# running one whose heartbeat is older than RESCORE_STALE_AFTER_SECONDS lost its
# worker and is resumed by the sweep, up to RESCORE_MAX_ATTEMPTS starts in all.
RESCORE_CHUNK_SIZE = env_int("RESCORE_CHUNK_SIZE", 20_000, minimum=1)
RESCORE_STALE_AFTER_SECONDS = env_int("RESCORE_STALE_AFTER_SECONDS", 600, minimum=1)
RESCORE_MAX_ATTEMPTS = env_int("RESCORE_MAX_ATTEMPTS", 5, minimum=1)
# Imports of the import page (leadflow.leads.imports): the largest file accepted, the rows
# per committed chunk (the unit of progress and resumption), and like a
# rescore, a running import whose heartbeat is older than IMPORT_STALE_AFTER_SECONDS is
# resumed by the sweep, up to IMPORT_MAX_ATTEMPTS starts in all.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 20 * 1024 * 1024, minimum=1)
IMPORT_CHUNK_ROWS = env_int("IMPORT_CHUNK_ROWS", 500, minimum=1)
IMPORT_STALE_AFTER_SECONDS = env_int("IMPORT_STALE_AFTER_SECONDS", 300, minimum=1)
IMPORT_MAX_ATTEMPTS = env_int("IMPORT_MAX_ATTEMPTS", 5, minimum=1)
IMPORT_DRAFT_DAYS = env_int("IMPORT_DRAFT_DAYS", 7, minimum=1)  # an upload nobody started is deleted
# RESCORE_PARALLEL=1 splits a full rescore on PostgreSQL into chunks of RESCORE_CHUNK_SIZE
# lead ids that the workers score side by side (a Celery group). Off by default: a chunk
# finds its leads' events by index all over the table, so on 2 cores one task's single pass
# over the events is as fast on a first publish and faster on a refresh (bench/RESULTS.md,
# "1 worker and 2 workers"); it pays with 4 or more worker cores.
RESCORE_PARALLEL = env_bool("RESCORE_PARALLEL", False)
# Queues: real-time scoring, full rescores and notifications each have a queue of their own,
# so that a 1M-lead rescore never delays a demo request's path to sales, nor a slow webhook
# receiver the scoring. Periodic work (sweeps, claim expiry, SLA) stays on the default queue,
# "celery". A worker started without -Q consumes every queue (CELERY_TASK_QUEUES lists them:
# `make run`, one-worker deployments); a deployment that scales runs workers per queue
# (`celery -A leadflow worker -Q scoring`, docker-compose.yml). Setting a queue's variable to
# "celery" folds it back into the default queue.
CELERY_TASK_DEFAULT_QUEUE = "celery"
SCORING_QUEUE = env_str("SCORING_QUEUE") or "scoring"
RESCORE_QUEUE = env_str("RESCORE_QUEUE") or "rescore"
NOTIFICATIONS_QUEUE = env_str("NOTIFICATIONS_QUEUE") or "notifications"
# Hand-raises take a fast lane (leadflow/leads/scoring_requests.py): their own task, on
# SCORING_INTENT_QUEUE (a worker of its own scores them at once), and every running pass
# takes them between two chunks. The rest of the scoring is coalesced into passes over the
# flagged leads, SCORING_PASS_CHUNK leads at a time, each pass at most SCORING_PASS_SECONDS
# (then it enqueues the next); a pending pass is remembered for SCORING_PASS_PENDING_SECONDS.
SCORING_INTENT_QUEUE = env_str("SCORING_INTENT_QUEUE") or SCORING_QUEUE
SCORING_PASS_CHUNK = env_int("SCORING_PASS_CHUNK", 1000, minimum=1)
SCORING_PASS_SECONDS = env_int("SCORING_PASS_SECONDS", 60, minimum=1)
SCORING_PASS_PENDING_SECONDS = env_int("SCORING_PASS_PENDING_SECONDS", 120, minimum=1)
CELERY_TASK_ROUTES = {
    "scoring.tasks.score_leads": {"queue": SCORING_QUEUE},
    "scoring.tasks.score_flagged": {"queue": SCORING_QUEUE},
    "scoring.tasks.score_intent": {"queue": SCORING_INTENT_QUEUE},
    "scoring.tasks.rescore_all": {"queue": RESCORE_QUEUE},
    "scoring.tasks.rescore_chunk": {"queue": RESCORE_QUEUE},
    # A lead import is bulk work too: beside the rescores, not before beat's sweeps.
    "leadflow.leads.tasks.import_leads_job": {"queue": RESCORE_QUEUE},
    "leadflow.leads.tasks.refresh_nurture_segments": {"queue": RESCORE_QUEUE},
    # Every webhook delivery task of the handoff (today's deliver_webhook, and the
    # subscriptions' deliveries named deliver_*): notifications wait for slow receivers.
    "handoff.tasks.deliver_*": {"queue": NOTIFICATIONS_QUEUE},
    "handoff.tasks.sweep_webhooks": {"queue": NOTIFICATIONS_QUEUE},
}
CELERY_TASK_QUEUES = [
    Queue(name)
    for name in dict.fromkeys(
        [CELERY_TASK_DEFAULT_QUEUE, SCORING_QUEUE, SCORING_INTENT_QUEUE, RESCORE_QUEUE, NOTIFICATIONS_QUEUE]
    )
]

# An account's roll-up score is the behaviour of its top ACCOUNT_TOP_CONTACTS contacts
# (by behaviour) plus its best fit (scoring/accounts.py).
ACCOUNT_TOP_CONTACTS = env_int("ACCOUNT_TOP_CONTACTS", 3, minimum=1)
SCORE_HISTOGRAM_MINUTES = env_int("SCORE_HISTOGRAM_MINUTES", 10, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "sweep-dirty-leads": {"task": "scoring.tasks.sweep_dirty", "schedule": timedelta(seconds=SWEEP_INTERVAL_SECONDS)},
    "refresh-decay": {"task": "scoring.tasks.refresh_decay", "schedule": timedelta(days=1)},
    "expire-claims": {"task": "handoff.tasks.expire_claims", "schedule": timedelta(minutes=1)},
    "flag-overdue-handoffs": {"task": "handoff.tasks.flag_overdue", "schedule": timedelta(minutes=1)},
    "sweep-webhooks": {"task": "handoff.tasks.sweep_webhooks", "schedule": timedelta(minutes=1)},
    "apply-retention": {"task": "leadflow.leads.tasks.apply_retention", "schedule": timedelta(days=1)},
    # The dashboard: its score distribution is a snapshot (one scan per scoring model, about
    # 1 s at 1M leads); the rollups' delta rows fold into one per key.
    "refresh-score-histograms": {
        "task": "leadflow.leads.tasks.refresh_score_histograms",
        "schedule": timedelta(minutes=SCORE_HISTOGRAM_MINUTES),
    },
    "compact-rollups": {"task": "leadflow.leads.tasks.compact_rollups", "schedule": timedelta(minutes=5)},
    "resume-import-jobs": {
        "task": "leadflow.leads.tasks.resume_import_jobs",
        "schedule": timedelta(seconds=SWEEP_INTERVAL_SECONDS),
    },
}

# --- Cache -----------------------------------------------------------------------
# The throttles' counters. Every web process must see the same counts, so production uses
# Redis: CACHE_URL (redis://host:6379/1), or else the broker's Redis when CELERY_BROKER_URL is
# a redis:// URL (its keys are prefixed, apart from Celery's). Without either (the embedded
# default: one process, tasks in-process) a per-process memory cache; with several gunicorn
# workers each would then count on its own, multiplying every limit. CACHE_URL=locmem://
# forces the memory cache.
_cache_url = env_str("CACHE_URL") or (_broker_url if _broker_url.startswith(("redis://", "rediss://")) else "")
if _cache_url.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": "leadflow",
            # A Redis outage must not hang requests: the throttles then let them through.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
elif _cache_url in ("", "locmem://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "leadflow"}}
else:
    raise ImproperlyConfigured(f"CACHE_URL={_cache_url!r} must be a redis:// or rediss:// URL, or locmem://.")

# --- API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "leadflow.leads.auth.BearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "leadflow.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # The per-ingest-key quota; failed authentications are limited in leadflow.leads.auth.
    "DEFAULT_THROTTLE_CLASSES": ["leadflow.leads.throttles.IngestKeyThrottle"],
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LeadFlow API",
    "DESCRIPTION": "Lead ingestion, explainable scoring and the sales handoff queue.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The errors every operation can answer (401, 403, 404, 413, 415…), declared once.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "leadflow.openapi.complete_schema"],
    "ENUM_NAME_OVERRIDES": {
        "StageEnum": "leadflow.leads.models.Stage",
        "HandoffStatusEnum": "handoff.models.HandoffStatus",
        "RejectReasonEnum": "handoff.models.RejectReason",
        "GradeEnum": "scoring.models.GRADE_CHOICES",
        "OutcomeKindEnum": "leadflow.leads.models.OutcomeKind",
    },
}

# --- Health, metrics and logs (README: "Operating LeadFlow") ----------------------------
# /readyz: a worker of each of READINESS_WORKER_QUEUES (empty: every queue) must have beaten
# in the last READINESS_HEARTBEAT_MAX_AGE_SECONDS (workers beat every WORKER_HEARTBEAT_SECONDS),
# and the oldest lead flagged for rescoring must have waited at most
# READINESS_SCORING_LAG_SECONDS (0: reported, never a failure).
WORKER_HEARTBEAT_SECONDS = env_int("WORKER_HEARTBEAT_SECONDS", 15, minimum=1)
READINESS_HEARTBEAT_MAX_AGE_SECONDS = env_int("READINESS_HEARTBEAT_MAX_AGE_SECONDS", 60, minimum=1)
READINESS_WORKER_QUEUES = env_list("READINESS_WORKER_QUEUES", [])
READINESS_SCORING_LAG_SECONDS = env_int("READINESS_SCORING_LAG_SECONDS", 300, minimum=0)
if WORKER_HEARTBEAT_SECONDS >= READINESS_HEARTBEAT_MAX_AGE_SECONDS:
    raise ImproperlyConfigured(
        f"WORKER_HEARTBEAT_SECONDS={WORKER_HEARTBEAT_SECONDS} must be less than "
        f"READINESS_HEARTBEAT_MAX_AGE_SECONDS={READINESS_HEARTBEAT_MAX_AGE_SECONDS}, or /readyz fails between beats."
    )
# /metrics answers a request with `Authorization: Bearer <METRICS_TOKEN>` (when set), or from
# an address in METRICS_ALLOWED_ADDRESSES (addresses or networks; loopback by default), and
# nobody else (403). The address is the client's as leadflow.throttling reads it
# (TRUSTED_PROXY_COUNT). Several processes (gunicorn's workers, a prefork Celery worker's
# children) add up their counters through the files in PROMETHEUS_MULTIPROC_DIR
# (prometheus_client's multiprocess mode; an environment variable read at import, not a setting).
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_ADDRESSES = env_list("METRICS_ALLOWED_ADDRESSES", ["127.0.0.1", "::1"])
for _network in METRICS_ALLOWED_ADDRESSES:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError as error:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_ADDRESSES: {_network!r} is neither an address nor a network (10.0.0.0/8): {error}"
        ) from None
# A Celery worker serves its own counters (task durations, webhook deliveries) on this port
# (0: not served; in-process tasks count in the web process's /metrics).
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0, minimum=0)
multiprocess_dir_ensure()
# Logs: "json" (one object per line) or "console" (readable, the default with DEBUG=1).
LOG_FORMAT = env_str("LOG_FORMAT", "console" if DEBUG else "json")
if LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be one of: {', '.join(LOG_FORMATS)}.")
configure_structlog()
# django-structlog: the request's context (request id, user id) goes with the tasks it
# enqueues, in their headers. Client addresses stay out of the logs.
DJANGO_STRUCTLOG_CELERY_ENABLED = True
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False
# The id RequestIdMiddleware took from X-Request-ID (checked) or made.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Production: no e-mail address in any log line (leadflow.logredact).
    "formatters": {
        "structured": {"()": "leadflow.logconfig.formatter", "log_format": LOG_FORMAT, "redact": not DEBUG},
    },
    "filters": {"refusal_without_traceback": {"()": "leadflow.logfilters.RefusalWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Django's own defaults give "django" a console handler of its own (when DEBUG) and
        # let it propagate to the root's as well: every request error was printed twice.
        # Naming the logger here drops its handlers; the root prints each line once.
        "django": {"handlers": []},
        "django.request": {"filters": ["refusal_without_traceback"]},
        # django-health-check logs each failing check with its traceback at WARNING: /readyz's
        # body says what failed, a probe every few seconds need not fill the log. Errors stay.
        "health_check": {"level": "ERROR"},
        # django-structlog's request_started / request_finished lines, with the request id, the
        # user id, the status and the path (REQUEST_LOG_LEVEL=WARNING: failed requests only).
        "django_structlog.middlewares": {"level": env_str("REQUEST_LOG_LEVEL", "INFO")},
    },
}

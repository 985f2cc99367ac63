"""AgentHub settings. Every value comes from an environment variable documented in the README
and docker/.env.example."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import dj_database_url
import platformdirs
from django.core.exceptions import ImproperlyConfigured

from agenthub.env import env_bool, env_choice, env_int, env_list, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("AGENTHUB_DEBUG", False)
SECRET_KEY = env_str("AGENTHUB_SECRET_KEY") or (
    # Development default only: make run and the tests have no secret configured.
    "agenthub-insecure-development-key-change-me"
)
ALLOWED_HOSTS = env_list(
    "AGENTHUB_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("AGENTHUB_CSRF_TRUSTED_ORIGINS", [])

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_url_with_db_offset(url: str, offset: int) -> str:
    """`url` with its database number raised by `offset` (redis://host/9, unix://sock?db=0)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "unix" or "db" in query:
        query["db"] = str(int(query.get("db", 0)) + offset)
        # Not geturl(): it drops the "//" of a unix URL, which redis-py then refuses.
        return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"
    return parts._replace(path=f"/{int(parts.path.strip('/') or 0) + offset}").geturl()


# pytest-xdist runs the suite in several processes at once (gw0, gw1, ...). Each takes a data
# directory (its SQLite test database, stores, workspaces and docker instance label) and a Redis
# database (its RQ queues and Channels layer) of its own, else one process's workers would run
# another's attempts. They are written back to the environment, and the marker removed, so the
# workers and servers its tests start inherit them as they are instead of deriving them again.
_xdist_worker = os.environ.pop("PYTEST_XDIST_WORKER", "")
if _xdist_worker:
    _base_dir = env_path("AGENTHUB_DATA_DIR", str(BASE_DIR / ".agenthub"))
    os.environ["AGENTHUB_DATA_DIR"] = str(_base_dir / _xdist_worker)
    os.environ["REDIS_URL"] = _redis_url_with_db_offset(
        env_str("REDIS_URL", DEFAULT_REDIS_URL), int(_xdist_worker.removeprefix("gw"))
    )

AGENTHUB_DATA_DIR = env_path("AGENTHUB_DATA_DIR", str(BASE_DIR / ".agenthub"))
# Made here because the SQLite database lives in it; sandbox users must be able to traverse it.
AGENTHUB_DATA_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
AGENTHUB_PORT = env_int("AGENTHUB_PORT", 8000, minimum=1, maximum=65535)
# The ASGI server `make run` starts (agenthub/run.py). Both serve the API, the event streams and
# the websockets; uvicorn answered the API faster on a 2-core machine (`make bench`, README).
# The AI presets' CLIs (`make agent-images`, jobs/sandbox/toolchain.py): outside the checkout
# and the data directory, so every `make run` finds the one build.
AGENTHUB_TOOLCHAIN_DIR = env_path(
    "AGENTHUB_TOOLCHAIN_DIR", str(platformdirs.user_cache_path("agenthub") / "toolchain")
)
# `make run` only: start the scripted model server with this script and point the demo team's
# model credentials at it (scripted_model/), to try the AI presets without a key.
AGENTHUB_MODEL_SCRIPT = env_str("AGENTHUB_MODEL_SCRIPT")
# Where workers reach the model gateway for their sandboxes (the web server; `make run`'s own).
AGENTHUB_GATEWAY_URL = env_str("AGENTHUB_GATEWAY_URL") or f"http://127.0.0.1:{AGENTHUB_PORT}"
# The certificates a sandbox with a door (egress or a model) trusts for HTTPS, bound read-only
# and named by SSL_CERT_FILE and its kin: the host's bundle, or yours (a corporate TLS proxy's
# CA added); empty for none. Not a file: said at start.
AGENTHUB_CA_BUNDLE = env_str("AGENTHUB_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
if AGENTHUB_CA_BUNDLE and not Path(AGENTHUB_CA_BUNDLE).is_file():
    if "AGENTHUB_CA_BUNDLE" in os.environ:
        raise ImproperlyConfigured(f"AGENTHUB_CA_BUNDLE={AGENTHUB_CA_BUNDLE} is not a file")
    AGENTHUB_CA_BUNDLE = ""  # a host without Debian's bundle: none by default
# Who commits AgentHub's result and merge commits (jobs/authorship.py); the submitter and the
# approvers are named in their trailers.
AGENTHUB_GIT_NAME = env_str("AGENTHUB_GIT_NAME", "AgentHub")
AGENTHUB_GIT_EMAIL = env_str("AGENTHUB_GIT_EMAIL", "agenthub@localhost")
# Following upstream (jobs/services/upstream.py): how long a fetch of a repository's source may
# take, and for how long after one an attempt's preparation does not fetch again.
AGENTHUB_SYNC_TIMEOUT = env_int("AGENTHUB_SYNC_TIMEOUT", 60, minimum=1, maximum=3600)
# A repository's environment (jobs/environments.py): how long its setup and maintenance scripts
# may run, and how many days an environment no attempt used is kept.
AGENTHUB_SETUP_TIMEOUT = env_int("AGENTHUB_SETUP_TIMEOUT", 1800, minimum=10, maximum=24 * 3600)
# Each repository's package cache for its setup (pip, npm, uv downloads), one directory per
# repository under it.
AGENTHUB_PACKAGE_CACHE_DIR = env_path(
    "AGENTHUB_PACKAGE_CACHE_DIR", str(AGENTHUB_DATA_DIR / "package-cache")
)
AGENTHUB_ENVIRONMENT_RETENTION_DAYS = env_int("AGENTHUB_ENVIRONMENT_RETENTION_DAYS", 14, minimum=0)
AGENTHUB_SYNC_FRESH_SECONDS = env_int("AGENTHUB_SYNC_FRESH_SECONDS", 5, minimum=0, maximum=86400)
AGENTHUB_ASGI_SERVER = env_choice("AGENTHUB_ASGI_SERVER", "uvicorn", ("uvicorn", "daphne"))
# How many processes uvicorn serves with (daphne serves with one): two answered 20 concurrent
# clients about a third sooner than one on a 2-core machine (`make bench`, README).
AGENTHUB_WEB_PROCESSES = env_int("AGENTHUB_WEB_PROCESSES", 2, minimum=1, maximum=64)
# Default sandbox backend for agents that do not name one. "auto" is docker when a Docker Engine
# answers, else bwrap. "local" runs without isolation and is refused unless
# AGENTHUB_ALLOW_LOCAL_SANDBOX is set as well.
AGENTHUB_SANDBOX = env_choice("AGENTHUB_SANDBOX", "auto", ("auto", "docker", "bwrap", "local"))
# The docker backend's image for agents that name none (built by `make sandbox-image`).
AGENTHUB_SANDBOX_IMAGE = env_str("AGENTHUB_SANDBOX_IMAGE", "agenthub-sandbox:latest")
# Labels this installation's sandbox containers, so the reaper of one installation (or test run)
# sharing a Docker Engine never removes another's.
AGENTHUB_INSTANCE = hashlib.sha256(str(AGENTHUB_DATA_DIR).encode()).hexdigest()[:12]
AGENTHUB_ALLOW_LOCAL_SANDBOX = env_bool("AGENTHUB_ALLOW_LOCAL_SANDBOX", False)
AGENTHUB_MAX_PROMPT_BYTES = env_int("AGENTHUB_MAX_PROMPT_BYTES", 64 * 1024, minimum=1)
AGENTHUB_MAX_LOG_BYTES = env_int("AGENTHUB_MAX_LOG_BYTES", 10 * 1024 * 1024, minimum=1024)
# An attempt whose worker has not written a heartbeat for this long is marked lost.
AGENTHUB_HEARTBEAT_TIMEOUT = env_int("AGENTHUB_HEARTBEAT_TIMEOUT", 30, minimum=5)
# Workers (and the agents they start) run at this CPU niceness: agents are background work, so
# where web and workers share cores the person's request is answered first.
AGENTHUB_WORKER_NICE = env_int("AGENTHUB_WORKER_NICE", 10, minimum=0, maximum=19)
AGENTHUB_RECONCILE_INTERVAL = env_int("AGENTHUB_RECONCILE_INTERVAL", 10, minimum=1)
AGENTHUB_TEAM_CONCURRENCY = env_int("AGENTHUB_TEAM_CONCURRENCY", 2, minimum=1)

# API rate limit per token (or signed-in user): "<requests>/<seconds>"; "0/60" turns it off.
AGENTHUB_API_RATE_LIMIT = env_str("AGENTHUB_API_RATE_LIMIT", "600/60")
# Seconds between keep-alive comments on an open event stream; each also re-reads the database
# and checks the stream's credentials still hold (a revoked token or a signed-out session ends it).
AGENTHUB_SSE_KEEPALIVE = env_int("AGENTHUB_SSE_KEEPALIVE", 15, minimum=1, maximum=300)
# Webhooks may reach loopback and private addresses (SSRF guard off): for development and tests.
AGENTHUB_WEBHOOK_ALLOW_PRIVATE = env_bool("AGENTHUB_WEBHOOK_ALLOW_PRIVATE", False)

# Web Push: who the push services contact about our traffic (a mailto: or https: URL).
AGENTHUB_VAPID_SUBJECT = env_str("AGENTHUB_VAPID_SUBJECT", "mailto:admin@localhost")
if not AGENTHUB_VAPID_SUBJECT.startswith(("mailto:", "https:")):
    raise ImproperlyConfigured(
        f"AGENTHUB_VAPID_SUBJECT={AGENTHUB_VAPID_SUBJECT!r}: expected a mailto: or https: URL"
    )
# Development and tests only: accept http://localhost push endpoints.
AGENTHUB_PUSH_ALLOW_INSECURE_LOCALHOST = env_bool("AGENTHUB_PUSH_ALLOW_INSECURE_LOCALHOST", False)

REDIS_URL = env_str("REDIS_URL", DEFAULT_REDIS_URL)

# Audit trail: each entry carries an HMAC of the previous entry's and its own content, keyed with
# this (default: derived from SECRET_KEY). Changing it makes `manage.py verify_audit` fail.
# Fernet keys (comma-separated, the first encrypts) for model credentials and agents' secrets
# at rest; unset, derived from SECRET_KEY (gateway/vault.py).
AGENTHUB_CREDENTIALS_KEY = env_str("AGENTHUB_CREDENTIALS_KEY")
AGENTHUB_AUDIT_KEY = env_str("AGENTHUB_AUDIT_KEY") or f"audit:{SECRET_KEY}"
# Retention: events (logs) of attempts finished longer ago than this are deleted, and attempt
# workspaces left on disk are removed after the shorter period. The audit trail is always kept.
AGENTHUB_EVENT_RETENTION_DAYS = env_int("AGENTHUB_EVENT_RETENTION_DAYS", 90, minimum=1)
AGENTHUB_WORKSPACE_RETENTION_DAYS = env_int("AGENTHUB_WORKSPACE_RETENTION_DAYS", 7, minimum=0)
# How often a worker applies retention (seconds).
AGENTHUB_RETENTION_INTERVAL = env_int("AGENTHUB_RETENTION_INTERVAL", 3600, minimum=60)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_rq",
    "django_htmx",
    "jobs",
    "notify",
    "hooks",
    "gateway",
]

# Django's own middlewares, in subclasses that run in the event loop (agenthub/middleware.py).
MIDDLEWARE = [
    "agenthub.middleware.SecurityMiddleware",
    "agenthub.middleware.SessionMiddleware",
    "agenthub.middleware.CommonMiddleware",
    "agenthub.middleware.CsrfViewMiddleware",
    "agenthub.middleware.AuthenticationMiddleware",
    "agenthub.middleware.MessageMiddleware",
    "agenthub.middleware.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "agenthub.middleware.ContentSecurityPolicyMiddleware",
    "agenthub.middleware.JsonMethodNotAllowedMiddleware",
]

ROOT_URLCONF = "agenthub.urls"
ASGI_APPLICATION = "agenthub.asgi.application"
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
                "notify.context_processors.notifications",
                "jobs.teams.manage_link",
                "jobs.review_queue.waiting",
            ],
        },
    },
]

_default_db = f"sqlite:///{AGENTHUB_DATA_DIR / 'agenthub.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or _default_db, conn_max_age=60, conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, workers and tests write concurrently: wait for the lock instead of failing, and take
    # the write lock at BEGIN so two writers never deadlock on an upgrade. In WAL mode,
    # synchronous=NORMAL syncs at checkpoints rather than at every commit: each commit held the
    # one write lock through an fsync (1.3 ms p50, 15 ms p99 on this machine's disk, against
    # 7 µs), which every submit, token check and worker update queued behind. The database stays
    # consistent; a power cut (not a crash of AgentHub) may lose the last commits. Production
    # runs PostgreSQL.
    # agenthub/sqlite: Django's backend, polling for the write lock (see its docstring).
    DATABASES["default"]["ENGINE"] = "agenthub.sqlite"
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(AGENTHUB_DATA_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = AGENTHUB_DATA_DIR / "static"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # No socket timeout: the layer blocks in BZPOPMIN for longer than redis-py's default
        # read timeout (channels_redis#422).
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": "agenthub:channels",
        },
    }
}

# Enqueue at once: jobs.services already defers every enqueue to transaction.on_commit.
RQ = {"COMMIT_MODE": "auto"}
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600} for name in ("high", "default", "low")
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "jobs": {"handlers": ["console"], "level": env_str("AGENTHUB_LOG_LEVEL", "INFO")},
        "notify": {"handlers": ["console"], "level": env_str("AGENTHUB_LOG_LEVEL", "INFO")},
        "rq.worker": {"handlers": ["console"], "level": "WARNING"},
    },
}

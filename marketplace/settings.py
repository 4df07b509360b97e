"""Settings, read from the environment (see .env.example). Every variable has a working local
default; a malformed value stops the process at start with ImproperlyConfigured."""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _positive_int(name: str, default: int) -> int:
    try:
        value = env.int(name, default=default)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer") from exc
    if value < 0:
        raise ImproperlyConfigured(f"{name} must not be negative")
    return value


DEBUG = env.bool("DJANGO_DEBUG", default=False)

# The key signs sessions, CSRF tokens and password-reset links: anyone who knows it can forge
# them. So without DJANGO_DEBUG=true (and DEBUG is off unless said otherwise) a missing, published,
# short or repetitive key stops the process here, rather than falling back to one. Local runs get a
# random key made once per checkout (scripts/local_secret_key.sh); tests set one in pyproject.toml.
_DEVELOPMENT_SECRET_KEY = "insecure-local-development-key-change-me"
_PUBLISHED_SECRET_KEYS = {_DEVELOPMENT_SECRET_KEY, "change-me-in-production", "change-me"}
SECRET_KEY_MIN_LENGTH = 50  # Django's own bar (its security.W009 check)
SECRET_KEY_MIN_DISTINCT_CHARACTERS = 10  # a 64-character hex key has 16


def _secret_key() -> str:
    key = env.str("DJANGO_SECRET_KEY", default="")
    if not key:
        problem = "is not set"
    elif key in _PUBLISHED_SECRET_KEYS or key.startswith("django-insecure-"):
        problem = "is a published placeholder"
    elif len(key) < SECRET_KEY_MIN_LENGTH:
        problem = f"is {len(key)} characters long; it needs at least {SECRET_KEY_MIN_LENGTH}"
    elif len(set(key)) < SECRET_KEY_MIN_DISTINCT_CHARACTERS:
        problem = f"has {len(set(key))} distinct characters; a random key has dozens"
    else:
        return key
    if DEBUG:
        return key or _DEVELOPMENT_SECRET_KEY
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY {problem}. With DJANGO_DEBUG=false it must be a long random secret. "
        "Generate one with\n"
        "    python -c 'import secrets; print(secrets.token_urlsafe(50))'\n"
        "and set it in the environment or in .env (`make run` makes one for you in "
        ".run/secret-key; DJANGO_DEBUG=true allows a weak key on a development machine)."
    )


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

# --- HTTPS (the production configuration is in README, "Configuration") ---------------------
# Behind a proxy that terminates TLS, Django sees plain HTTP; the proxy's X-Forwarded-Proto says
# what the client used. Trusted only when switched on: without a proxy that overwrites it, any
# client could send "https" itself.
if env.bool("DJANGO_SECURE_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SSL_REDIRECT", default=False)
# A load balancer's health probe often speaks plain HTTP on the private side.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$"]
# Session and CSRF cookies only over HTTPS wherever HTTP is redirected to it.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool(
    "DJANGO_SECURE_COOKIES", default=SECURE_SSL_REDIRECT
)
# 0 (no HSTS) by default: a browser that once saw HSTS refuses plain HTTP to this host for that
# long, which a local run on http://127.0.0.1 must not cause. Production: a year (31536000).
SECURE_HSTS_SECONDS = _positive_int("DJANGO_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "marketplace.core",
    "marketplace.accounts",
    "marketplace.providers",
    "marketplace.listings",
    "marketplace.orders",
    "marketplace.benchmarks",
    "marketplace.payments",
    "marketplace.workloads",
    "marketplace.dashboard",
    "marketplace.webhooks",
]

MIDDLEWARE = [
    # First: every error under /api/ leaves as the JSON error shape, whichever layer made it.
    "marketplace.core.middleware.ApiErrorShapeMiddleware",
    # A deeply nested JSON body is refused before any other code sees it (see safe_json).
    "marketplace.core.middleware.ApiBodyDepthMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and Swagger UI's static files from gunicorn, with no CDN (offline docs).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "marketplace.urls"
# Under /api/ a CSRF failure is the JSON error shape; the admin keeps Django's page.
CSRF_FAILURE_VIEW = "marketplace.core.views.csrf_failure"
WSGI_APPLICATION = "marketplace.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "marketplace" / "templates"],
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

try:
    DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
except Exception as exc:  # django-environ raises several types for a malformed URL
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Keep connections between requests (a new PostgreSQL connection per request costs more than the
# search itself), checked for health before reuse so a restarted database is survived.
DATABASES["default"]["CONN_MAX_AGE"] = _positive_int("DATABASE_CONN_MAX_AGE", 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; a busy timeout makes concurrent writers wait instead of failing.
    # IMMEDIATE takes the write lock when a transaction begins, so two writers queue on the busy
    # timeout instead of one failing on a read-to-write upgrade ("database is locked").
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
    # A file, not :memory:, so live-server tests and worker subprocesses share the test database.
    _test_sqlite_path = Path(
        env.str("TEST_SQLITE_PATH", default=str(BASE_DIR / ".run" / "test.sqlite3"))
    )
    # A fresh clone has no .run/ yet, and SQLite will not create the folder of its file.
    _test_sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(_test_sqlite_path)}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Tests and the demo create many users; a fast hasher there, the default one elsewhere.
if env.bool("FAST_PASSWORD_HASHER", default=False):
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Admin pages show times as 2026-01-31 14:05:09 UTC (billing is per second); see the module.
FORMAT_MODULE_PATH = ["marketplace.core.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Uploaded files (workload input and result archives) of the default storage: local files
# unless STORAGES names an object store (django-storages) in a deployment's settings.
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(BASE_DIR / ".run" / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

NUM_PROXIES = _positive_int("NUM_PROXIES", 0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "marketplace.accounts.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "marketplace.core.pagination.DefaultPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "marketplace.core.exceptions.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["marketplace.core.parsers.SafeJSONParser"],
    # Every write by a signed-in user counts against user_write; auth and agent views set their
    # own classes (per address and per machine) instead.
    "DEFAULT_THROTTLE_CLASSES": ["marketplace.core.throttles.UserWriteRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "auth": env.str("THROTTLE_AUTH", default="30/minute"),
        "agent": env.str("THROTTLE_AGENT", default="600/minute"),
        "user_write": env.str("THROTTLE_USER_WRITE", default="120/minute"),
    },
    # The client address for per-address throttles is the socket's (REMOTE_ADDR) unless this many
    # trusted proxies append to X-Forwarded-For in front of us; a header the client sends itself
    # must never choose its own throttle bucket.
    "NUM_PROXIES": NUM_PROXIES,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

SPECTACULAR_SETTINGS = {
    "TITLE": "GPU marketplace API",
    "DESCRIPTION": "Verified accelerators for rent, paid through on-chain escrow.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "marketplace.core.schema.document_error_responses",
        "marketplace.core.schema_docs.document_operations",
        "marketplace.core.schema_links.add_links",
    ],
    "ENUM_NAME_OVERRIDES": {
        "AcceleratorKindEnum": "marketplace.providers.models.Machine.AcceleratorKind",
        "WorkloadStateEnum": "marketplace.workloads.models.Workload.State",
        "WebhookEventTypeEnum": "marketplace.webhooks.models.EventType",
    },
}

# --- Celery -------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

# --- Cache (throttle counts) --------------------------------------------------------------
# Shared by every web worker and kept across restarts, so a rate limit is one limit. It may share
# Celery's Redis database: its keys carry KEY_PREFIX, and its clear() deletes only those (Django's
# RedisCache.clear() would FLUSHDB the queue too). CACHE_URL puts it elsewhere.
CACHES = {
    "default": {
        "BACKEND": "marketplace.core.cache.PrefixedRedisCache",
        "LOCATION": env.str("CACHE_URL", default=REDIS_URL),
        "KEY_PREFIX": "mkt-cache",
        # A stalled Redis fails a throttled request in seconds instead of hanging its worker.
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Longer than the longest task time limit, so an acks_late task is never redelivered while it
# is still running on a live worker.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# --- Marketplace --------------------------------------------------------------------------
# Payment token: the local test stablecoin has 6 decimals (1 unit = 1 micro-USD).
PAYMENT_TOKEN_DECIMALS = 6
PLATFORM_FEE_BPS = _positive_int("PLATFORM_FEE_BPS", 1000)
HEARTBEAT_TIMEOUT_SECONDS = _positive_int("HEARTBEAT_TIMEOUT_SECONDS", 90)
# An unfunded order holds its accelerators this long (the funding deadline shown to the renter);
# past it the order stops counting at once and beat cancels it. 10 minutes covers reading the
# funding instructions, signing approve and fund in a wallet, their inclusion on a busy chain
# and CHAIN_CONFIRMATIONS plus the indexer's 5 s lag, several times over; yet a squatter who
# wants to keep a listing full must re-create every hold six times an hour, each through the
# write throttle and the per-renter caps below.
ORDER_UNFUNDED_HOLD_SECONDS = _positive_int("ORDER_UNFUNDED_HOLD_SECONDS", 600)
# How many unfunded orders, and how many accelerators in them, one renter may hold at once: a
# buyer funds one order at a time; a squatter is bounded per account.
ORDER_MAX_UNFUNDED_PER_RENTER = _positive_int("ORDER_MAX_UNFUNDED_PER_RENTER", 3)
ORDER_MAX_UNFUNDED_ACCELERATORS = _positive_int("ORDER_MAX_UNFUNDED_ACCELERATORS", 64)
# A funded order is `starting` until the escrow's `start` is final; if it is not by then, the
# order is cancelled and settled for 0 seconds (the renter pays nothing). `start` is sent on the
# commit of the funding and needs CHAIN_CONFIRMATIONS and the indexer's 5 s lag: seconds to a
# minute; 10 minutes covers a congested chain and a resent transaction several times over.
ORDER_START_DEADLINE_SECONDS = _positive_int("ORDER_START_DEADLINE_SECONDS", 600)
# Rendered search pages are kept this long in the Redis cache (marketplace/listings/
# search_cache.py): every write that changes what search shows invalidates them at once, so this
# bounds only the cost of a page, not how stale it can be. 0 turns the cache off.
SEARCH_CACHE_SECONDS = _positive_int("SEARCH_CACHE_SECONDS", 30)

# --- Benchmarks ---------------------------------------------------------------------------
# A job's deadline: this allowance (network, input generation, hashing, answer) plus its FLOPs at
# BENCHMARK_MIN_RATE_FLOPS, so an honest slow CPU finishes while a stalled agent is noticed.
BENCHMARK_DEADLINE_BASE_SECONDS = _positive_int("BENCHMARK_DEADLINE_BASE_SECONDS", 120)
BENCHMARK_MIN_RATE_FLOPS = env.float("BENCHMARK_MIN_RATE_FLOPS", default=5e9)
# After the challenge is issued the agent has at least this long to answer.
BENCHMARK_ANSWER_SECONDS = _positive_int("BENCHMARK_ANSWER_SECONDS", 120)
# A job nobody picked up this long expires (only lease and periodic jobs count against a machine).
BENCHMARK_QUEUE_TTL_SECONDS = _positive_int("BENCHMARK_QUEUE_TTL_SECONDS", 3600)
BENCHMARK_PERIODIC_INTERVAL_SECONDS = _positive_int("BENCHMARK_PERIODIC_INTERVAL_SECONDS", 6 * 3600)
BENCHMARK_LEASE_INTERVAL_SECONDS = _positive_int("BENCHMARK_LEASE_INTERVAL_SECONDS", 3600)
# A lease's own check must be fetched this soon after it is queued, or the lease fails as the
# provider's fault (refund, slash). An agent long-polls for jobs (BENCHMARK_LONG_POLL_MAX_SECONDS)
# and runs each device's job beside the renter's work, so an honest one fetches within seconds;
# 3 minutes leaves room for a restart of the agent, far below the hour of BENCHMARK_QUEUE_TTL.
LEASE_CHECK_DEADLINE_SECONDS = _positive_int("LEASE_CHECK_DEADLINE_SECONDS", 180)
# Rows (planes) sampled per challenge: skipping 10% of the rows is caught with p >= 1 - 0.9**32.
BENCHMARK_SAMPLE_COUNT = _positive_int("BENCHMARK_SAMPLE_COUNT", 32)
# Units a chain-sketch job's verification recomputes (drawn after the payload arrives): skipping
# 10% is caught with p >= 0.99, 50% with 1 - 2**-44 (docs/design/verification-chain-sketch.md).
BENCHMARK_SKETCH_SAMPLE_COUNT = _positive_int("BENCHMARK_SKETCH_SAMPLE_COUNT", 48)
# Every job's floor and ceiling (marketplace/benchmarks/suites.py, DEVICE_CLASSES): the plumbing
# each protocol puts inside the server-timed span besides the kernel, and the margin above a
# data-sheet peak (boost clocks, clock skew) before a figure is impossible. A chain-sketch job's
# span holds dispatch, on-device input generation and a <= 175 KB upload (about a second on a
# slow uplink); a Merkle job's also hashes every output cell (per MB of output).
BENCHMARK_CHAIN_FLOOR_BASE_SECONDS = env.float("BENCHMARK_CHAIN_FLOOR_BASE_SECONDS", default=1.0)
BENCHMARK_FLOOR_BASE_SECONDS = env.float("BENCHMARK_FLOOR_BASE_SECONDS", default=10.0)
# A CPU machine's suite jobs after its first are sized at dispatch (suites.cpu_job_sized) so the
# kernel runs about this long at the rate its own verified figures predict: long enough that the
# tens of milliseconds of dispatch and upload stay a small part of the server-timed span.
BENCHMARK_CPU_JOB_SECONDS = env.float("BENCHMARK_CPU_JOB_SECONDS", default=1.0)
BENCHMARK_FLOOR_SECONDS_PER_MB = env.float("BENCHMARK_FLOOR_SECONDS_PER_MB", default=0.01)
BENCHMARK_CEILING_FACTOR = env.float("BENCHMARK_CEILING_FACTOR", default=1.5)
# CPU-sized suites for every machine: for local demos and tests without a GPU.
BENCHMARK_SMALL_SUITES = env.bool("BENCHMARK_SMALL_SUITES", default=False)
BENCHMARK_REPUTATION_WINDOW = _positive_int("BENCHMARK_REPUTATION_WINDOW", 50)
BENCHMARK_LONG_POLL_MAX_SECONDS = _positive_int("BENCHMARK_LONG_POLL_MAX_SECONDS", 25)
# The ASGI agent channel (marketplace/asgi.py): threads per web process for its database reads,
# however many agents wait (each waiting agent is a coroutine, not a thread).
AGENT_CHANNEL_DB_THREADS = max(1, _positive_int("AGENT_CHANNEL_DB_THREADS", 8))
# Heartbeats are buffered in Redis and written to the database in bulk this often: a small
# fraction of the heartbeat timeout, so the database's last-seen times lag by seconds.
HEARTBEAT_FLUSH_SECONDS = max(1, _positive_int("HEARTBEAT_FLUSH_SECONDS", 10))
# Platform incidents: windows in which the platform itself failed, inside which a missed deadline
# or heartbeat counts against nobody (marketplace/benchmarks/models.py PlatformIncident).
# A 5xx excuses this long either side of it (an agent's retries around it failed too).
PLATFORM_INCIDENT_PAD_SECONDS = _positive_int("PLATFORM_INCIDENT_PAD_SECONDS", 60)
# Beat's probe of the API as agents reach it; empty turns the probe off.
PLATFORM_HEALTH_URL = env.str(
    "PLATFORM_HEALTH_URL",
    default=f"http://127.0.0.1:{env.str('WEB_PORT', default='8000')}/api/v1/health",
)
PLATFORM_HEALTH_PROBE_SECONDS = max(5, _positive_int("PLATFORM_HEALTH_PROBE_SECONDS", 30))
PLATFORM_HEALTH_TIMEOUT_SECONDS = max(1, _positive_int("PLATFORM_HEALTH_TIMEOUT_SECONDS", 10))
# Half or more of the machines alive in the last 10 heartbeat timeouts (and at least 5) going
# silent together is read as our outage, not theirs.
PLATFORM_HEARTBEAT_GAP_FRACTION = env.float("PLATFORM_HEARTBEAT_GAP_FRACTION", default=0.5)
PLATFORM_HEARTBEAT_GAP_MIN_MACHINES = _positive_int("PLATFORM_HEARTBEAT_GAP_MIN_MACHINES", 5)
PLATFORM_HEARTBEAT_GAP_LOOKBACK = max(2, _positive_int("PLATFORM_HEARTBEAT_GAP_LOOKBACK", 10))

# --- Chain --------------------------------------------------------------------------------
CHAIN_RPC_URL = env.str("CHAIN_RPC_URL", default="http://127.0.0.1:8545")
CHAIN_CONFIRMATIONS = _positive_int("CHAIN_CONFIRMATIONS", 1)
# Signing keys. Empty means "Anvil's public dev keys", which marketplace/payments/chain.py
# accepts only on a local chain id (31337 Anvil, 1337 Ganache, eth-tester's); anywhere else it
# raises ImproperlyConfigured, so a missing key can never sign with a publicly known one.
CHAIN_OPERATOR_PRIVATE_KEY = env.str("CHAIN_OPERATOR_PRIVATE_KEY", default="")
CHAIN_DEPLOYER_PRIVATE_KEY = env.str("CHAIN_DEPLOYER_PRIVATE_KEY", default="")
CHAIN_TREASURY_ADDRESS = env.str("CHAIN_TREASURY_ADDRESS", default="")
# Escrow and staking parameters fixed at deployment.
ESCROW_RECLAIM_DELAY_SECONDS = _positive_int("ESCROW_RECLAIM_DELAY_SECONDS", 86_400)
STAKING_UNSTAKE_DELAY_SECONDS = _positive_int("STAKING_UNSTAKE_DELAY_SECONDS", 7 * 86_400)
# On-chain limits of the hot keys, set at deployment, changed later only through each contract's
# timelock (docs: /work/helpers/contracts-design.md). The deployer key holds ADMIN; the operator
# key settles, slashes, rewards and locks stake, within these caps per period (token units).
CHAIN_TIMELOCK_DELAY_SECONDS = _positive_int("CHAIN_TIMELOCK_DELAY_SECONDS", 2 * 86_400)
STAKING_CAP_PERIOD_SECONDS = max(1, _positive_int("STAKING_CAP_PERIOD_SECONDS", 86_400))
STAKING_SLASH_CAP_PER_PERIOD = _positive_int("STAKING_SLASH_CAP_PER_PERIOD", 50_000 * 10**6)
STAKING_REWARD_CAP_PER_PERIOD = _positive_int("STAKING_REWARD_CAP_PER_PERIOD", 5_000 * 10**6)
STAKING_MAX_LOCK_SECONDS = _positive_int("STAKING_MAX_LOCK_SECONDS", 365 * 86_400)
# Token units (6 decimals): slashed per penalising verdict, plus the lock of every lease it broke
# (payments/collateral.py), capped at the indexed stake. Rewards: REWARD_PER_ACCELERATOR_HOUR.
SLASH_AMOUNT = _positive_int("SLASH_AMOUNT", 50 * 10**6)
REWARD_PERIOD_SECONDS = _positive_int("REWARD_PERIOD_SECONDS", 86_400)
# --- Collateral (marketplace/payments/collateral.py; /work/helpers/collateral-design.md) ------
# A machine is listed and orderable only while its provider's free stake (staked minus what its
# open leases lock) covers BASE + PER_ACCELERATOR per accelerator of every listed machine, times
# (1 + the provider's machines rejected for cheating within the rejection window). Each funded
# lease locks ceil((escrow + its rewards) / P(caught) * MARGIN) until DISPUTE_WINDOW after it
# ends, where P(caught) = 1 - (1 - DETECTION)^checks: cheating then loses more than it gains.
COLLATERAL_ENFORCED = env.bool("COLLATERAL_ENFORCED", default=True)
COLLATERAL_BASE = _positive_int("COLLATERAL_BASE", 50 * 10**6)
COLLATERAL_PER_ACCELERATOR = _positive_int("COLLATERAL_PER_ACCELERATOR", 25 * 10**6)
# Per lease check: skipping >= 10% of a job's rows is caught with p >= 1 - 0.9**32 > 0.95.
COLLATERAL_DETECTION_PPM = _positive_int("COLLATERAL_DETECTION_PPM", 950_000)
COLLATERAL_MARGIN_BPS = _positive_int("COLLATERAL_MARGIN_BPS", 12_000)
COLLATERAL_DISPUTE_WINDOW_SECONDS = _positive_int("COLLATERAL_DISPUTE_WINDOW_SECONDS", 2 * 86_400)
COLLATERAL_REJECTION_WINDOW_SECONDS = _positive_int(
    "COLLATERAL_REJECTION_WINDOW_SECONDS", 30 * 86_400
)
if not 0 < COLLATERAL_DETECTION_PPM <= 1_000_000:
    raise ImproperlyConfigured("COLLATERAL_DETECTION_PPM must be in 1..1000000")
if COLLATERAL_MARGIN_BPS < 10_000:
    raise ImproperlyConfigured("COLLATERAL_MARGIN_BPS below 10000 makes cheating pay")
# Registration tokens one provider may create per rolling 24 hours (429 above it).
REGISTRATION_TOKENS_PER_DAY = max(1, _positive_int("REGISTRATION_TOKENS_PER_DAY", 10))
# Paid per verified, staked, leased accelerator-hour (token units), capped by the reward pool.
REWARD_PER_ACCELERATOR_HOUR = _positive_int("REWARD_PER_ACCELERATOR_HOUR", 10_000)
# eth_getLogs range per indexer step: public nodes cap it (often at 1,000-10,000 blocks).
CHAIN_INDEXER_MAX_BLOCKS = max(1, _positive_int("CHAIN_INDEXER_MAX_BLOCKS", 2_000))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Webhooks (marketplace/webhooks) -------------------------------------------------------
# Deliveries only to public addresses unless this is on (tests, a receiver on localhost): a URL
# any user may choose must not reach the server's own network (SSRF).
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)
# Per connect and per read of one POST; a receiver should answer 2xx at once and work later.
WEBHOOK_TIMEOUT_SECONDS = max(1, _positive_int("WEBHOOK_TIMEOUT_SECONDS", 5))
# Tries before a delivery is marked failed: with 10 s doubling to a 1 h cap, 10 tries span
# about 1 to 1.5 hours (jitter takes each wait from the upper half of its step).
WEBHOOK_MAX_ATTEMPTS = max(1, _positive_int("WEBHOOK_MAX_ATTEMPTS", 10))
WEBHOOK_RETRY_BASE_SECONDS = max(1, _positive_int("WEBHOOK_RETRY_BASE_SECONDS", 10))
WEBHOOK_RETRY_CAP_SECONDS = max(1, _positive_int("WEBHOOK_RETRY_CAP_SECONDS", 3600))
# How far back each scan re-reads before its cursor: longer than any transaction that writes an
# event row, so one that committed after a scan passed its timestamp is still read.
WEBHOOK_SCAN_OVERLAP_SECONDS = _positive_int("WEBHOOK_SCAN_OVERLAP_SECONDS", 300)
WEBHOOK_MAX_ENDPOINTS_PER_USER = max(1, _positive_int("WEBHOOK_MAX_ENDPOINTS_PER_USER", 10))
WEBHOOK_DELIVERY_BATCH = max(1, _positive_int("WEBHOOK_DELIVERY_BATCH", 20))
# After a secret rotation the old secret signs too for this long (a day: time to deploy the new
# one on the receiver's side without losing deliveries).
WEBHOOK_SECRET_ROLLOVER_SECONDS = _positive_int("WEBHOOK_SECRET_ROLLOVER_SECONDS", 86_400)

# The market dashboard's sampling interval (its snapshot rows are keyed by interval start).
DASHBOARD_SNAPSHOT_SECONDS = 300

# The one place periodic work is declared.
CELERY_BEAT_SCHEDULE = {
    # A third of the heartbeat timeout: a dead machine is noticed within ~1.3 timeouts.
    "machines-expire-heartbeats": {
        "task": "workers.tasks.machines_expire_heartbeats",
        "schedule": max(5, HEARTBEAT_TIMEOUT_SECONDS // 3),
    },
    # Buffered heartbeats to the database in bulk (marketplace/providers/heartbeats.py).
    "machines-flush-heartbeats": {
        "task": "workers.tasks.machines_flush_heartbeats",
        "schedule": HEARTBEAT_FLUSH_SECONDS,
    },
    # Leases are billed to the second, but ending one a few seconds late costs the renter
    # nothing: billable time is capped at the paid duration.
    "orders-meter": {"task": "workers.tasks.orders_meter", "schedule": 15},
    # Expired holds already count for nothing (the capacity check ignores them); this only
    # tidies their state, so a minute late is fine.
    "orders-expire-unfunded": {"task": "workers.tasks.orders_expire_unfunded", "schedule": 60},
    # A start not final by its deadline (minutes) cancels the order; a minute late is fine (it
    # was never served nor billed meanwhile).
    "orders-expire-unstarted": {"task": "workers.tasks.orders_expire_unstarted", "schedule": 60},
    # Deadlines are minutes long; checking every 30 s adds at most 30 s to a stalled job.
    "benchmarks-expire-overdue": {
        "task": "workers.benchmark_tasks.benchmarks_expire_overdue",
        "schedule": 30,
    },
    # Cheap (one query per machine due); the intervals themselves are in the settings above.
    "benchmarks-schedule-reverification": {
        "task": "workers.benchmark_tasks.benchmarks_schedule_reverification",
        "schedule": 300,
    },
    # One uptime sample a minute: fine enough for an hourly-billed market.
    # Lost challenge/verify tasks are re-sent after 30 s: well inside the agent's answer window.
    "benchmarks-requeue-stalled": {
        "task": "workers.benchmark_tasks.benchmarks_requeue_stalled",
        "schedule": 30,
    },
    # A lease's check unfetched past LEASE_CHECK_DEADLINE_SECONDS (minutes) fails the lease;
    # every 15 s adds at most 15 s to the time a renter pays nothing for anyway.
    "lease-checks-expire-unfetched": {
        "task": "workers.benchmark_tasks.lease_checks_expire_unfetched",
        "schedule": 15,
    },
    # A machine back from offline waits unlisted for its check: schedule it and return the
    # machine when it passed, within 15 s each way.
    "machines-reverify-returned": {
        "task": "workers.benchmark_tasks.machines_reverify_returned",
        "schedule": 15,
    },
    "benchmarks-sample-uptime": {
        "task": "workers.benchmark_tasks.benchmarks_sample_uptime",
        "schedule": 60,
    },
    # The indexer is the only way the database learns that money moved (funded → active,
    # settled): a few seconds of lag is what a renter waits for activation.
    "chain-index": {"task": "workers.chain_tasks.chain_index", "schedule": 5},
    # Rebroadcasts transactions a node lost and confirms those no task waits on any more.
    "chain-transactions-confirm": {
        "task": "workers.chain_tasks.chain_transactions_confirm",
        "schedule": 30,
    },
    # A verdict is written with its decision; its slash and settlements are enqueued after
    # commit. A process that died in between left them unenqueued: this finds them (older than
    # a minute, so it never races the normal path) and enqueues them once.
    "verdicts-enqueue-effects": {
        "task": "workers.chain_tasks.verdicts_enqueue_effects",
        "schedule": 60,
    },
    # The platform's own outages excuse missed deadlines; an outage is noticed within one probe
    # interval, well inside the 90 s heartbeat timeout and the minutes-long job deadlines.
    "platform-health-probe": {
        "task": "workers.ops_tasks.platform_health_probe",
        "schedule": PLATFORM_HEALTH_PROBE_SECONDS,
    },
    # A lost settlement task would leave a lease unpaid forever; this re-sends it.
    "leases-settle-overdue": {"task": "workers.chain_tasks.leases_settle_overdue", "schedule": 60},
    # Rewards are per period; hourly is often enough and cheap (one query when nothing is due).
    "providers-reward": {"task": "workers.chain_tasks.providers_reward", "schedule": 3600},
    # Dispute windows end and locks free up without any event; stake changes resync at once.
    "collateral-sync": {"task": "workers.collateral_tasks.collateral_sync", "schedule": 300},
    # Dashboard trend lines are read over days; one sample per 5 minutes still shows a machine
    # dropping out (heartbeat timeout 90 s) and keeps a week at 2,016 rows per chart.
    "dashboard-market-snapshot": {
        "task": "workers.dashboard_tasks.market_snapshot_take",
        "schedule": DASHBOARD_SNAPSHOT_SECONDS,
    },
    # Money drifting from the database is for a human to act on, in minutes not seconds, and a
    # run reads every lease and stake on chain; 5 min keeps that load small while an alert still
    # opens well within one reward or settlement cycle. Runs at the indexer's final block, so
    # the interval need not wait for confirmations.
    "payments-reconcile": {"task": "workers.ops_tasks.payments_reconcile", "schedule": 300},
    # A silent agent's workloads become lost after WORKLOAD_SILENCE_SECONDS (minutes); a sweep a
    # minute adds at most a minute to that, and closes workloads whose lease-end signal was lost.
    "workloads-sweep": {"task": "marketplace.workloads.tasks.workloads_sweep", "schedule": 60},
    # Webhooks: a renter waiting for "lease active" hears within ~10 s of the indexer's own lag;
    # a scan with nothing new is four indexed range queries.
    "webhooks-scan": {"task": "marketplace.webhooks.tasks.webhooks_scan", "schedule": 10},
    # Due deliveries; retries wait 10 s or more, so 5 s adds little to any of them.
    "webhooks-deliver": {"task": "marketplace.webhooks.tasks.webhooks_deliver", "schedule": 5},
}

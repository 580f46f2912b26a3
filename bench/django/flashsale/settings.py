"""Settings of the flash-sale benchmark's Django stack.

Everything that differs between runs comes from the environment (run.sh
sets it); nothing secret has a default.
"""
import os

from django.core.exceptions import ImproperlyConfigured


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise ImproperlyConfigured(f"set {name} in the environment")
    return value


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError as err:
        raise ImproperlyConfigured(f"{name} must be an integer") from err


SECRET_KEY = env("DJANGO_SECRET_KEY")
# The admin API's bearer token: no default, as the contract says.
ADMIN_TOKEN = env("DJANGO_ADMIN_TOKEN")

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "shop",
]

# Trimmed to what a JSON API with session cookies needs. CsrfViewMiddleware
# stays (it is Django's default and would protect any form view added
# later); the API views are csrf_exempt, see README.md.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "flashsale.urls"
WSGI_APPLICATION = "flashsale.wsgi.application"

# PostgreSQL connections per gunicorn worker. Small on purpose: every order
# queues on one product row, and more connections only lengthen that queue
# inside PostgreSQL while more greenlets compete for the worker's CPU (see
# README.md for the trials). Requests beyond it wait for a connection.
DB_POOL_MAX = env_int("DJANGO_DB_POOL_MAX", 2)
DB_POOL_MIN = min(env_int("DJANGO_DB_POOL_MIN", DB_POOL_MAX), DB_POOL_MAX)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": env("DJANGO_DB_NAME", "django_flash"),
        "USER": env("DJANGO_DB_USER", "postgres"),
        "HOST": env("DJANGO_DB_HOST", "127.0.0.1"),
        "PORT": env("DJANGO_DB_PORT", "5432"),
        # Persistent connections come from psycopg's pool (Django 5.1+),
        # not from CONN_MAX_AGE: under gevent Django's connections are
        # per greenlet, and gunicorn's gevent worker runs one greenlet per
        # client connection, so CONN_MAX_AGE would keep one PostgreSQL
        # connection per keep-alive client (256 in the large crowd, more
        # than max_connections). The pool bounds them per worker process
        # and hands each request one for its duration. Django requires
        # CONN_MAX_AGE = 0 with the pool.
        "CONN_MAX_AGE": 0,
        "OPTIONS": {
            "pool": {
                "min_size": DB_POOL_MIN,
                "max_size": DB_POOL_MAX,
                # Seconds a request waits for a free connection before a 500.
                "timeout": env_int("DJANGO_DB_POOL_TIMEOUT", 10),
            },
        },
    }
}

# Redis, through Django's built-in backend, for both the product-page cache
# and the sessions. hiredis is picked up by redis-py when installed.
REDIS_URL = env("DJANGO_REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env("DJANGO_CACHE_PREFIX", "django_flash"),
        "TIMEOUT": 300,
    }
}

# Sessions live in Redis only (see README.md for cache vs cached_db): one
# Redis GET per authenticated request, valid on every worker and node.
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
SESSION_CACHE_ALIAS = "default"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = os.environ.get("DJANGO_SECURE_COOKIES") == "1"

# DJANGO_FAST_PASSWORDS=1 hashes with MD5 so that a benchmark can create
# 20,000 users in seconds (stampede's benchmark lowers argon2's cost the
# same way). Otherwise Django's defaults (PBKDF2-SHA256, 1,000,000 rounds).
if os.environ.get("DJANGO_FAST_PASSWORDS") == "1":
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AUTH_PASSWORD_VALIDATORS = []

LANGUAGE_CODE = "en-us"
USE_I18N = False
TIME_ZONE = "UTC"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# How long an unpaid reservation holds its stock (stampede's default).
ORDER_HOLD_SECONDS = env_int("DJANGO_ORDER_HOLD_SECONDS", 600)
# How long a product page is cached (the contract allows one second of lag).
PRODUCT_CACHE_SECONDS = 1

# No per-request logging (gunicorn's access log is off too); errors only.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    # django.request logs every 4xx as a warning ("Conflict: /api/v1/orders"
    # for each sold_out): a line per refused request. 5xx only.
    "loggers": {"django.request": {"level": "ERROR"}},
}

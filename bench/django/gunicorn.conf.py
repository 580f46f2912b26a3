"""gunicorn settings for the flash-sale benchmark (run.sh passes the bind).

Loaded by the arbiter before any worker patches with gevent: import
nothing here that touches sockets, psycopg or Django.
"""
import os

worker_class = "gevent"
# run.sh sets DJANGO_WORKERS (see README.md for how it was tuned).
workers = int(os.environ.get("DJANGO_WORKERS", "2"))
# Greenlets (client connections) per worker; PostgreSQL connections are
# bounded separately by the pool (DJANGO_DB_POOL_MAX per worker).
worker_connections = int(os.environ.get("DJANGO_WORKER_CONNECTIONS", "1000"))
# Clients connect directly, without nginx in front, and a crowd's
# connections are opened before the sale: keep idle ones open long
# enough not to be closed under the client between setup and crowd.
keepalive = int(os.environ.get("DJANGO_KEEPALIVE", "75"))
# Setup calls (1,000 users hashed per call) may take a while with real
# password hashing; the worker heartbeat must not kill them.
timeout = 120
graceful_timeout = 10
backlog = 2048
# Never preload: the app (and psycopg) must be imported after gevent's
# monkey-patching, which happens in each worker after the fork.
preload_app = False
# No access log: no per-request logging. Errors go to stderr.
accesslog = None
errorlog = "-"
loglevel = "warning"
proc_name = "django-flash"

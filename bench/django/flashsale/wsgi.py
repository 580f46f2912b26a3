"""WSGI entry point, loaded by each gunicorn worker after gevent patched it."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

# psycopg 3 picks its wait function when it is imported: under gevent's
# monkey-patching it must be the cooperative one, or a query would block
# every greenlet of the worker. Fail loudly rather than benchmark that.
import sys  # noqa: E402

if "gevent.monkey" in sys.modules:
    from gevent import monkey  # noqa: E402
    from psycopg import waiting  # noqa: E402

    if monkey.is_module_patched("select") and waiting.wait is getattr(waiting, "wait_c", None):
        raise RuntimeError("psycopg was imported before gevent patched select")
